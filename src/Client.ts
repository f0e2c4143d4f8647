/**
 * The Client: locked, atomic and optionally durable file operations on top of
 * a `LockManager` and the platform `FileSystem`.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import type * as Sink from "effect/Sink"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/client.js"
import * as kvs from "./internal/keyValueStore.js"
import * as metrics from "./internal/metrics.js"
import type { LockManager } from "./LockManager.js"
import type {
  CommitError,
  DeadlockError,
  DecodeError,
  FileSystemError,
  InvalidArgumentError,
  InvalidPathError,
  LockLostError,
  RemoteLockError
} from "./PersistenceError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /**
   * fsync file data before the rename and the directories whose entries
   * changed after it, so that a write that returned survives a power loss.
   * Default `false`.
   */
  readonly durable?: boolean
  /**
   * Suffix of temp files, as in `.<name>.<token>.<suffix>` (the token: 12
   * random characters and 8 that check the rest of the name). Default
   * `"tmp"`; at most 64 bytes of UTF-8, without `/` or a NUL byte.
   */
  readonly tempSuffix?: string
  /**
   * Confine the client to this directory: a path outside it, lexically or
   * through a symbolic link in an existing ancestor, fails with an
   * `InvalidPathError` and nothing is touched. The directory must exist when
   * the Client is built. On Linux, each operation then
   * works through a handle on the directory (or file) it opened, checked to
   * be inside the root, so another process that swaps a link in meanwhile
   * cannot redirect it (see the README's Confinement section for what
   * remains).
   */
  readonly root?: string
  /**
   * Share one directory fsync among concurrent durable writers in a directory
   * (group commit). Each writer still waits for an fsync that started after its
   * own rename, and learns whether it failed. Default `true`; switch it off only
   * to measure its effect.
   */
  readonly groupCommit?: boolean
}

/**
 * Errors of operations that read. Bad input (`InvalidPathError`,
 * `InvalidArgumentError`) is refused before any lock or I/O; a
 * `DeadlockError` when the lock would wait for one the calling fiber holds
 * (nothing happened); a `RemoteLockError` comes only from a remote lock
 * manager.
 *
 * @since 0.1.0
 * @category errors
 */
export type ReadError = InvalidPathError | InvalidArgumentError | FileSystemError | DeadlockError | RemoteLockError

/**
 * Errors of operations that change the disk. A `CommitError` says the change
 * happened but its durability could not be ensured; a `LockLostError` says
 * the lock was lost and nothing was committed (a remote lock manager whose
 * connection dropped, or a fiber that outlived the region whose lock covered
 * its own); a `DeadlockError` that the lock would wait for one the calling
 * fiber holds (nothing happened).
 *
 * @since 0.1.0
 * @category errors
 */
export type WriteError =
  | InvalidPathError
  | InvalidArgumentError
  | FileSystemError
  | CommitError
  | LockLostError
  | DeadlockError
  | RemoteLockError

/**
 * A directory entry with its type (the target's type for a symbolic link,
 * unless `followLinks: false`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  /** Relative to the listed directory (with `/` for nested entries). */
  readonly name: string
  readonly type: FileSystem.File.Type
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CollectOptions {
  readonly recursive?: boolean
  /** Also list leftover temp files of crashed writers. Default `false`. */
  readonly includeTemp?: boolean
  /**
   * `collectEntries`: the type of a symbolic link's target (default `true`;
   * a dangling link is a `SymbolicLink`), or with `false` `SymbolicLink` for
   * every link, as Node's `readdir` with `withFileTypes` says.
   */
  readonly followLinks?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StreamOptions {
  readonly offset?: number
  readonly bytesToRead?: number
  /**
   * Bytes per chunk: a positive integer up to 1 GiB (larger is an
   * `InvalidArgumentError`). Default 64 KiB. A chunk size larger than the
   * file costs what the file holds, not the chunk size.
   */
  readonly chunkSize?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface WriteOptions {
  /**
   * Permission bits of the new file (subject to the umask). Default: `0o666`
   * for `write` and `sink`; those of the file replaced for `modify`; those of
   * the source for `copy`.
   */
  readonly mode?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DeleteOptions {
  readonly recursive?: boolean
  /** Succeed when the path does not exist. */
  readonly force?: boolean
}

/**
 * What `modify` functions may return: the new content, or an effect of it.
 *
 * @since 0.1.0
 * @category models
 */
export type Update<A, E, R> = A | Effect.Effect<A, E, R>

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientService {
  readonly [TypeId]: TypeId
  /** Whether durability mode is on. */
  readonly durable: boolean
  /** Whole file as bytes, under a read lock. */
  readonly read: (path: string) => Effect.Effect<Uint8Array, ReadError>
  /** Whole file as text (default UTF-8), under a read lock. */
  readonly readString: (path: string, encoding?: string) => Effect.Effect<string, ReadError>
  /**
   * The file as a stream of chunks of `chunkSize` bytes (64 KiB by default).
   * For a regular file that does not change while it is read, only the last
   * chunk may be shorter; a short read (a file being appended to, a special
   * file) gives a short chunk where it happens. The read lock is taken when
   * the stream starts and held until it ends, fails or is interrupted.
   *
   * Reads start at one chunk and double, while they fill their block, up to
   * 1 MiB or 64 chunks (or one chunk, if larger); each read goes downstream
   * as one stream chunk of views into its block. So a chunk kept after the
   * stream moves on keeps its block in memory: copy it (`slice()`) to keep
   * only its bytes.
   */
  readonly stream: (path: string, options?: StreamOptions) => Stream.Stream<Uint8Array, ReadError>
  /**
   * Atomically replaces the file (temp file + rename), creating missing
   * parent directories, under a write lock. A path with a segment that has
   * the form of a temp file's name is refused (`InvalidPathError`, reason
   * `TempName`), as by every operation that creates a path.
   *
   * @example
   * ```ts
   * import { Effect } from "effect"
   * import { Client } from "effect-persistence"
   *
   * const program = Effect.gen(function*() {
   *   const client = yield* Client.Client
   *   yield* client.write("/data/hello.txt", "Hello, World!")
   * })
   * ```
   */
  readonly write: (path: string, data: string | Uint8Array, options?: WriteOptions) => Effect.Effect<void, WriteError>
  /**
   * A sink that writes to a temp file and commits when its input ends. The
   * write lock is held from the first pull until the commit; an upstream
   * failure or interruption discards the temp file and leaves the target as it was.
   *
   * Consecutive elements of one stream chunk that fit together in 1 MiB are
   * copied into one block and written at once; any other element is written
   * as it is. Each stream chunk is in the temp file before the next is
   * pulled. (The block is reused once its write has completed: a custom
   * `FileSystem` must not keep a buffer passed to `File.writeAll`.)
   */
  readonly sink: (path: string, options?: WriteOptions) => Sink.Sink<void, Uint8Array, never, WriteError>
  /**
   * Entry names of a directory under a read lock; leftover temp files are
   * hidden by default. With `recursive`, the listing is breadth first and
   * lists a symbolic link without descending into it.
   */
  readonly collect: (path: string, options?: CollectOptions) => Effect.Effect<Array<string>, ReadError>
  /** `collect` with the type of each entry. */
  readonly collectEntries: (path: string, options?: CollectOptions) => Effect.Effect<Array<Entry>, ReadError>
  /** Removes a file or directory under a write lock (a directory's subtree is covered). */
  readonly delete: (path: string, options?: DeleteOptions) => Effect.Effect<void, WriteError>
  /**
   * Moves `from` to `to` under one combined write lock on both. The same path
   * is a no-op; a missing source fails as `NotFound` without creating
   * anything; missing parents of `to` are created.
   */
  readonly rename: (from: string, to: string) => Effect.Effect<void, WriteError>
  /**
   * Copies `from` to `to` as one combined lock request (a read on `from`, a
   * write on `to`, granted together, so two copies in opposite directions
   * never deadlock). The content is streamed into a temp file beside `to`,
   * which then replaces `to` atomically (durably in durable mode), creating
   * missing parents of `to`; readers of `to` see the old or the new content.
   * The copy has the source's permission bits, as with `cp`, unless `mode`
   * is given. A missing
   * source fails as `NotFound` without creating anything; copying a file onto
   * itself changes nothing.
   *
   * @example
   * ```ts
   * import { Effect } from "effect"
   * import { Client } from "effect-persistence"
   *
   * const backup = Effect.gen(function*() {
   *   const client = yield* Client.Client
   *   yield* client.copy("/data/report.csv", "/backup/report.csv")
   * })
   * ```
   */
  readonly copy: (from: string, to: string, options?: WriteOptions) => Effect.Effect<void, WriteError>
  /**
   * Whether something exists at the path (following symbolic links), under a
   * read lock: `FileSystem.exists` of the platform.
   */
  readonly exists: (path: string) => Effect.Effect<boolean, ReadError>
  /** The platform's `File.Info` of the path (following symbolic links), under a read lock. */
  readonly stat: (path: string) => Effect.Effect<FileSystem.File.Info, ReadError>
  /**
   * Creates a directory and its missing parents under a write lock on it, and
   * succeeds when the directory already exists (a file there is
   * `AlreadyExists`). Durable mode fsyncs the parent of each directory on the
   * path not yet known durable, so the directory is reachable after a power
   * loss once this returns.
   */
  readonly makeDirectory: (path: string) => Effect.Effect<void, WriteError>
  /**
   * Read-modify-write under one write lock: `f` receives the current content
   * (`None` when the file does not exist) and returns the new content, which is
   * written atomically. Returns what was written.
   *
   * @example
   * ```ts
   * import { Effect, Option } from "effect"
   * import { Client } from "effect-persistence"
   *
   * const increment = Effect.gen(function*() {
   *   const client = yield* Client.Client
   *   return yield* client.modify("/data/counter", (current) => {
   *     const text = Option.getOrElse(Option.map(current, (bytes) => new TextDecoder().decode(bytes)), () => "0")
   *     return String(Number(text) + 1)
   *   })
   * })
   * ```
   */
  readonly modify: <A extends string | Uint8Array, E = never, R = never>(
    path: string,
    f: (current: Option.Option<Uint8Array>) => Update<A, E, R>,
    options?: WriteOptions
  ) => Effect.Effect<A, WriteError | E, R>
  /**
   * Reads a JSON document and decodes it with `schema`: a `DecodeError` with
   * reason `InvalidJson` when the file is not JSON, `Decode` when it does not
   * match. The schema's requirements (`R`) are the effect's.
   */
  readonly readJson: <A, I, R>(
    path: string,
    schema: Schema.Schema<A, I, R>
  ) => Effect.Effect<A, ReadError | DecodeError, R>
  /** Encodes a value with `schema` and writes it as JSON, atomically. */
  readonly writeJson: <A, I, R>(
    path: string,
    schema: Schema.Schema<A, I, R>,
    value: A,
    options?: WriteOptions
  ) => Effect.Effect<void, WriteError | DecodeError, R>
  /** `modify` for a JSON document typed by `schema`. Returns the new value. */
  readonly modifyJson: <A, I, E = never, R = never, RS = never>(
    path: string,
    schema: Schema.Schema<A, I, RS>,
    f: (current: Option.Option<A>) => Update<A, E, R>,
    options?: WriteOptions
  ) => Effect.Effect<A, WriteError | DecodeError | E, R | RS>
  /**
   * Removes leftover temp files of crashed writers in `dir` (and below with
   * `recursive`, never through a symbolic link) under a write lock on `dir`:
   * regular files whose name is a temp name for this client's `tempSuffix`,
   * check included. Returns the removed paths.
   */
  readonly recover: (
    dir: string,
    options?: { readonly recursive?: boolean }
  ) => Effect.Effect<Array<string>, WriteError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Client extends Context.Tag("effect-persistence/Client")<Client, ClientService>() {}

/**
 * Builds a Client. Fails with an `InvalidPathError` when `root` is not an
 * absolute path or `tempSuffix` is empty or contains a separator, and with a
 * `FileSystemError` when `root` is not an existing directory (`NotFound`,
 * `NotADirectory`, `PermissionDenied`): create the root first. Options that
 * are not an object, or `durable` / `groupCommit` that are not booleans, fail
 * with an `InvalidArgumentError` (a string `"false"` would otherwise count as
 * true).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options?: ClientOptions
) => Effect.Effect<
  ClientService,
  InvalidPathError | InvalidArgumentError | FileSystemError,
  LockManager | FileSystem.FileSystem
> = internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: ClientOptions
): Layer.Layer<
  Client,
  InvalidPathError | InvalidArgumentError | FileSystemError,
  LockManager | FileSystem.FileSystem
> => Layer.effect(Client, make(options))

/**
 * The options read from configuration: `PERSISTENCE_DURABLE` (boolean),
 * `PERSISTENCE_TEMP_SUFFIX` and `PERSISTENCE_ROOT`, all optional.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ClientOptions> = Config.all({
  durable: Config.withDefault(Config.boolean("PERSISTENCE_DURABLE"), false),
  tempSuffix: Config.withDefault(Config.string("PERSISTENCE_TEMP_SUFFIX"), "tmp"),
  root: Config.option(Config.string("PERSISTENCE_ROOT"))
}).pipe(
  Config.map(({ root, ...rest }): ClientOptions => root._tag === "Some" ? { ...rest, root: root.value } : rest)
)

/**
 * A Client whose options come from `Config` (by default {@link config}).
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { Client } from "effect-persistence"
 *
 * const layer = Client.layerConfig(Config.all({ durable: Config.succeed(true) }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<ClientOptions> = config
): Layer.Layer<
  Client,
  InvalidPathError | InvalidArgumentError | FileSystemError | ConfigError.ConfigError,
  LockManager | FileSystem.FileSystem
> => Layer.effect(Client, internal.makeFromConfig(options))

/**
 * `@effect/platform`'s `KeyValueStore` on the `Client` in context: one file
 * per key in `directory`, with the Client's locks, atomic replacement and
 * (when the Client is durable) durability. `modify` (and a schema store's
 * `modify`) is one locked read-modify-write, so concurrent updates are never
 * lost, across processes too when the `LockManager` is shared.
 *
 * Any string is a key: it is encoded into a file name of lower-case ASCII
 * letters, digits and `-_.%^` (`User:1` is `^user%3a1`), so keys that differ
 * in case or in Unicode normalisation stay distinct on any file system, and
 * no key reaches outside `directory`. An encoding longer than 128 characters
 * is cut into nested directories; one longer than 2,048 is refused
 * (`BadArgument`). `size` and `clear` count and remove only files whose names
 * are encodings of keys: give the store a directory of its own. `clear`
 * removes key by key, so a key set while it runs may survive it.
 *
 * Errors are `PlatformError`s, as the interface requires: `BadArgument` for
 * bad input, `SystemError` otherwise, with this library's error as `cause`.
 * The directory is checked when the layer is built (it may be missing: the
 * first `set` creates it).
 *
 * @example
 * ```ts
 * import { KeyValueStore } from "@effect/platform"
 * import { NodeFileSystem } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 * import { Client, LockManager } from "effect-persistence"
 *
 * const StoreLive = Client.layerKeyValueStore({ directory: "/var/lib/app/kv" }).pipe(
 *   Layer.provide(Client.layer({ durable: true })),
 *   Layer.provide(Layer.merge(LockManager.layer, NodeFileSystem.layer))
 * )
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* KeyValueStore.KeyValueStore
 *   yield* store.set("visits", "0")
 *   yield* store.modify("visits", (n) => String(Number(n) + 1))
 * })
 *
 * Effect.runPromise(Effect.provide(program, StoreLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerKeyValueStore = (
  options: { readonly directory: string }
): Layer.Layer<KeyValueStore.KeyValueStore, PlatformError, Client> =>
  Layer.effect(KeyValueStore.KeyValueStore, Effect.flatMap(Client, (client) => kvs.make(client, options)))

/**
 * Counter of Client operations, tagged `operation` (`Client.write`, ...) and
 * `outcome` (`success`, `failure`, `interrupted`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const operations = metrics.operations
