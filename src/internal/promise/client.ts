/**
 * The Promise Client: argument handling around the Effect Client's
 * operations. The Effect Client does the locking, the atomic writes and the
 * durability; this module only converts arguments and results.
 *
 * @internal
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { Dirent } from "node:fs"
import * as nodePath from "node:path"
import type { Writable } from "node:stream"
import type { ClientService, Entry } from "../../Client.js"
import * as EffectClient from "../../Client.js"
import { LockManager as LockManagerTag } from "../../LockManager.js"
import type { LockManagerService } from "../../LockManager.js"
import type { FileSystemError } from "../../PersistenceError.js"
import { fromCause, intoItself, invalidArgType, invalidArgValue, SourceFailure, unknownEncoding } from "./errors.js"
import {
  bagOf,
  booleanOf,
  type Encoding,
  encodingOf,
  fieldsOf,
  flagOf,
  flushOf,
  highWaterMarkOf,
  integerOf,
  modeOf,
  objectOf,
  signalOf,
  truthyOf
} from "./options.js"
import { absolute, directoryPath, entryPath, notRoot, withoutNul } from "./paths.js"
import { type LockedReadStream, openReadStream } from "./readStream.js"
import { attempt, run, runReplacement } from "./run.js"
import { openWriteStream } from "./writeStream.js"

let nodeFileSystem: FileSystem.FileSystem | undefined

// The Node file system service is stateless: one for every facade Client.
const fileSystem = (): FileSystem.FileSystem =>
  nodeFileSystem ??= Effect.runSync(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer))

/**
 * What one facade Client runs: the Effect Client, and (built on first use) a
 * durable twin on the same manager for `flush: true` on a non-durable Client.
 *
 * @internal
 */
export class Core {
  #durableTwin: ClientService | undefined

  constructor(
    readonly service: ClientService,
    readonly manager: LockManagerService,
    readonly tempSuffix: string | undefined,
    readonly onError: (error: Error) => void
  ) {}

  /** The client for a write: `flush: true` asks for fsync even when the Client is not durable. */
  forWrite(flush: boolean): ClientService {
    if (!flush || this.service.durable) return this.service
    return this.#durableTwin ??= makeService(this.manager, { durable: true, tempSuffix: this.tempSuffix })
  }
}

/** @internal */
export const makeService = (
  manager: LockManagerService,
  options: { readonly durable?: boolean | null | undefined; readonly tempSuffix?: string | undefined }
): ClientService => {
  const exit = Effect.runSyncExit(
    EffectClient.make({
      // As the original, null is the default.
      ...(options.durable !== undefined && options.durable !== null ? { durable: options.durable } : {}),
      ...(options.tempSuffix !== undefined ? { tempSuffix: options.tempSuffix } : {})
    }).pipe(
      Effect.provideService(LockManagerTag, manager),
      Effect.provideService(FileSystem.FileSystem, fileSystem())
    )
  )
  if (Exit.isFailure(exit)) throw fromCause(exit.cause)
  return exit.value
}

const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** A view of any `ArrayBufferView` (TypedArray, DataView, Buffer) as bytes, without a copy. */
const bytesOf = (view: ArrayBufferView): Uint8Array =>
  view instanceof Uint8Array ? view : new Uint8Array(view.buffer, view.byteOffset, view.byteLength)

const decode = (bytes: Uint8Array, encoding: Encoding): string | Buffer =>
  encoding === null || encoding === "buffer" ? asBuffer(bytes) : asBuffer(bytes).toString(encoding)

/** @internal */
export const read = (core: Core, path: string, options: unknown): Promise<string | Buffer> =>
  attempt(() => {
    const target = entryPath(path)
    const bag = bagOf("options", options)
    const encoding = encodingOf(bag, null)
    flagOf(bag, "flag", "r")
    // Decoded with Buffer, not TextDecoder: Node's encodings ("latin1", "hex", "base64") differ.
    return run(Effect.map(core.service.read(target), (bytes) => decode(bytes, encoding)), signalOf(bag))
  })

type Data = string | ArrayBufferView | Iterable<unknown> | AsyncIterable<unknown>

// As Node tells an iterable: by a method, not by the key alone.
const isIterable = (u: object): u is Iterable<unknown> =>
  typeof (u as Record<symbol, unknown>)[Symbol.iterator] === "function"
const isAsyncIterable = (u: object): u is AsyncIterable<unknown> =>
  typeof (u as Record<symbol, unknown>)[Symbol.asyncIterator] === "function"

/**
 * An item of an iterable as Node's `writeFile` takes it: bytes as they are,
 * anything else through `Buffer.from` (text in `encoding`, an array of byte
 * values, an `ArrayBuffer`), which throws Node's own error for the rest.
 */
const chunkOf = (encoding: BufferEncoding) => (item: unknown): Uint8Array =>
  ArrayBuffer.isView(item) ? bytesOf(item) : Buffer.from(item as string, encoding)

/**
 * An iterable as a stream, read as Node's `writeFile` reads it (`for await`):
 * one item per pull, so a generator runs at the writer's pace
 * (`Stream.fromIterable` takes 4,096 items of one at once), the items of a
 * synchronous one awaited, and the iterator closed (`return()`) when the
 * write ends before it, on a bad item, a failure or an abort, so that its
 * `finally` runs (not once it has ended or thrown). That `return()` is not
 * awaited: a source stalled in `next()` would never let it settle, and an
 * abort must not wait for it.
 */
const fromIterable = <A>(iterable: Iterable<A> | AsyncIterable<A>): Stream.Stream<A, SourceFailure> =>
  Stream.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.try({
          try: () => ({
            iterator: (isAsyncIterable(iterable) ? iterable : asAsync(iterable))[Symbol.asyncIterator](),
            ended: false
          }),
          catch: (e) => new SourceFailure(e)
        }),
        (source) => Effect.sync(() => source.ended || settle(() => source.iterator.return?.()))
      ),
      (source) =>
        Stream.repeatEffectOption(
          Effect.tryPromise({
            try: () => source.iterator.next(),
            catch: (e) => {
              source.ended = true
              return Option.some(new SourceFailure(e))
            }
          }).pipe(
            Effect.flatMap((result) => {
              if (!result.done) return Effect.succeed(result.value)
              source.ended = true
              return Effect.fail(Option.none())
            })
          )
        )
    )
  )

/** A synchronous iterable as `for await` sees it: each item awaited, `return()` passed on. */
async function* asAsync<A>(iterable: Iterable<A>): AsyncGenerator<Awaited<A>> {
  yield* iterable
}

/** Calls `f`, ignoring what it throws or the promise it returns rejects with. */
const settle = (f: () => unknown): void => {
  try {
    void Promise.resolve(f()).catch(() => {})
  } catch {
    // The source's own cleanup failed: the write's outcome is already decided.
  }
}

/** Iterables and streams are written through the Effect Client's sink, chunk by chunk. */
const chunks = (data: Iterable<unknown> | AsyncIterable<unknown>, encoding: BufferEncoding) => {
  const toChunk = chunkOf(encoding)
  return Stream.mapEffect(
    fromIterable(data),
    (item) => Effect.try({ try: () => toChunk(item), catch: (e) => new SourceFailure(e) })
  )
}

/** @internal */
export const write = (core: Core, path: string, data: Data, options: unknown): Promise<void> =>
  attempt(() => {
    const target = entryPath(path)
    const bag = fieldsOf(options)
    // "buffer" is no encoding of text: bytes are written as they are, text fails as Node fails it.
    const encoding = encodingOf(bag, "utf8", true)
    const textEncoding = (encoding ?? "utf8") as BufferEncoding
    flagOf(bag, "flag", "w")
    const mode = modeOf(bag)
    const writeOptions = mode === undefined ? {} : { mode }
    const client = core.forWrite(flushOf(bag))
    const signal = signalOf(bag)
    if (typeof data === "string") {
      if (encoding === "buffer") throw unknownEncoding(encoding)
      return runReplacement(client.write(target, Buffer.from(data, textEncoding), writeOptions), signal)
    }
    if (ArrayBuffer.isView(data)) return runReplacement(client.write(target, bytesOf(data), writeOptions), signal)
    if (typeof data === "object" && data !== null && (isAsyncIterable(data) || isIterable(data))) {
      return runReplacement(Stream.run(chunks(data, textEncoding), client.sink(target, writeOptions)), signal)
    }
    // Node's words, although iterables and streams are accepted too.
    throw invalidArgType("data", "of type string or an instance of Buffer, TypedArray, or DataView", data)
  })

const nameIn = (name: string, encoding: Encoding): string | Buffer => {
  if (encoding === null || encoding === "buffer") return Buffer.from(name, "utf8")
  return encoding === "utf8" || encoding === "utf-8" ? name : Buffer.from(name, "utf8").toString(encoding)
}

/**
 * A directory entry shaped like `fs.Dirent`: a symbolic link is a link (the
 * Client is asked with `followLinks: false`), whatever it points to.
 *
 * @internal
 */
export class DirectoryEntry<Name extends string | Buffer> implements Dirent<Name> {
  constructor(readonly name: Name, readonly parentPath: string, readonly type: Entry["type"]) {}
  /** The deprecated alias of `parentPath` that Node still provides. */
  get path(): string {
    return this.parentPath
  }
  isFile(): boolean {
    return this.type === "File"
  }
  isDirectory(): boolean {
    return this.type === "Directory"
  }
  isSymbolicLink(): boolean {
    return this.type === "SymbolicLink"
  }
  isBlockDevice(): boolean {
    return this.type === "BlockDevice"
  }
  isCharacterDevice(): boolean {
    return this.type === "CharacterDevice"
  }
  isFIFO(): boolean {
    return this.type === "FIFO"
  }
  isSocket(): boolean {
    return this.type === "Socket"
  }
}

/** @internal */
export const collect = (core: Core, path: string, options: unknown): Promise<Array<unknown>> =>
  attempt<Array<unknown>>(() => {
    const directory = directoryPath(path)
    const bag = bagOf("options", options)
    // `null` lists names as strings, as Node's readdir does.
    const encoding = encodingOf(bag, "utf8", true) ?? "utf8"
    const recursive = truthyOf(bag, "recursive")
    const signal = signalOf(bag)
    if (!truthyOf(bag, "withFileTypes")) {
      return run(
        Effect.map(
          core.service.collect(directory, { recursive }),
          (names) => names.map((name) => nameIn(name, encoding))
        ),
        signal
      )
    }
    return run(
      // A link is a link, as in Node's Dirent: a walker recursing on
      // isDirectory() must not follow it.
      Effect.map(
        core.service.collectEntries(directory, { recursive, followLinks: false }),
        (entries) =>
          entries.map(({ name, type }) => {
            // Nested names come as "a/b": Node gives name "b" in parentPath "<path>/a".
            const slash = name.lastIndexOf("/")
            const parentPath = slash < 0 ? directory : nodePath.join(directory, name.slice(0, slash))
            return new DirectoryEntry(nameIn(name.slice(slash + 1), encoding), parentPath, type)
          })
      ),
      signal
    )
  })

// The errors Node's rm retries on (with `recursive`), with a linear back-off.
const retryable = new Set(["EBUSY", "EMFILE", "ENFILE", "ENOTEMPTY", "EPERM"])

/** @internal */
export const remove = (core: Core, path: string, options: unknown): Promise<void> =>
  attempt(() => {
    const target = entryPath(path)
    const bag = objectOf(options)
    const recursive = booleanOf(bag, "recursive")
    const force = booleanOf(bag, "force")
    const maxRetries = integerOf(bag, "maxRetries") ?? 0
    const retryDelay = integerOf(bag, "retryDelay") ?? 100
    const once = core.service.delete(target, { recursive, force })
    const effect = recursive && maxRetries > 0 ?
      Effect.retry(once, {
        schedule: Schedule.linear(retryDelay),
        times: maxRetries,
        while: (error) => error._tag === "FileSystemError" && retryable.has((error as FileSystemError).code ?? "")
      }) :
      once
    return run(effect, signalOf(bag))
  })

/** @internal */
export const rename = (core: Core, oldPath: string, newPath: string, options: unknown): Promise<void> =>
  attempt(() => {
    // In the original's order: both absolute, then neither the root.
    const from = absolute(oldPath, "oldPath")
    const to = absolute(newPath, "newPath")
    withoutNul(notRoot(from), "oldPath")
    withoutNul(notRoot(to), "newPath")
    const moved = Effect.catchIf(
      core.service.rename(from, to),
      (error) => error._tag === "InvalidArgumentError",
      // A directory moved into itself: what rename(2) says, as the original passed it on.
      () => Effect.fail(intoItself(from, to))
    )
    return run(moved, signalOf(bagOf("options", options)))
  })

/**
 * The options the original accepted and ignored stay ignored: `fd` (the
 * stream opens `path`), `fs`, `autoClose: false` (the lock is released when
 * the stream closes, whatever it says) and `emitClose`. `flags` other than
 * the one the stream always uses are refused: the original ignored them too,
 * but an append or an exclusive create silently done as a replacement would
 * lose what the caller meant to keep.
 *
 * @internal
 */
export const createReadStream = (core: Core, path: string, options: unknown): Promise<LockedReadStream> =>
  attempt(() => {
    const target = entryPath(path)
    const bag = fieldsOf(options)
    flagOf(bag, "flags", "r")
    const encoding = encodingOf(bag, null)
    const start = integerOf(bag, "start", "start")
    const end = bag.end === Infinity ? undefined : integerOf(bag, "end", "end")
    return openReadStream(core.service, target, {
      encoding,
      start,
      end,
      highWaterMark: highWaterMarkOf(bag, "read"),
      signal: signalOf(bag),
      onError: core.onError
    })
  })

/**
 * As {@link createReadStream} for the ignored options; `start` other than 0
 * is refused (the stream replaces the whole file, and the original, which
 * ignored it, truncated what the caller meant to keep).
 *
 * @internal
 */
export const createWriteStream = (core: Core, path: string, options: unknown): Promise<Writable> =>
  attempt(() => {
    const resolved = absolute(path)
    // The original checked an already aborted signal here, before anything
    // else, and threw its reason.
    if (typeof options === "object" && options !== null) {
      const signal = signalOf(options as Record<string, unknown>)
      if (signal?.aborted) throw signal.reason
    }
    const target = withoutNul(notRoot(resolved))
    const bag = fieldsOf(options)
    flagOf(bag, "flags", "w")
    const start = integerOf(bag, "start", "start")
    if (start !== undefined && start !== 0) {
      throw invalidArgValue("options.start", start, "must be 0 (a write stream replaces the whole file)")
    }
    const encoding = encodingOf(bag, "utf8")
    return openWriteStream(core.forWrite(flushOf(bag)), target, {
      encoding: encoding === null || encoding === "buffer" ? "utf8" : encoding,
      mode: modeOf(bag),
      highWaterMark: highWaterMarkOf(bag, "write"),
      signal: signalOf(bag),
      onError: core.onError
    })
  })
