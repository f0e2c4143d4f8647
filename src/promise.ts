/**
 * A Promise facade with the original library's class API, for code that does
 * not use Effect: `new LockManager()`, `new Client({ manager })`, and the same
 * methods, options and return types, so switching is a change of import.
 *
 * It runs the Effect services underneath: a facade `LockManager` wraps a
 * `LockManagerService` (and can be built from one, or hand its own to Effect
 * code), and a facade `Client` runs an Effect `Client` on it. Effect code and
 * Promise code sharing one manager share one lock authority.
 *
 * Errors are `Error` instances with a Node-style `code` (`ENOENT`, `EACCES`,
 * `EEXIST`, `ENOSPC`, `ENOTDIR`, `EISDIR`, ...; `ERR_INVALID_ARG_VALUE` for a
 * refused path; `ABORT_ERR` with name `AbortError` for an abort) and the
 * library's tagged error as `cause`. An error whose change is committed but
 * not durable has `committed: true`.
 *
 * @example
 * ```ts
 * import { Client, LockManager } from "effect-persistence/promise"
 *
 * const manager = new LockManager()
 * const client = new Client({ manager, durable: true })
 * await client.write("/tmp/example.json", JSON.stringify({ message: "Hello, World!" }))
 * const data = await client.read("/tmp/example.json", "utf8")
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Dirent, ReadStream } from "node:fs"
import type { Readable, Writable } from "node:stream"
import type { ClientService } from "./Client.js"
import * as internalClient from "./internal/promise/client.js"
import { invalidArgType, invalidArgValue, originalError } from "./internal/promise/errors.js"
import * as internalLocks from "./internal/promise/lockManager.js"
import { lockPath } from "./internal/promise/paths.js"
import { attempt, run } from "./internal/promise/run.js"
import * as EffectLockManager from "./LockManager.js"
import type { LockManagerService, LockStats } from "./LockManager.js"

/**
 * The original library's lock types: `"collect"` is a read, `"delete"` a write.
 *
 * @since 0.1.0
 * @category models
 */
export type LockType = "read" | "write" | "collect" | "delete"

/**
 * An `AbortSignal` aborts waiting for a lock as well as the I/O; whatever was
 * taken (a lock, a temp file) is released, and the Promise rejects with an
 * `AbortError` (code `ABORT_ERR`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Abortable {
  readonly signal?: AbortSignal | undefined
}

/**
 * Where errors go that have no caller left to receive them (a failure while
 * releasing a lock in the background). Default `console.error`.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorHandler = typeof console.error

/**
 * @since 0.1.0
 * @category models
 */
export interface LockManagerOptions {
  readonly errorHandler?: ErrorHandler | undefined
  /**
   * Wrap this Effect lock service instead of creating one. Prefer
   * {@link LockManager.fromService}, which returns one facade per service.
   */
  readonly service?: LockManagerService | undefined
}

const facades = new WeakMap<LockManagerService, LockManager>()

const toHandler = (handler: ErrorHandler | null | undefined): (error: Error) => void => {
  // As the original, null is the default.
  if (handler !== undefined && handler !== null && typeof handler !== "function") {
    throw invalidArgType("options.errorHandler", "of type function", handler)
  }
  const h = handler ?? console.error
  return (error) => h(error)
}

/**
 * Hierarchical read/write path locks with FIFO fairness between conflicting
 * requests, as a class. Reads overlap reads; a write excludes every lock on
 * the same path, its ancestors and its descendants.
 *
 * @example
 * ```ts
 * import { LockManager } from "effect-persistence/promise"
 *
 * const manager = new LockManager()
 * const id = await manager.acquire("/data/users.json", "write")
 * try {
 *   // exclusive access
 * } finally {
 *   manager.release(id)
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export class LockManager {
  /** Wraps an Effect lock service: the facade for it is created once and then reused. */
  static fromService(service: LockManagerService, options?: Omit<LockManagerOptions, "service">): LockManager {
    return facades.get(service) ?? new LockManager({ ...options, service })
  }

  /**
   * The Effect lock service this facade runs on: give it to Effect code (or
   * use {@link LockManager.layer}) so both sides share one authority.
   */
  readonly service: LockManagerService
  readonly #holds: internalLocks.Holds

  constructor(options?: LockManagerOptions) {
    // As `??` reads it, null is no service.
    const service: unknown = options?.service ?? undefined
    if (
      service !== undefined && !(typeof service === "object" && service !== null && EffectLockManager.TypeId in service)
    ) {
      throw invalidArgType("options.service", "a LockManager service (from effect-persistence)", service)
    }
    this.service = options?.service ?? Effect.runSync(EffectLockManager.make)
    this.#holds = new internalLocks.Holds(this.service, toHandler(options?.errorHandler))
    if (!facades.has(this.service)) facades.set(this.service, this)
  }

  /** The service as a layer for Effect programs: `Effect.provide(manager.layer)`. */
  get layer(): Layer.Layer<EffectLockManager.LockManager> {
    return Layer.succeed(EffectLockManager.LockManager, this.service)
  }

  /**
   * Waits for a lock on a path and resolves with its id, to be given to
   * {@link LockManager.release}. A relative path is resolved against the
   * working directory, as the original did. Ids strictly increase across the
   * grants of one manager (usable as fencing tokens). A write lock on the
   * root is refused (`Operation is not supported.`), and so is an unknown
   * type (`Unexpected lock type: ...`).
   */
  acquire(path: string, type: LockType, options?: Abortable): Promise<number> {
    return attempt(() => {
      const mode = internalLocks.modeOf(type)
      return this.#holds.acquire(this.service.lock(lockPath(path, mode), mode), options)
    })
  }

  /**
   * One combined write lock over several paths (as a rename needs).
   * Duplicates count once, nested paths do not conflict with each other, and
   * an empty set is refused (`Paths must not be empty.`).
   */
  acquireAll(paths: Iterable<string>, options?: Abortable): Promise<number> {
    return attempt(() => {
      const resolved: Array<string> = []
      for (const path of paths) resolved.push(lockPath(path, "write"))
      if (resolved.length === 0) throw originalError("Paths must not be empty.")
      return this.#holds.acquire(this.service.lockAll(resolved), options)
    })
  }

  /**
   * Releases a lock taken through this facade. Releasing an unknown or
   * already released id is a no-op (so a `finally` may release safely);
   * locks taken by Effect code are released by their own scopes.
   */
  release(id: number): void {
    this.#holds.release(id)
  }

  /** Locks held, requests waiting and nodes in the path index: all 0 when idle. */
  stats(): Promise<LockStats> {
    return run(this.service.stats)
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /** The lock manager coordinating access. */
  readonly manager: LockManager
  /** fsync file data and the directories whose entries changed. Default `false`. */
  readonly durable?: boolean | undefined
  /** Suffix of temp files (`.<name>.<random>.<suffix>`). Default `"tmp"`. */
  readonly tempSuffix?: string | undefined
  /** Default `console.error`. */
  readonly errorHandler?: ErrorHandler | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReadOptions extends Abortable {
  readonly encoding?: BufferEncoding | null | undefined
  /** Only `"r"`. */
  readonly flag?: "r" | undefined
}

/**
 * What `write` accepts, as `fs.promises.writeFile`. Iterables and streams are
 * written chunk by chunk while the write lock is held.
 *
 * @since 0.1.0
 * @category models
 */
export type WriteData =
  | string
  | NodeJS.ArrayBufferView
  | Iterable<string | NodeJS.ArrayBufferView>
  | AsyncIterable<string | NodeJS.ArrayBufferView>
  | Readable

/**
 * @since 0.1.0
 * @category models
 */
export interface WriteOptions extends Abortable {
  /** Encoding of string data. Default `"utf8"`. */
  readonly encoding?: BufferEncoding | null | undefined
  /** Permission bits of a new file (subject to the umask). Default `0o666`. */
  readonly mode?: number | string | undefined
  /** Only `"w"`: every write replaces the whole file. */
  readonly flag?: "w" | undefined
  /** fsync this write (and its directory) even when the Client is not durable. */
  readonly flush?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CollectOptions extends Abortable {
  /** Encoding of the names, `"buffer"` for Buffers. Default `"utf8"`. */
  readonly encoding?: BufferEncoding | "buffer" | null | undefined
  /** `Dirent`-like entries instead of names. */
  readonly withFileTypes?: boolean | undefined
  /** Also list subdirectories (names relative to `path`, as Node). */
  readonly recursive?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DeleteOptions extends Abortable {
  readonly recursive?: boolean | undefined
  /** Succeed when the path does not exist. */
  readonly force?: boolean | undefined
  /** With `recursive`: retries on `EBUSY`, `EMFILE`, `ENFILE`, `ENOTEMPTY`, `EPERM`. Default 0. */
  readonly maxRetries?: number | undefined
  /** Linear back-off step in milliseconds between retries. Default 100. */
  readonly retryDelay?: number | undefined
}

/**
 * Options of Node's stream constructors that the original accepted and
 * ignored, and so does the facade: the stream always opens `path` itself
 * (`fd`, `fs`) and closes it, releasing the lock (`autoClose`, `emitClose`).
 *
 * @since 0.1.0
 * @category models
 */
export interface IgnoredStreamOptions {
  readonly fd?: unknown
  readonly fs?: unknown
  readonly autoClose?: boolean | undefined
  readonly emitClose?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReadStreamOptions extends Abortable, IgnoredStreamOptions {
  /** Only `"r"`. */
  readonly flags?: "r" | undefined
  readonly encoding?: BufferEncoding | null | undefined
  /** Ignored, as by Node for a stream that only reads. */
  readonly mode?: number | string | undefined
  /** First byte to read. */
  readonly start?: number | undefined
  /** Last byte to read (inclusive, as Node). */
  readonly end?: number | undefined
  /**
   * How much the stream buffers ahead of its reader, and the largest chunk
   * (chunks are read 1 MiB at most at a time). Default 64 KiB; from 1 to
   * `buffer.constants.MAX_LENGTH`, else `ERR_OUT_OF_RANGE`.
   */
  readonly highWaterMark?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface WriteStreamOptions extends Abortable, IgnoredStreamOptions {
  /** Only `"w"`. */
  readonly flags?: "w" | undefined
  /** Default encoding of string chunks. Default `"utf8"`. */
  readonly encoding?: BufferEncoding | null | undefined
  readonly mode?: number | string | undefined
  /** Only 0: the stream replaces the whole file. */
  readonly start?: 0 | undefined
  readonly highWaterMark?: number | undefined
  /** fsync even when the Client is not durable. */
  readonly flush?: boolean | undefined
}

/**
 * Reads, writes, lists, renames and deletes files under hierarchical locks,
 * with atomic replacement (temp file + rename) and optional durability.
 * Every path must be absolute.
 *
 * @since 0.1.0
 * @category models
 */
export class Client {
  /** Whether durability mode is on. */
  readonly durable: boolean
  /** The facade lock manager this Client uses. */
  readonly manager: LockManager
  /** The Effect Client this facade runs: usable from Effect code on the same manager. */
  readonly service: ClientService
  readonly #core: internalClient.Core

  constructor(options: ClientOptions) {
    if (typeof options !== "object" || options === null || !(options.manager instanceof LockManager)) {
      throw invalidArgType("options.manager", "an instance of LockManager", options?.manager)
    }
    // The original kept any value and failed its first write on one that is not a boolean (fs's `flush`).
    if (options.durable !== undefined && options.durable !== null && typeof options.durable !== "boolean") {
      throw invalidArgType("options.durable", "of type boolean", options.durable)
    }
    // The original has no `root`: ignored, a caller counting on confinement would write outside it.
    const root = (options as { readonly root?: unknown }).root
    if (root !== undefined && root !== null) {
      throw invalidArgValue(
        "options.root",
        root,
        "is not supported by the Promise facade: confine with the Effect Client's root"
      )
    }
    this.manager = options.manager
    this.service = internalClient.makeService(options.manager.service, options)
    this.durable = this.service.durable
    this.#core = new internalClient.Core(
      this.service,
      options.manager.service,
      options.tempSuffix,
      toHandler(options.errorHandler)
    )
  }

  /** Reads a whole file under a read lock: text with an encoding, else a Buffer. */
  read(path: string, options: (ReadOptions & { readonly encoding: BufferEncoding }) | BufferEncoding): Promise<string>
  read(path: string, options?: (ReadOptions & { readonly encoding?: null | undefined }) | null): Promise<Buffer>
  read(path: string, options?: ReadOptions | BufferEncoding | null): Promise<string | Buffer>
  read(path: string, options?: ReadOptions | BufferEncoding | null): Promise<string | Buffer> {
    return internalClient.read(this.#core, path, options)
  }

  /**
   * Atomically replaces a file (temp file + rename) under a write lock,
   * creating missing parent directories. In durable mode the data and the
   * directory are fsynced.
   */
  write(path: string, data: WriteData, options?: WriteOptions | BufferEncoding | null): Promise<void> {
    return internalClient.write(this.#core, path, data, options)
  }

  /**
   * Lists a directory under a read lock. Leftover temp files of crashed
   * writers are not listed.
   */
  collect(
    path: string,
    options: CollectOptions & { readonly encoding: "buffer"; readonly withFileTypes: true }
  ): Promise<Array<Dirent<Buffer>>>
  collect(
    path: string,
    options: (CollectOptions & { readonly encoding: "buffer"; readonly withFileTypes?: false | undefined }) | "buffer"
  ): Promise<Array<Buffer>>
  collect(
    path: string,
    options: CollectOptions & {
      readonly encoding?: BufferEncoding | null | undefined
      readonly withFileTypes: true
    }
  ): Promise<Array<Dirent>>
  collect(
    path: string,
    options?:
      | (CollectOptions & {
        readonly encoding?: BufferEncoding | null | undefined
        readonly withFileTypes?: false | undefined
      })
      | BufferEncoding
      | null
  ): Promise<Array<string>>
  collect(
    path: string,
    options?: CollectOptions | BufferEncoding | "buffer" | null
  ): Promise<Array<string> | Array<Buffer> | Array<Dirent> | Array<Dirent<Buffer>>>
  collect(
    path: string,
    options?: CollectOptions | BufferEncoding | "buffer" | null
  ): Promise<Array<string> | Array<Buffer> | Array<Dirent> | Array<Dirent<Buffer>>> {
    return internalClient.collect(this.#core, path, options) as Promise<Array<string>>
  }

  /**
   * Removes a file, or a directory with `recursive`, under a write lock that
   * covers the whole subtree.
   */
  delete(path: string, options?: DeleteOptions): Promise<void> {
    return internalClient.remove(this.#core, path, options)
  }

  /**
   * Moves a file or directory under one write lock on both paths. Missing
   * parents of `newPath` are created; the same path is a no-op.
   */
  rename(oldPath: string, newPath: string, options?: Abortable): Promise<void> {
    return internalClient.rename(this.#core, oldPath, newPath, options)
  }

  /**
   * Resolves with a stream shaped like `fs.ReadStream` once the read lock is
   * held and the file is open. As with the original, only bad arguments
   * reject: a missing file (`ENOENT`), a directory (`EISDIR`) or an abort is
   * the stream's `error` event, and the lock is released by then. Otherwise
   * the lock is held until the stream closes: after it ends, on error, on
   * `destroy()` or on abort.
   */
  createReadStream(path: string, options?: ReadStreamOptions | BufferEncoding): Promise<ReadStream> {
    return internalClient.createReadStream(this.#core, path, options)
  }

  /**
   * Resolves with a Writable once the write lock is held and the temp file is
   * open. Data goes to the temp file; `end()` commits it (rename, fsync in
   * durable mode) and `finish` is emitted only after the commit. Destroying
   * the stream or aborting its signal before that removes the temp file and
   * keeps the old content, and every write not yet acknowledged has its
   * callback called with the error (`AbortError` for an abort,
   * `ERR_STREAM_DESTROYED` for a plain `destroy()`). The lock is held until
   * the commit or the discard. An already aborted signal rejects the call
   * with its reason, as the original did.
   */
  createWriteStream(path: string, options?: WriteStreamOptions | BufferEncoding): Promise<Writable> {
    return internalClient.createWriteStream(this.#core, path, options)
  }
}
