/** @internal */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Chunk from "effect/Chunk"
import type * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
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
  type Place,
  placeOf,
  replace,
  replaceSink,
  syncDirectory
} from "./atomic.js"
import { errnoCode, fromPlatform, invalidPath, io, openable, textOf, withPath } from "./errors.js"
import * as FileStream from "./fileStream.js"
import * as Input from "./input.js"
import { jsonCodec } from "./jsonCodec.js"
import { countOperation } from "./metrics.js"
import { basename, isAncestor, join, normalize, parent, ROOT } from "./path.js"
import * as Pin from "./pin.js"
import * as Span from "./span.js"
import { isAnyTempName, isTempName, SUFFIX_MAX, utf8Length, wellFormed } from "./tempName.js"
import * as Walk from "./walk.js"

/** @internal */
export const TypeId: typeof Api.TypeId = Symbol.for("effect-persistence/Client") as typeof Api.TypeId

/**
 * How an operation uses its path: a `directory` may be the root; a `file`
 * read and a `mutation` may not; a `create` is a mutation that may make the
 * path (and its missing parents), none of whose segments may be a temp name.
 */
/**
 * What an operation does with its path: read a file, list a directory,
 * change an entry (`mutation`), make one (`create`), or remove one
 * (`removal`: a symbolic link there is removed itself, never followed).
 */
type Use = "file" | "directory" | "mutation" | "create" | "removal"

/**
 * The first segment of a normal path that has the form of a temp name (for
 * any suffix), if any, as the system will store it (a lone surrogate becomes
 * U+FFFD). Only segments that start with a dot can.
 */
const tempSegment = (p: string): string | undefined => {
  for (let at = p.indexOf("/."); at !== -1; at = p.indexOf("/.", at + 1)) {
    const end = p.indexOf("/", at + 1)
    const segment = p.slice(at + 1, end === -1 ? p.length : end)
    if (isAnyTempName(wellFormed(segment))) return segment
  }
  return undefined
}

/**
 * The platform's `remove` (Node's `rm`) of `at`, reported for `path`, with a
 * refused unlink reported as such: `rm` answers an unlink refused with EPERM
 * (another user's file in a sticky directory, an immutable file) with the
 * ENOTDIR of the `rmdir` it tries next. An entry still there after an ENOTDIR,
 * and not a directory, has no file among its path's components: the removal
 * was refused.
 */
const removeEntry = (
  fs: FileSystem.FileSystem,
  operation: string,
  path: string,
  at: string,
  options: FileSystem.RemoveOptions
): Effect.Effect<void, FileSystemError> =>
  io(operation, path, fs.remove(at, options)).pipe(
    Effect.catchIf((error) => error.reason === "NotADirectory", (error) =>
      Effect.flatMap(Effect.option(fs.stat(at)), (info) =>
        Effect.fail(
          Option.isSome(info) && info.value.type !== "Directory" ?
            new FileSystemError({ operation, path, reason: "PermissionDenied", code: "EPERM", cause: error.cause }) :
            error
        )))
  )

const encoder = new TextEncoder()
const toBytes = (data: string): Uint8Array => encoder.encode(data)

/**
 * Runs an operation in a span named after it, with the path, and counts its
 * outcome with the exit the span ends with (see ./span.ts). `inside` says
 * whether code the caller gave (a function, a schema) runs in the span.
 */
const span = (name: string, path: unknown, inside: Span.Inside) =>
  Span.around(name, { "persistence.path": path }, counter(name), inside)

/** Counts an operation's outcome: the one mechanism for every operation, streams and sinks included. */
const counter = (name: string): Span.OnEnd => (exit) => countOperation(name, exit)

const countWrite = counter("Client.write")

/**
 * The span of a stream or sink, for as long as its consumer runs it: opened
 * when it starts, ended and counted once, with the exit of its scope (also
 * when the consumer stops early or is interrupted).
 */
const spanScoped = (name: string, path: unknown) => Span.scoped(name, { "persistence.path": path }, counter(name))

const validateSuffix = (suffix: unknown): Either.Either<string, InvalidPathError> =>
  typeof suffix !== "string" ?
    Either.left(invalidPath("Client.make", suffix, "NotAString", "tempSuffix")) :
    suffix.length === 0 ?
    Either.left(invalidPath("Client.make", suffix, "Empty", "tempSuffix")) :
    suffix.includes("/") || suffix.includes("\0") ?
    Either.left(invalidPath("Client.make", suffix, "InvalidName", "tempSuffix")) :
    // A lone surrogate would be written as U+FFFD: the name read back would
    // not end with the suffix.
    wellFormed(suffix) !== suffix ?
    Either.left(invalidPath("Client.make", suffix, "InvalidName", "tempSuffix has a lone surrogate")) :
    utf8Length(suffix) > SUFFIX_MAX ?
    Either.left(invalidPath("Client.make", suffix, "InvalidName", `tempSuffix is longer than ${SUFFIX_MAX} bytes`)) :
    Either.right(suffix)

/** The boolean options of each operation, with their defaults. */
const COLLECT = { recursive: false, includeTemp: false, followLinks: true }
const DELETE = { recursive: false, force: false }
const RECOVER = { recursive: false }
const CLIENT = { durable: false, groupCommit: true }
type CollectFlags = typeof COLLECT

/** @internal */
export const make = (
  options: Api.ClientOptions = {}
): Effect.Effect<
  Api.ClientService,
  InvalidPathError | InvalidArgumentError | FileSystemError,
  LockManager | FileSystem.FileSystem
> =>
  Effect.gen(function*() {
    const manager = yield* LockManager
    const fs = yield* FileSystem.FileSystem
    const { root, tempSuffix: suffix }: Api.ClientOptions = yield* Input.bag("Client.make", undefined, options)
    const { durable, groupCommit } = yield* Input.flags("Client.make", root, options, CLIENT)
    const tempSuffix = yield* validateSuffix(suffix ?? "tmp")
    const confinement = root === undefined ? undefined : yield* confine(fs, root)
    // Handles on directories, for a confined client where the platform has them.
    const pins = root === undefined ?
      undefined :
      yield* Pin.make(fs, Either.getOrElse(normalize(root), () => root))
    const disk = makeDisk(fs, { durable, tempSuffix, groupCommit, pins })
    const isTemp = (name: string) => isTempName(name, tempSuffix)

    /** Validates and normalises a path, lexically: no lock, no I/O. */
    const lexical = (operation: string, path: string, use: Use): Either.Either<string, InvalidPathError> => {
      const normal = normalize(path)
      if (Either.isLeft(normal)) return Either.left(invalidPath(operation, path, normal.left))
      const p = normal.right
      if (use !== "directory" && p === ROOT) return Either.left(invalidPath(operation, path, "Root"))
      if (use === "create") {
        // What the client creates must never be taken for a leftover temp
        // file: `recover` would delete it, `collect` would hide it.
        const segment = tempSegment(p)
        if (segment !== undefined) {
          return Either.left(
            invalidPath(operation, path, "TempName", `${JSON.stringify(segment)} has the form of a temp file's name`)
          )
        }
      }
      return Either.right(p)
    }

    /** Validates, normalises and (with a root) confines a path. No lock, no change on disk. */
    const resolve = (operation: string, path: string, use: Use): Effect.Effect<string, Api.ReadError> => {
      const p = lexical(operation, path, use)
      if (Either.isLeft(p)) return Effect.fail(p.left)
      return confinement === undefined ? Effect.succeed(p.right) : confinement(operation, path, p.right, use)
    }

    /**
     * The whole file `p`: by path, or for a confined client through a handle
     * on the opened file, checked to be inside the root (a link swapped in
     * after the confinement check is not followed out).
     */
    const readBytes = (operation: string, path: unknown, p: string): Effect.Effect<Uint8Array, Api.ReadError> =>
      pins === undefined ?
        // Never a FIFO or a device (see openable): a FIFO's open blocks, and a
        // device whose size says 0 (`/dev/zero`) is read until memory runs
        // out. A path that is not there fails in the read, as Node reports it.
        openable(fs, operation, p, p).pipe(
          Effect.catchIf((error) => error.reason === "NotFound" || error.reason === "NotADirectory", () => Effect.void),
          Effect.zipRight(io(operation, p, fs.readFile(p)))
        ) :
        pins.read(operation, path, p)

    /**
     * `readBytes` as text, every character kept: a leading U+FEFF too, as
     * Node reads it (the platform's `readFileString` drops it).
     */
    const readText = (
      operation: string,
      path: unknown,
      p: string,
      encoding?: string
    ): Effect.Effect<string, Api.ReadError> =>
      Effect.flatMap(readBytes(operation, path, p), (bytes) => textOf(operation, p, bytes, encoding))

    const readLocked = <A, E, R = never>(
      operation: string,
      path: string,
      use: Use,
      f: (p: string) => Effect.Effect<A, E, R>,
      inside: Span.Inside = "library"
    ): Effect.Effect<A, E | Api.ReadError, R> =>
      resolve(operation, path, use).pipe(
        Effect.flatMap((p) => manager.withLock(p, "read")(f(p))),
        span(operation, path, inside)
      )

    /** `f` under a write lock on the resolved path (no span: the caller's operation has it). */
    const underWriteLock = <A, E, R>(
      operation: string,
      path: string,
      use: "mutation" | "create" | "removal",
      f: (p: string, lock: Lock) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | Api.ReadError, R> =>
      Effect.flatMap(resolve(operation, path, use), (p) => manager.withLock(p, "write")((lock) => f(p, lock)))

    const writeLocked = <A, E, R>(
      operation: string,
      path: string,
      use: "mutation" | "create" | "removal",
      f: (p: string, lock: Lock) => Effect.Effect<A, E, R>,
      inside: Span.Inside = "library"
    ): Effect.Effect<A, E | Api.ReadError, R> => span(operation, path, inside)(underWriteLock(operation, path, use, f))

    const readCurrent = (operation: string, p: string): Effect.Effect<Option.Option<Uint8Array>, Api.ReadError> =>
      readBytes(operation, p, p).pipe(
        Effect.map(Option.some),
        Effect.catchIf(
          (e) => e._tag === "FileSystemError" && e.reason === "NotFound",
          () => Effect.succeed(Option.none())
        )
      )

    /** Whether the file at `at` belongs to a user other than this process's (false where there are no user ids). */
    const othersFile = (operation: string, at: string, logical: string): Effect.Effect<boolean, FileSystemError> => {
      const euid = process.geteuid?.()
      return euid === undefined ? Effect.succeed(false) : io(operation, logical, fs.stat(at)).pipe(
        Effect.map((info) => Option.match(info.uid, { onNone: () => false, onSome: (uid) => uid !== euid }))
      )
    }

    /**
     * The permission bits of the file at `p`, which an edit keeps (`modify`
     * of a 0600 file must not leave a 0644 one); `undefined` if it is gone.
     */
    const permissionsOf = (operation: string, p: string): Effect.Effect<number | undefined, FileSystemError> =>
      io(operation, p, fs.stat(p)).pipe(
        Effect.map((info): number | undefined => info.mode & 0o777),
        Effect.catchIf((error) => error.reason === "NotFound", () => Effect.succeed(undefined))
      )

    /**
     * Read-modify-write of raw bytes under one write lock. Without `mode`, the
     * new file has the permissions of the one it replaces.
     */
    const modifyWith = <A, E, R>(
      operation: string,
      path: string,
      f: (current: Option.Option<Uint8Array>) => Effect.Effect<readonly [A, Uint8Array], E, R>,
      mode: number | undefined
    ): Effect.Effect<A, Api.WriteError | E, R> =>
      writeLocked(
        operation,
        path,
        "create",
        (p, lock) =>
          Effect.flatMap(readCurrent(operation, p), (current) =>
            Effect.flatMap(f(current), ([result, bytes]) =>
              Effect.flatMap(
                mode !== undefined || Option.isNone(current) ? Effect.succeed(mode) : permissionsOf(operation, p),
                (mode) => Effect.as(replace(disk, operation, p, lock, bytes, mode), result)
              ))),
        // The caller's function runs in it.
        "caller"
      )

    /**
     * Whether an entry with a temp name is a leftover temp file: a regular
     * file, not a link (the library never makes a temp directory or link).
     */
    const isLeftover = (operation: string, at: string, logical: string, type: FileSystem.File.Type | undefined) =>
      Effect.flatMap(
        type !== undefined ? Effect.succeed(type) : Walk.typeOf(fs, operation, at, logical),
        (type) =>
          type === "File" ? Effect.map(Walk.isLink(fs, operation, at, logical), (link) => !link) : Effect.succeed(false)
      )

    /** The entries of `p` (relative names), hiding leftover temp files unless `includeTemp`. */
    const entries = (
      operation: string,
      path: unknown,
      p: string,
      options: CollectFlags,
      types: boolean
    ): Effect.Effect<
      Array<{ readonly name: string; readonly type: FileSystem.File.Type | undefined }>,
      Api.ReadError
    > =>
      Walk.walk(
        fs,
        pins,
        operation,
        path,
        p,
        { recursive: options.recursive, types, followLinks: options.followLinks },
        ({ at, names, prefix, types }) => {
          // An entry removed since it was listed is not reported.
          const all = names.flatMap((name, i) =>
            types !== undefined && types[i] === undefined ? [] : [{ name: prefix + name, type: types?.[i] }]
          )
          if (options.includeTemp || !names.some(isTemp)) return Effect.succeed(all)
          return Effect.filter(all, (entry) => {
            const name = entry.name.slice(prefix.length)
            return isTemp(name) ?
              Effect.map(isLeftover(operation, join(at, name), join(p, entry.name), entry.type), (l) => !l) :
              Effect.succeed(true)
          })
        }
      ).pipe(Effect.map((listings) => listings.flat()))

    const service: Api.ClientService = {
      [TypeId]: TypeId,
      durable: disk.durable,

      read: (path) =>
        readLocked(
          "Client.read",
          path,
          "file",
          (p) => readBytes("Client.read", path, p)
        ),

      readString: (path, encoding) =>
        Effect.flatMap(Input.encoding("Client.readString", path, encoding), (encoding) =>
          readLocked(
            "Client.readString",
            path,
            "file",
            (p) => readText("Client.readString", path, p, encoding)
          )),

      stream: (path, options) =>
        Stream.unwrapScoped(Effect.map(spanScoped("Client.stream", path), (opened) =>
          Stream.unwrapScoped(
            Effect.gen(function*() {
              const checked = yield* Input.streamOptions("Client.stream", path, options)
              const p = yield* resolve("Client.stream", path, "file")
              yield* manager.lock(p, "read")
              // Never a FIFO or a device (see openable): the platform opens in
              // an acquire, which an interruption cannot end, so a blocked
              // open would hold the lock for good. A path the stat cannot
              // reach fails in the open, as Node's read streams report it.
              yield* openable(fs, "Client.stream", p, p).pipe(
                Effect.catchIf((error) => error.reason !== "InvalidData", () => Effect.void)
              )
              // Opened in the lock's scope: closed before the lock is released.
              const file = yield* io("Client.stream", p, fs.open(p, { flag: "r" }))
              if (pins !== undefined) yield* pins.check("Client.stream", path, p, file)
              if (checked.offset !== undefined && checked.offset > 0) {
                yield* file.seek(FileSystem.Size(checked.offset), "start")
              }
              return FileStream.fromFile(file, checked).pipe(Stream.mapError(fromPlatform("Client.stream", p)))
            })
          ).pipe(Stream.provideService(Tracer.ParentSpan, opened)))),

      // The most frequent operation, so written out: data and mode checked
      // before the span (a bad one is neither traced nor counted), the path
      // inside it, and no effect where a plain check does.
      write: (path, data, options) => {
        const operation = "Client.write"
        const bytes = Input.bytes(operation, path, data)
        if (Either.isLeft(bytes)) return Effect.fail(bytes.left)
        const mode = Input.writeMode(operation, path, options)
        if (Either.isLeft(mode)) return Effect.fail(mode.left)
        const replaceAt = (p: string) =>
          manager.withLock(p, "write")((lock) => replace(disk, operation, p, lock, bytes.right, mode.right))
        const p = lexical(operation, path, "create")
        return Span.run(
          operation,
          Span.optionsOf({ "persistence.path": path }),
          countWrite,
          Either.isLeft(p) ?
            Effect.fail(p.left) :
            confinement === undefined ?
            replaceAt(p.right) :
            Effect.flatMap(confinement(operation, path, p.right, "create"), replaceAt),
          "library"
        )
      },

      sink: (path, options) =>
        Sink.unwrapScoped(
          Effect.flatMap(spanScoped("Client.sink", path), (opened) =>
            Effect.gen(
              function*(): Effect.fn.Return<
                Sink.Sink<void, Uint8Array, never, Api.WriteError>,
                Api.WriteError,
                Scope.Scope
              > {
                const mode = yield* Input.writeMode("Client.sink", path, options)
                const p = yield* resolve("Client.sink", path, "create")
                const lock = yield* manager.lock(p, "write")
                const sink = yield* replaceSink(disk, "Client.sink", p, lock, mode)
                // The writes of the sink run in its span too, as a stream's pulls do.
                const context = yield* Effect.context<never>()
                return Sink.provideContext(sink, Context.add(context, Tracer.ParentSpan, opened))
              }
            ).pipe(Effect.provideService(Tracer.ParentSpan, opened)))
        ),

      collect: (path, options) =>
        Effect.flatMap(Input.flags("Client.collect", path, options, COLLECT), (flags) =>
          readLocked("Client.collect", path, "directory", (p) =>
            entries("Client.collect", path, p, flags, false).pipe(
              Effect.map((all) =>
                all.map((entry) =>
                  entry.name
                )
              )
            ))),

      collectEntries: (path, options) =>
        Effect.flatMap(Input.flags("Client.collectEntries", path, options, COLLECT), (flags) =>
          readLocked(
            "Client.collectEntries",
            path,
            "directory",
            (p) =>
              entries("Client.collectEntries", path, p, flags, true).pipe(
                Effect.map((all) => all.map((entry): Api.Entry => ({ name: entry.name, type: entry.type! })))
              )
          )),

      delete: (path, options) =>
        Effect.flatMap(Input.flags("Client.delete", path, options, DELETE), ({ force, recursive }) =>
          writeLocked("Client.delete", path, "removal", (p, lock) => {
            const removeAt = (at: string) =>
              removeEntry(fs, "Client.delete", p, at, { recursive, force }).pipe(
                // Even a failed recursive delete may have removed directories.
                Effect.ensuring(Effect.sync(() =>
                  forgetDurable(p)
                ))
              )
            // Confined: removed through a handle on its directory, so a link
            // swapped in above it cannot redirect the removal.
            const removal = pins === undefined ? removeAt(p) : Effect.scoped(
              pins.directory("Client.delete", path, parent(p)).pipe(
                Effect.matchEffect({
                  onSuccess: (dir) =>
                    recursive ?
                      // A tree, without `rm` walking it by path.
                      Walk.removeTree(fs, pins, "Client.delete", p, dir, basename(p), force).pipe(
                        Effect.ensuring(Effect.sync(() => forgetDurable(p)))
                      ) :
                      // unlink: the platform's remove could meet a directory
                      // swapped in and empty it by path (see unlink.ts).
                      pins.unlink("Client.delete", p, join(dir.at, basename(p))).pipe(
                        Effect.catchIf((e) => force && e.reason === "NotFound", () => Effect.void),
                        Effect.ensuring(Effect.sync(() => forgetDurable(p)))
                      ),
                  onFailure: (error) =>
                    error._tag === "FileSystemError" && error.reason === "NotFound" ?
                      force ? Effect.void : Effect.fail(withPath(error, p)) :
                      Effect.fail(error)
                })
              )
            )
            // As `rm` without `-r`, a directory (even an empty one) needs `recursive`: say so.
            const removed = Effect.mapError(removal, (e) =>
              !recursive && e._tag === "FileSystemError" && e.reason === "IsADirectory" ?
                withDetail(e, "pass { recursive: true } to remove a directory (even an empty one)") :
                e)
            // A forced delete under a missing parent changed nothing to persist.
            const sync = syncDirectory(disk, "Client.delete", parent(p)).pipe(
              Effect.catchIf((e) => force && e.reason === "NotFound", () => Effect.void)
            )
            // Once started, the removal runs to its end under the lock: an
            // interrupted rm would otherwise go on deleting after the release.
            return Effect.zipRight(
              lock.ensureHeld("Client.delete"),
              Effect.uninterruptible(
                disk.durable ? Effect.zipRight(removed, afterCommit("Client.delete", p, sync)) : removed
              )
            )
          })),

      rename: (from, to) =>
        Effect.gen(function*() {
          const operation = "Client.rename"
          const source = yield* resolve(operation, from, "mutation")
          const target = yield* resolve(operation, to, "create")
          if (source === target) {
            // Nothing moves, but the source must be there, as rename(2) says
            // (a dangling link is there).
            return yield* manager.withLock(source, "read")(
              io(operation, source, fs.stat(source)).pipe(
                Effect.asVoid,
                // A link stat cannot follow (dangling, a loop) is there all the same.
                Effect.catchAll((error) =>
                  Effect.flatMap(
                    Walk.typeOf(fs, operation, source, source),
                    (type) =>
                      type === undefined ? Effect.fail(error) : Effect.void
                  )
                )
              )
            )
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
        }).pipe(span("Client.rename", `${from} -> ${to}`, "library")),

      copy: (from, to, options) =>
        Effect.gen(function*() {
          const operation = "Client.copy"
          const mode = yield* Input.writeMode(operation, to, options)
          const source = yield* resolve(operation, from, "file")
          const target = yield* resolve(operation, to, "create")
          if (source === target) {
            // Onto itself: nothing changes, but the source must be a file.
            return yield* manager.withLock(source, "read")(sameFile(fs, operation, source))
          }
          yield* manager.withLockAll([[source, "read"], [target, "write"]])((lock) =>
            copyLocked(disk, operation, source, target, lock, mode)
          )
        }).pipe(span("Client.copy", `${from} -> ${to}`, "library")),

      exists: (path) =>
        readLocked("Client.exists", path, "directory", (p) =>
          io("Client.exists", p, fs.exists(p)).pipe(
            // Nothing can exist below a file (as Node's fs.existsSync says).
            Effect.catchIf((e) => e.reason === "NotADirectory", () => Effect.succeed(false))
          )),

      stat: (path) => readLocked("Client.stat", path, "directory", (p) => io("Client.stat", p, fs.stat(p))),

      makeDirectory: (path) =>
        writeLocked("Client.makeDirectory", path, "create", (p, lock) => {
          const operation = "Client.makeDirectory"
          const made = io(operation, p, fs.stat(p)).pipe(
            Effect.flatMap((info) =>
              info.type === "Directory" ?
                Effect.void :
                Effect.fail(
                  new FileSystemError({
                    operation,
                    path: p,
                    reason: "AlreadyExists",
                    detail: `a ${info.type}, not a directory, is at the path`
                  })
                )
            ),
            Effect.catchIf((e) => e.reason === "NotFound", () =>
              pins === undefined ?
                ensureDirectory(disk, operation, p) :
                // Confined: each missing level made inside its opened parent.
                Effect.scoped(pins.directory(operation, path, p, (created) => forgetDurable(created))))
          )
          // An existing directory may not be durable yet either (its creator
          // may not have fsynced its parent): the same check as a commit's.
          return Effect.zipRight(
            lock.ensureHeld(operation),
            disk.durable ? Effect.zipRight(made, afterCommit(operation, p, makeDurable(disk, operation, p))) : made
          )
        }),

      modify: (path, f, options) =>
        Effect.flatMap(Input.writeMode("Client.modify", path, options), (mode) =>
          modifyWith("Client.modify", path, (current) =>
            Effect.flatMap(lift(f(current)), (next) =>
              Effect.map(Input.bytes("Client.modify", path, next), (bytes) =>
                [next, bytes] as const)), mode)),

      readJson: (path, schema) =>
        readLocked(
          "Client.readJson",
          path,
          "file",
          (p) =>
            readText("Client.readJson", path, p).pipe(
              Effect.flatMap((text) =>
                jsonCodec(schema).decode("Client.readJson", p, text)
              )
            ),
          // The caller's schema decodes in it.
          "caller"
        ),

      writeJson: (path, schema, value, options) =>
        Effect.all([
          Input.writeMode("Client.writeJson", path, options),
          jsonCodec(schema).encode("Client.writeJson", path, value)
        ])
          .pipe(
            Effect.flatMap(([mode, text]) =>
              underWriteLock("Client.writeJson", path, "create", (p, lock) =>
                replace(disk, "Client.writeJson", p, lock, toBytes(text), mode))
            ),
            // One span, counted once, around the encoding too: the caller's schema encodes in it.
            span("Client.writeJson", path, "caller")
          ),

      modifyJson: (path, schema, f, options) => {
        const operation = "Client.modifyJson"
        const codec = jsonCodec(schema)
        return Effect.flatMap(Input.writeMode(operation, path, options), (mode) =>
          modifyWith(operation, path, (current) =>
            Effect.gen(function*() {
              const decoded = Option.isNone(current) ?
                Option.none() :
                Option.some(yield* codec.decode(operation, path, yield* textOf(operation, path, current.value)))
              const next = yield* lift(f(decoded))
              const text = yield* codec.encode(operation, path, next)
              return [next, toBytes(text)] as const
            }), mode))
      },

      // A directory operation: the (confinement) root may be recovered, but
      // the LockManager refuses a write lock on "/".
      recover: (dir, options) =>
        Input.flags("Client.recover", dir, options, RECOVER).pipe(
          Effect.flatMap(({ recursive }) =>
            Effect.map(resolve("Client.recover", dir, "directory"), (p) => ({ p, recursive }))
          ),
          Effect.flatMap(({ p, recursive }) =>
            manager.withLock(p, "write")((lock) => {
              const operation = "Client.recover"
              const removed: Array<string> = []
              const synced: Array<string> = []
              // Each directory's leftovers are removed while it is listed
              // (confined: through the handle the walk holds on it).
              const walk = Walk.walk(
                fs,
                pins,
                operation,
                dir,
                p,
                { recursive, types: false },
                ({ at, names, prefix, types }) =>
                  Effect.gen(function*() {
                    const leftovers: Array<readonly [string, string]> = []
                    for (let i = 0; i < names.length; i++) {
                      if (!isTemp(names[i])) {
                        continue
                      }
                      const logical = join(p, prefix + names[i])
                      if (yield* isLeftover(operation, join(at, names[i]), logical, types?.[i])) {
                        leftovers.push([join(at, names[i]), logical])
                      }
                    }
                    if (leftovers.length === 0) {
                      return
                    }
                    yield* lock.ensureHeld(operation)
                    // The removals run to their end under the lock.
                    yield* Effect.uninterruptible(Effect.forEach(leftovers, ([at, logical]) =>
                      // Confined: unlink through the handle (see unlink.ts).
                      (pins === undefined ?
                        removeEntry(fs, operation, logical, at, { force: true }) :
                        pins.unlink(operation, logical, at).pipe(
                          Effect.catchIf((e) =>
                            e.reason === "NotFound", () =>
                            Effect.void)
                        )).pipe(
                          Effect.tap(() =>
                            removed.push(logical)
                          ),
                          // Another user's file in a directory with the sticky bit
                          // (/tmp) is theirs to remove: left, not a failure for ever.
                          Effect.catchIf(
                            (e) => e.reason === "PermissionDenied",
                            (e) =>
                              Effect.flatMap(othersFile(operation, at, logical), (theirs) => theirs ? Effect.void : e)
                          )
                        ), { discard: true }))
                    synced.push(prefix === "" ? p : join(p, prefix.slice(0, -1)))
                  })
              )
              const sync = Effect.suspend(() =>
                Effect.forEach(synced, (d) => syncDirectory(disk, operation, d), { discard: true })
              )
              return walk.pipe(
                Effect.zipRight(disk.durable ? afterCommit(operation, p, sync) : Effect.void),
                Effect.as(removed)
              )
            })
          ),
          span("Client.recover", dir, "library")
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
 *
 * A confined client renames through handles on both directories (see
 * `pin.ts`): a link swapped in above either after the confinement check
 * cannot redirect the move.
 */
const renameLocked = (disk: Disk, source: string, target: string): Effect.Effect<void, Api.WriteError> => {
  const operation = "Client.rename"
  const fs = disk.fs
  const pins = disk.pins
  const intoItself = () =>
    new InvalidArgumentError({
      operation,
      path: target,
      argument: "to",
      detail: `cannot move ${JSON.stringify(source)} into itself (${
        JSON.stringify(target)
      } is inside it through a symbolic link)`
    })
  const move = (from: string, to: string) =>
    io(operation, source, fs.rename(from, to)).pipe(
      // The kernel's answer to a directory moved below itself, which the
      // lexical check cannot see when a link on the target's path leads back
      // into the source.
      Effect.catchIf((error) => error.code === "EINVAL", () => Effect.fail(intoItself())),
      // Directories that moved (or were replaced) are no longer known durable.
      Effect.ensuring(Effect.sync(() => {
        forgetDurable(source)
        forgetDurable(target)
      }))
    )
  // The source exists (it fails as not found otherwise); a directory (not a
  // link to one) must not be moved below itself through a link, which is
  // refused here before any directory is made for it.
  const check = (from: string) =>
    io(operation, source, fs.stat(from)).pipe(
      Effect.flatMap((info) =>
        info.type !== "Directory" ?
          Effect.void :
          Effect.flatMap(Walk.isLink(fs, operation, from, source), (link) =>
            link ?
              Effect.void :
              Effect.flatMap(io(operation, source, fs.realPath(from)), (real) =>
                Effect.flatMap(
                  realAncestor(fs, operation, parent(target)),
                  (into) => real === into || isAncestor(real, into) ? Effect.fail(intoItself()) : Effect.void
                )))
      )
    )
  const syncs = afterCommit(
    operation,
    target,
    // The target's directory first: a crash between the syncs leaves the file
    // reachable under both names rather than under neither.
    syncDirectory(disk, operation, parent(target)).pipe(
      Effect.zipRight(
        parent(source) === parent(target) ? Effect.void : syncDirectory(disk, operation, parent(source))
      )
    )
  )
  if (pins === undefined) {
    const prepare = check(source).pipe(Effect.zipRight(ensureDirectory(disk, operation, parent(target))))
    if (!disk.durable) {
      // Optimistic: the rename alone, unless the target's parent is missing.
      return move(source, target).pipe(
        Effect.catchIf(
          (error) => error._tag === "FileSystemError" && error.reason === "NotFound",
          () => Effect.zipRight(prepare, move(source, target))
        )
      )
    }
    return prepare.pipe(
      // The new location must be reachable after a power loss before the file
      // leaves the old one.
      Effect.zipRight(makeDurable(disk, operation, parent(target))),
      Effect.zipRight(move(source, target)),
      Effect.zipRight(syncs)
    )
  }
  const missing = (error: FileSystemError | InvalidPathError) =>
    error._tag === "FileSystemError" && error.reason === "NotFound"
  return Effect.scoped(Effect.gen(function*() {
    // A missing directory of the source is a missing source.
    const from: Place = yield* placeOf(disk, operation, source, false).pipe(
      Effect.catchIf(missing, (error) => Effect.fail(withPath(error as FileSystemError, source)))
    )
    const fromAt = join(from.at, basename(source))
    let to: Place | undefined = parent(source) === parent(target) ?
      from :
      yield* placeOf(disk, operation, target, false).pipe(Effect.catchIf(missing, () => Effect.succeed(undefined)))
    if (to === undefined || disk.durable) yield* check(fromAt)
    to ??= yield* placeOf(disk, operation, target)
    if (disk.durable) yield* makeDurable(disk, operation, parent(target))
    yield* move(fromAt, join(to.at, basename(target)))
    if (disk.durable) yield* syncs
  }))
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
      // A FIFO's open would block for good, holding both locks.
      if ((yield* openable(disk.fs, operation, source, source)) === "Directory") {
        return yield* new FileSystemError({ operation, path: source, reason: "IsADirectory", code: "EISDIR" })
      }
      const file = yield* io(operation, source, disk.fs.open(source, { flag: "r" }))
      // Confined: the file opened must be inside the root (a link swapped in
      // after the confinement check is not followed out).
      if (disk.pins !== undefined) yield* disk.pins.check(operation, source, source, file)
      // As `cp`: without a mode, the copy has the source's permissions (a
      // copy of a 0600 secret must not be readable by everyone).
      const permissions = mode ?? (yield* io(operation, source, file.stat)).mode & 0o777
      const replacement = yield* begin(disk, operation, target, lock, permissions)
      yield* FileStream.fromFile(file, {}).pipe(
        Stream.mapError(fromPlatform(operation, source)),
        Stream.runForEachChunk((chunk) => replacement.write(joined(chunk)))
      )
      yield* replacement.finish
    })
  )

/**
 * The real path of `dir`, or where it would be: the real path of its deepest
 * existing ancestor with the missing names after it.
 */
const realAncestor = (
  fs: FileSystem.FileSystem,
  operation: string,
  dir: string
): Effect.Effect<string, FileSystemError> =>
  io(operation, dir, fs.realPath(dir)).pipe(
    Effect.catchIf(
      (error) => error.reason === "NotFound" && dir !== ROOT,
      () => Effect.map(realAncestor(fs, operation, parent(dir)), (real) => join(real, basename(dir)))
    )
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
      // the path itself resolves inside the root. A removal acts on the entry
      // itself (a link is unlinked, not followed), so only its directory
      // counts: a link inside the root to outside it can be deleted.
      const holder = p === root ? Effect.void : checkReal(operation, path, parent(p), 40)
      return use === "removal" ?
        Effect.as(holder, p) :
        holder.pipe(Effect.zipRight(checkReal(operation, path, p, 40)), Effect.as(p))
    }
  })
