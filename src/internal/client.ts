/** @internal */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type * as Api from "../Client.js"
import { type Lock, LockManager } from "../LockManager.js"
import { FileSystemError, InvalidArgumentError, InvalidPathError } from "../PersistenceError.js"
import {
  afterCommit,
  begin,
  type Disk,
  ensureDirectory,
  forgetDurable,
  makeDisk,
  makeDurable,
  replace,
  replaceSink,
  syncDirectory,
  tempPattern
} from "./atomic.js"
import { errnoCode, fromPlatform, invalidPath, io } from "./errors.js"
import * as FileStream from "./fileStream.js"
import * as Input from "./input.js"
import { jsonCodec } from "./jsonCodec.js"
import { countOperation } from "./metrics.js"
import { basename, isAncestor, join, normalize, parent, ROOT } from "./path.js"

/** @internal */
export const TypeId: typeof Api.TypeId = Symbol.for("effect-persistence/Client") as typeof Api.TypeId

/**
 * How an operation uses its path: a `directory` may be the root; a `file`
 * read and a `mutation` may not.
 */
type Use = "file" | "directory" | "mutation"

const encoder = new TextEncoder()
const toBytes = (data: string): Uint8Array => encoder.encode(data)

/**
 * Runs an operation in a span named after it, with the path, and counts its
 * outcome: what `Effect.withSpan` and `Effect.onExit` do, in one
 * uninterruptible region where those two take three. The span becomes the
 * parent of what runs inside (the lock wait, the file system calls) by an
 * update of the context `FiberRef`, undone on every exit before the span
 * ends, as `withSpan` does. Making, ending and counting all happen inside the
 * region, so an interrupt cannot leave the span open or uncounted, nor end it
 * with another outcome than the one counted (with `withSpan`, both can happen
 * when the interrupt lands between two of its steps). Spans capture no stack
 * trace (~3 µs of a 4 KiB read).
 */
const span = (name: string, path: unknown) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      Effect.makeSpan(name, { attributes: { "persistence.path": path }, captureStackTrace: false }),
      (opened) =>
        Effect.withFiberRuntime<A, E, R>((fiber) => {
          const outer = fiber.currentContext
          const timed = fiber.getFiberRef(FiberRef.currentTracerTimingEnabled)
          const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
          return FiberRef.set(FiberRef.currentContext, Context.add(outer, Tracer.ParentSpan, opened)).pipe(
            Effect.zipRight(Effect.exit(restore(self))),
            Effect.flatMap((exit) =>
              Effect.zipRight(
                FiberRef.set(FiberRef.currentContext, outer),
                Effect.suspend(() => {
                  if (opened.status._tag !== "Ended") {
                    opened.end(timed ? clock.unsafeCurrentTimeNanos() : BigInt(0), exit)
                  }
                  countOperation(name, exit)
                  return exit
                })
              )
            )
          )
        })
    )
  )

const countExit = (name: string) => <A, E>(exit: Exit.Exit<A, E>) => Effect.sync(() => countOperation(name, exit))

const validateSuffix = (suffix: unknown): Either.Either<string, InvalidPathError> =>
  typeof suffix !== "string" ?
    Either.left(invalidPath("Client.make", suffix, "NotAString", "tempSuffix")) :
    suffix.length === 0 ?
    Either.left(invalidPath("Client.make", suffix, "Empty", "tempSuffix")) :
    suffix.includes("/") || suffix.includes("\0") ?
    Either.left(invalidPath("Client.make", suffix, "InvalidName", "tempSuffix")) :
    Either.right(suffix)

/** @internal */
export const make = (
  options: Api.ClientOptions = {}
): Effect.Effect<
  Api.ClientService,
  InvalidPathError | FileSystemError,
  LockManager | FileSystem.FileSystem
> =>
  Effect.gen(function*() {
    const manager = yield* LockManager
    const fs = yield* FileSystem.FileSystem
    const tempSuffix = yield* validateSuffix(options.tempSuffix ?? "tmp")
    const disk = makeDisk(fs, {
      durable: options.durable ?? false,
      tempSuffix,
      groupCommit: options.groupCommit ?? true
    })
    const isTemp = tempPattern(tempSuffix)
    const confinement = options.root === undefined ? undefined : yield* confine(fs, options.root)

    /** Validates, normalises and (with a root) confines a path. No lock, no change on disk. */
    const resolve = (operation: string, path: string, use: Use): Effect.Effect<string, Api.ReadError> => {
      const normal = normalize(path)
      if (Either.isLeft(normal)) return Effect.fail(invalidPath(operation, path, normal.left))
      const p = normal.right
      if (use !== "directory" && p === ROOT) return Effect.fail(invalidPath(operation, path, "Root"))
      return confinement === undefined ? Effect.succeed(p) : confinement(operation, path, p, use)
    }

    const readLocked = <A, E, R = never>(
      operation: string,
      path: string,
      use: Use,
      f: (p: string) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | Api.ReadError, R> =>
      resolve(operation, path, use).pipe(
        Effect.flatMap((p) => manager.withLock(p, "read")(f(p))),
        span(operation, path)
      )

    const writeLocked = <A, E, R>(
      operation: string,
      path: string,
      f: (p: string, lock: Lock) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | Api.ReadError, R> =>
      resolve(operation, path, "mutation").pipe(
        Effect.flatMap((p) => manager.withLock(p, "write")((lock) => f(p, lock))),
        span(operation, path)
      )

    const readCurrent = (operation: string, p: string): Effect.Effect<Option.Option<Uint8Array>, FileSystemError> =>
      io(operation, p, fs.readFile(p)).pipe(
        Effect.map(Option.some),
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none()))
      )

    /** Read-modify-write of raw bytes under one write lock. */
    const modifyWith = <A, E, R>(
      operation: string,
      path: string,
      f: (current: Option.Option<Uint8Array>) => Effect.Effect<readonly [A, Uint8Array], E, R>,
      mode: number | undefined
    ): Effect.Effect<A, Api.WriteError | E, R> =>
      writeLocked(operation, path, (p, lock) =>
        readCurrent(operation, p).pipe(
          Effect.flatMap(f),
          Effect.flatMap(([result, bytes]) => Effect.as(replace(disk, operation, p, lock, bytes, mode), result))
        ))

    const entries = (operation: string, dir: string, recursive: boolean, includeTemp: boolean) =>
      io(operation, dir, fs.readDirectory(dir, { recursive })).pipe(
        Effect.map((names) => includeTemp ? names : names.filter((name) => !isTemp.test(basename(name))))
      )

    // The platform has no lstat: `stat` follows links, and a link whose target
    // is gone is told apart by `readLink`.
    const entryType = (operation: string, path: string): Effect.Effect<FileSystem.File.Type, FileSystemError> =>
      io(operation, path, fs.stat(path)).pipe(
        Effect.map((info) => info.type),
        Effect.catchIf((e) => e.reason === "NotFound", (e) =>
          fs.readLink(path).pipe(Effect.as("SymbolicLink" as const), Effect.mapError(() => e)))
      )

    const decoder = new TextDecoder()

    const service: Api.ClientService = {
      [TypeId]: TypeId,
      durable: disk.durable,

      read: (path) =>
        readLocked("Client.read", path, "file", (p) => io("Client.read", p, fs.readFile(p))),

      readString: (path, encoding) =>
        Effect.flatMap(Input.encoding("Client.readString", path, encoding), (encoding) =>
          readLocked(
            "Client.readString",
            path,
            "file",
            (p) => io("Client.readString", p, fs.readFileString(p, encoding))
          )),

      stream: (path, options) =>
        Stream.unwrapScoped(
          Effect.gen(function*() {
            const checked = yield* Input.streamOptions("Client.stream", path, options)
            const p = yield* resolve("Client.stream", path, "file")
            yield* manager.lock(p, "read")
            // Opened in the lock's scope: closed before the lock is released.
            const file = yield* io("Client.stream", p, fs.open(p, { flag: "r" }))
            if (checked.offset !== undefined && checked.offset > 0) {
              yield* file.seek(FileSystem.Size(checked.offset), "start")
            }
            return FileStream.fromFile(file, checked).pipe(Stream.mapError(fromPlatform("Client.stream", p)))
          })
        ).pipe(
          Stream.ensuringWith(countExit("Client.stream")),
          Stream.withSpan("Client.stream", { attributes: { "persistence.path": path }, captureStackTrace: false })
        ),

      write: (path, data, options) =>
        Effect.flatMap(writeInput("Client.write", path, data, options), ({ bytes, mode }) =>
          writeLocked("Client.write", path, (p, lock) =>
            replace(disk, "Client.write", p, lock, bytes, mode))),

      sink: (path, options) =>
        Sink.unwrapScoped(
          Effect.gen(
            function*(): Effect.fn.Return<
              Sink.Sink<void, Uint8Array, never, Api.WriteError>,
              Api.WriteError,
              Scope.Scope
            > {
              const mode = yield* Input.mode("Client.sink", path, options?.mode)
              const p = yield* resolve("Client.sink", path, "mutation")
              const lock = yield* manager.lock(p, "write")
              return yield* replaceSink(disk, "Client.sink", p, lock, mode)
            }
          ).pipe(Effect.withSpan("Client.sink", { attributes: { "persistence.path": path }, captureStackTrace: false }))
        ).pipe(Sink.ensuringWith(countExit("Client.sink"))),

      collect: (path, options) =>
        readLocked(
          "Client.collect",
          path,
          "directory",
          (p) =>
            entries("Client.collect", p, options?.recursive ?? false, options?.includeTemp ?? false)
        ),

      collectEntries: (path, options) =>
        readLocked("Client.collectEntries", path, "directory", (p) =>
          entries("Client.collectEntries", p, options?.recursive ?? false, options?.includeTemp ?? false).pipe(
            Effect.flatMap((names) =>
              Effect.forEach(names, (name) =>
                entryType("Client.collectEntries", join(p, name)).pipe(
                  Effect.map((type): Api.Entry => ({ name, type }))
                ), { concurrency: 16 })
            )
          )),

      delete: (path, options) =>
        writeLocked("Client.delete", path, (p, lock) => {
          const force = options?.force ?? false
          const recursive = options?.recursive ?? false
          const removed = io("Client.delete", p, fs.remove(p, { recursive, force })).pipe(
            // As `rm` without `-r`, a directory (even an empty one) needs `recursive`: say so.
            Effect.mapError((e) =>
              !recursive && e.reason === "IsADirectory" ?
                withDetail(e, "pass { recursive: true } to remove a directory (even an empty one)") :
                e
            ),
            // Even a failed recursive delete may have removed directories.
            Effect.ensuring(Effect.sync(() =>
              forgetDurable(disk, p)
            ))
          )
          // A forced delete under a missing parent changed nothing to persist.
          const sync = syncDirectory(disk, "Client.delete", parent(p)).pipe(
            Effect.catchIf((e) =>
              force && e.reason === "NotFound", () =>
              Effect.void)
          )
          // Once started, the removal runs to its end under the lock: an
          // interrupted rm would otherwise go on deleting after the release.
          return Effect.zipRight(
            lock.ensureHeld("Client.delete"),
            Effect.uninterruptible(
              disk.durable ? Effect.zipRight(removed, afterCommit("Client.delete", p, sync)) : removed
            )
          )
        }),

      rename: (from, to) =>
        Effect.gen(function*() {
          const operation = "Client.rename"
          const source = yield* resolve(operation, from, "mutation")
          const target = yield* resolve(operation, to, "mutation")
          if (source === target) {
            return
          }
          if (isAncestor(source, target)) {
            return yield* new InvalidArgumentError({
              operation,
              path: to,
              argument: "to",
              detail: `cannot move ${JSON.stringify(source)} into itself`
            })
          }
          yield* manager.withLockAll([source, target])((lock) =>
            // Once started, the move runs to its end under the lock (an
            // abandoned rename could land after the release).
            Effect.zipRight(lock.ensureHeld(operation), Effect.uninterruptible(renameLocked(disk, source, target)))
          )
        }).pipe(span("Client.rename", `${from} -> ${to}`)),

      copy: (from, to, options) =>
        Effect.gen(function*() {
          const operation = "Client.copy"
          const mode = yield* Input.mode(operation, to, options?.mode)
          const source = yield* resolve(operation, from, "file")
          const target = yield* resolve(operation, to, "mutation")
          if (source === target) {
            // Onto itself: nothing changes, but the source must be a file.
            return yield* manager.withLock(source, "read")(sameFile(fs, operation, source))
          }
          yield* manager.withLockAll([[source, "read"], [target, "write"]])((lock) =>
            copyLocked(disk, operation, source, target, lock, mode)
          )
        }).pipe(span("Client.copy", `${from} -> ${to}`)),

      exists: (path) =>
        readLocked("Client.exists", path, "directory", (p) =>
          io("Client.exists", p, fs.exists(p))),

      stat: (path) => readLocked("Client.stat", path, "directory", (p) => io("Client.stat", p, fs.stat(p))),

      makeDirectory: (path) =>
        writeLocked("Client.makeDirectory", path, (p, lock) => {
          const operation = "Client.makeDirectory"
          const made = io(operation, p, fs.stat(p)).pipe(
            Effect.flatMap((info) =>
              info.type === "Directory" ?
                Effect.void :
                Effect.fail(new FileSystemError({ operation, path: p, reason: "AlreadyExists" }))
            ),
            Effect.catchIf((e) => e.reason === "NotFound", () => ensureDirectory(disk, operation, p))
          )
          // An existing directory may not be durable yet either (its creator
          // may not have fsynced its parent): the same check as a commit's.
          return Effect.zipRight(
            lock.ensureHeld(operation),
            disk.durable ? Effect.zipRight(made, afterCommit(operation, p, makeDurable(disk, operation, p))) : made
          )
        }),

      modify: (path, f, options) =>
        Effect.flatMap(Input.mode("Client.modify", path, options?.mode), (mode) =>
          modifyWith("Client.modify", path, (current) =>
            Effect.flatMap(lift(f(current)), (next) =>
              Effect.map(Input.bytes("Client.modify", path, next), (bytes) =>
                [next, bytes] as const)), mode)),

      readJson: (path, schema) =>
        readLocked("Client.readJson", path, "file", (p) =>
          io("Client.readJson", p, fs.readFileString(p)).pipe(
            Effect.flatMap((text) =>
              jsonCodec(schema).decode("Client.readJson", p, text)
            )
          )),

      writeJson: (path, schema, value, options) =>
        Effect.all([
          Input.mode("Client.writeJson", path, options?.mode),
          jsonCodec(schema).encode("Client.writeJson", path, value)
        ])
          .pipe(
            Effect.flatMap(([mode, text]) =>
              writeLocked("Client.writeJson", path, (p, lock) =>
                replace(disk, "Client.writeJson", p, lock, toBytes(text), mode))
            ),
            span("Client.writeJson", path)
          ),

      modifyJson: (path, schema, f, options) => {
        const operation = "Client.modifyJson"
        const codec = jsonCodec(schema)
        return Effect.flatMap(Input.mode(operation, path, options?.mode), (mode) =>
          modifyWith(operation, path, (current) =>
            Effect.gen(function*() {
              const decoded = Option.isNone(current) ?
                Option.none() :
                Option.some(yield* codec.decode(operation, path, decoder.decode(current.value)))
              const next = yield* lift(f(decoded))
              const text = yield* codec.encode(operation, path, next)
              return [next, toBytes(text)] as const
            }), mode))
      },

      // A directory operation: the (confinement) root may be recovered, but
      // the LockManager refuses a write lock on "/".
      recover: (dir, options) =>
        resolve("Client.recover", dir, "directory").pipe(
          Effect.flatMap((p) =>
            manager.withLock(p, "write")((lock) =>
              Effect.gen(function*() {
                const operation = "Client.recover"
                const names = yield* io(operation, p, fs.readDirectory(p, { recursive: options?.recursive ?? false }))
                const removed = names.filter((name) =>
                  isTemp.test(basename(name))
                ).map((name) =>
                  join(p, name)
                )
                if (removed.length === 0) {
                  return removed
                }
                yield* lock.ensureHeld(operation)
                // The removals (and their fsync) run to their end under the lock.
                const remove = Effect.forEach(
                  removed,
                  (temp) => io(operation, temp, fs.remove(temp, { force: true })),
                  {
                    discard: true
                  }
                )
                const dirs = Array.from(new Set(removed.map(parent)))
                const sync = Effect.forEach(dirs, (d) => syncDirectory(disk, operation, d), { discard: true })
                yield* Effect.uninterruptible(
                  disk.durable ? Effect.zipRight(remove, afterCommit(operation, p, sync)) : remove
                )
                return removed
              })
            )
          ),
          span("Client.recover", dir)
        )
    }

    return service
  })

/** The same error with advice for the reader. */
const withDetail = (error: FileSystemError, detail: string): FileSystemError =>
  new FileSystemError({
    operation: error.operation,
    path: error.path,
    reason: error.reason,
    ...(error.code !== undefined ? { code: error.code } : {}),
    detail,
    cause: error.cause
  })

/** Data and mode of a write, checked before any lock or I/O. */
const writeInput = (operation: string, path: unknown, data: unknown, options: Api.WriteOptions | undefined) =>
  Either.all({ bytes: Input.bytes(operation, path, data), mode: Input.mode(operation, path, options?.mode) })

/** @internal */
export const makeFromConfig = (
  config: Config.Config<Api.ClientOptions>
) => Effect.flatMap(config, (options) => make(options))

const lift = <A, E, R>(update: Api.Update<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.isEffect(update) ? update : Effect.succeed(update)

/**
 * Rename under the combined lock. A missing source fails as not found before
 * anything is created; missing parents of the target are created only once the
 * source is known to exist.
 */
const renameLocked = (disk: Disk, source: string, target: string): Effect.Effect<void, Api.WriteError> => {
  const operation = "Client.rename"
  const move = io(operation, source, disk.fs.rename(source, target)).pipe(
    // Directories that moved (or were replaced) are no longer known durable.
    Effect.ensuring(Effect.sync(() => {
      forgetDurable(disk, source)
      forgetDurable(disk, target)
    }))
  )
  // A missing source fails as not found before any directory is created.
  const prepare = io(operation, source, disk.fs.stat(source)).pipe(
    Effect.zipRight(ensureDirectory(disk, operation, parent(target)))
  )
  if (!disk.durable) {
    // Optimistic: the rename alone, unless the target's parent is missing.
    return move.pipe(
      Effect.catchIf((error) => error.reason === "NotFound", () => Effect.zipRight(prepare, move))
    )
  }
  return prepare.pipe(
    // The new location must be reachable after a power loss before the file
    // leaves the old one.
    Effect.zipRight(makeDurable(disk, operation, parent(target))),
    Effect.zipRight(move),
    // The target's directory first: a crash between the syncs leaves the file
    // reachable under both names rather than under neither.
    Effect.zipRight(afterCommit(
      operation,
      target,
      syncDirectory(disk, operation, parent(target)).pipe(
        Effect.zipRight(
          parent(source) === parent(target) ? Effect.void : syncDirectory(disk, operation, parent(source))
        )
      )
    ))
  )
}

/** A copy onto itself: succeeds when the path is a file (as a copy would need), changing nothing. */
const sameFile = (fs: FileSystem.FileSystem, operation: string, path: string): Effect.Effect<void, FileSystemError> =>
  io(operation, path, fs.stat(path)).pipe(
    Effect.flatMap((info) =>
      info.type === "Directory" ?
        Effect.fail(new FileSystemError({ operation, path, reason: "IsADirectory" })) :
        Effect.void
    )
  )

/**
 * The views of one read (consecutive parts of one block, see fileStream.ts)
 * as one array, so that a read block costs one write.
 */
const joined = (chunk: Chunk.Chunk<Uint8Array>): Uint8Array => {
  const views = Chunk.toReadonlyArray(chunk)
  if (views.length === 1) return views[0]
  const first = views[0]
  let length = 0
  for (const view of views) {
    if (view.buffer !== first.buffer || view.byteOffset !== first.byteOffset + length) {
      const out = new Uint8Array(views.reduce((n, v) => n + v.length, 0))
      let at = 0
      for (const v of views) {
        out.set(v, at)
        at += v.length
      }
      return out
    }
    length += view.length
  }
  return new Uint8Array(first.buffer, first.byteOffset, length)
}

/**
 * Copy under the combined lock: the source is opened first (a missing one
 * fails before anything is created), then streamed into an atomic
 * replacement of the target, so a file of any size costs one block of
 * memory. Interrupted or failed before the commit, the temp file is removed
 * and the target is as it was.
 */
const copyLocked = (
  disk: Disk,
  operation: string,
  source: string,
  target: string,
  lock: Lock,
  mode: number | undefined
): Effect.Effect<void, Api.WriteError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const file = yield* io(operation, source, disk.fs.open(source, { flag: "r" }))
      const replacement = yield* begin(disk, operation, target, lock, mode)
      yield* FileStream.fromFile(file, {}).pipe(
        Stream.mapError(fromPlatform(operation, source)),
        Stream.runForEachChunk((chunk) => replacement.write(joined(chunk)))
      )
      yield* replacement.finish
    })
  )

/**
 * Confinement to a root directory: lexically, then through the real path of
 * the deepest existing ancestor (so a symbolic link cannot lead outside).
 */
const confine = (fs: FileSystem.FileSystem, rootOption: string) =>
  Effect.gen(function*() {
    const normal = normalize(rootOption)
    if (Either.isLeft(normal)) return yield* invalidPath("Client.make", rootOption, normal.left, "root")
    const root = normal.right
    // Checked now: with a missing root every later operation would fail as
    // "outside the root", which says nothing of the cause.
    const rootError = (error: FileSystemError) => withDetail(error, "the client's root must be an existing directory")
    const info = yield* io("Client.make", root, fs.stat(root)).pipe(Effect.mapError(rootError))
    if (info.type !== "Directory") {
      return yield* rootError(new FileSystemError({ operation: "Client.make", path: root, reason: "NotADirectory" }))
    }
    const realRoot = yield* io("Client.make", root, fs.realPath(root)).pipe(Effect.mapError(rootError))
    const inside = (base: string, p: string) => p === base || isAncestor(base, p)
    const outside = (operation: string, path: string, detail?: string) =>
      new InvalidPathError({
        operation,
        path,
        reason: "OutsideRoot",
        root,
        ...(detail !== undefined ? { detail } : {})
      })

    // The real path of the deepest existing ancestor must be inside the real
    // root. A dangling link is followed by hand (its target may not exist
    // yet, and a write would create it there); `hops` bounds link chains.
    const checkReal = (
      operation: string,
      path: string,
      p: string,
      hops: number
    ): Effect.Effect<void, Api.ReadError> =>
      fs.realPath(p).pipe(
        Effect.matchEffect({
          onSuccess: (real) => inside(realRoot, real) ? Effect.void : Effect.fail(outside(operation, path)),
          onFailure: (error) => {
            const code = errnoCode(error)
            if ((code !== "ENOENT" && code !== "ENOTDIR") || p === ROOT) {
              return Effect.fail(fromPlatform(operation, p)(error))
            }
            return fs.readLink(p).pipe(
              Effect.matchEffect({
                onFailure: () => checkReal(operation, path, parent(p), hops),
                onSuccess: (target) => {
                  if (hops === 0) return Effect.fail(outside(operation, path, "too many links"))
                  const next = normalize(target.startsWith("/") ? target : join(parent(p), target))
                  return Either.isLeft(next) ?
                    Effect.fail(outside(operation, path)) :
                    checkReal(operation, path, next.right, hops - 1)
                }
              })
            )
          }
        })
      )

    return (operation: string, path: string, p: string, use: Use): Effect.Effect<string, Api.ReadError> => {
      if (!inside(root, p)) return Effect.fail(outside(operation, path))
      if (use !== "directory" && p === root) {
        return Effect.fail(new InvalidPathError({ operation, path, reason: "Root", root }))
      }
      // Both where the path leads and the real directory that holds it: a
      // mutation acts in that directory (temp file, rename, unlink) even when
      // the path itself resolves inside the root.
      const holder = p === root ? Effect.void : checkReal(operation, path, parent(p), 40)
      return holder.pipe(Effect.zipRight(checkReal(operation, path, p, 40)), Effect.as(p))
    }
  })
