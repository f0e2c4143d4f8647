/**
 * Atomic replacement and durability: temp file in the target's directory,
 * full write, optional fsync, rename, optional directory fsync. These
 * functions take no locks: the Client calls them under the right lock.
 *
 * @internal
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import { identity } from "effect/Function"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import type { Lock } from "../LockManager.js"
import {
  CommitError,
  FileSystemError,
  InvalidArgumentError,
  type InvalidPathError,
  type LockLostError
} from "../PersistenceError.js"
import { errnoCode, fromPlatform, io } from "./errors.js"
import * as GroupCommit from "./groupCommit.js"
import { basename, join, parent, ROOT } from "./path.js"
import type { Pins } from "./pin.js"
import { tempName } from "./tempName.js"

/**
 * What the atomic operations need: the platform file system and the
 * durability settings of one Client.
 *
 * @internal
 */
export interface Disk {
  readonly fs: FileSystem.FileSystem
  readonly durable: boolean
  readonly tempSuffix: string
  /** fsync of a directory, batched across concurrent callers unless group commit is off. */
  readonly fsyncDirectory: (dir: string) => Effect.Effect<void, PlatformError>
  /**
   * Directories whose own entry (in their parent) is known durable, with all
   * their ancestors: see `makeDurable`. Shared by the Clients of one FileSystem.
   */
  readonly durableDirectories: Set<string>
  /**
   * A confined Client's handles on directories (Linux): temp files are
   * created and renamed inside an opened directory, not by path.
   */
  readonly pins: Pins | undefined
}

/**
 * fsync of a directory: makes its entry changes (create, rename, unlink)
 * durable. The platform has no call for it; opening the directory read-only
 * and syncing the descriptor works on Linux.
 */
const fsyncDirectory = (fs: FileSystem.FileSystem) => (dir: string): Effect.Effect<void, PlatformError> =>
  Effect.scoped(Effect.flatten(openDirectory(fs)(dir)))

/**
 * Opens a directory (closed with the scope) and returns its fsync, for group
 * commit to issue. Opened as `<dir>/.`, which the kernel resolves only if
 * `dir` is a directory: anything else swapped in by path (a FIFO, whose open
 * would block for good with the caller's locks held, a file, a link to one)
 * fails at once with `ENOTDIR`, with no window between a check and the open.
 */
const openDirectory = (fs: FileSystem.FileSystem) => (dir: string) =>
  Effect.map(fs.open(join(dir, "."), { flag: "r" }), (file) => file.sync)

/** @internal */
export const makeDisk = (
  fs: FileSystem.FileSystem,
  options: {
    readonly durable: boolean
    readonly tempSuffix: string
    readonly groupCommit: boolean
    readonly pins?: Pins | undefined
  }
): Disk => ({
  fs,
  durable: options.durable,
  tempSuffix: options.tempSuffix,
  fsyncDirectory: options.groupCommit ? GroupCommit.make(openDirectory(fs)) : fsyncDirectory(fs),
  durableDirectories: durableDirectoriesOf(fs),
  pins: options.pins
})

/**
 * What is known durable: one cache per storage, shared by every Client on it
 * (durable or not). The storage of a FileSystem is what the testing layers
 * declare (a simulated disk), else its `open`, the one the directory fsyncs
 * go through: every build of the platform's Node file system has the same
 * (each `Effect.provide` of its layer makes a new service object, and the
 * Promise facade makes its own), so Effect and Promise code in one process
 * share one cache. A file system of another storage has a cache of its own.
 *
 * What one Client forgets, every cache of the process forgets (see
 * `forgetDurable`): a directory deleted, moved or recreated through any
 * Client is not taken as durable by another, even one whose file system is
 * not recognised as the same storage (a wrapper with its own `open`, a
 * FaultFileSystem), which at worst fsyncs again what was durable.
 */
const caches = new WeakMap<object, Set<string>>()
const everyCache = new Set<WeakRef<Set<string>>>()
const storages = new WeakMap<FileSystem.FileSystem, object>()
const storageOf = (fs: FileSystem.FileSystem): object =>
  storages.get(fs) ?? (typeof fs.open === "function" ? fs.open : fs)
const durableDirectoriesOf = (fs: FileSystem.FileSystem): Set<string> => {
  const storage = storageOf(fs)
  let cache = caches.get(storage)
  if (cache === undefined) {
    caches.set(storage, cache = new Set())
    everyCache.add(new WeakRef(cache))
  }
  return cache
}

/**
 * Declares that `fs` works on `storage` (an object that stands for it), as
 * every other FileSystem declared with it: their Clients share what they know
 * durable. For the testing layers, whose file systems over one disk are
 * separate objects with separate methods.
 *
 * @internal
 */
export const declareStorage = (fs: FileSystem.FileSystem, storage: object): FileSystem.FileSystem => {
  storages.set(fs, storage)
  return fs
}

/**
 * Forgets every directory known durable on the storage of `fs`, for every
 * Client on it: their next durable commits fsync the whole chain again, as a
 * first one does.
 *
 * @internal
 */
export const forgetAllDurable = (fs: FileSystem.FileSystem): void => caches.get(storageOf(fs))?.clear()

/** A cache bound: past it the cache starts over (which costs fsyncs, never safety). */
const DURABLE_DIRECTORIES_MAX = 4096

/**
 * Makes sure `dir` is reachable after a power loss before a commit into it:
 * its entry in its parent, and so on up to the root, is durable. A directory that exists is not proof:
 * another writer may have just created it and not yet fsynced its parent, or
 * been interrupted (or crashed) in between. So the first durable commit into
 * a directory fsyncs the parents of every directory on its path not yet known
 * durable to this client; later commits find it in the cache and pay nothing.
 * This also covers the directories `ensureDirectory` creates.
 *
 * @internal
 */
export const makeDurable = (disk: Disk, operation: string, dir: string): Effect.Effect<void, FileSystemError> =>
  Effect.suspend(() => {
    const known = disk.durableDirectories
    const chain: Array<string> = []
    for (let d = dir; d !== ROOT && !known.has(d); d = parent(d)) chain.push(d)
    if (chain.length === 0) return Effect.void
    return Effect.forEach(chain, (d) => syncDirectory(disk, operation, parent(d)), { discard: true }).pipe(
      Effect.zipRight(Effect.sync(() => {
        if (known.size + chain.length > DURABLE_DIRECTORIES_MAX) known.clear()
        for (const d of chain) known.add(d)
      }))
    )
  })

/**
 * Forgets what any Client of the process knew about `path` and everything
 * below it (it was deleted or moved, so a directory by that name may come
 * back unsynced).
 *
 * @internal
 */
export const forgetDurable = (path: string): void => {
  const prefix = path === ROOT ? ROOT : path + "/"
  for (const ref of everyCache) {
    const known = ref.deref()
    if (known === undefined) everyCache.delete(ref)
    else if (known.size > 0) {
      known.delete(path)
      for (const d of known) if (d.startsWith(prefix)) known.delete(d)
    }
  }
}

/**
 * Told how a replacement's commit ended, in the fiber that made it, once it
 * has renamed (its commit point): `undefined` when it is done, durable if the
 * Client is, or the `CommitError` of a directory fsync that failed after the
 * rename. An interruption that arrives during the commit cannot stop it, yet
 * ends the operation as interrupted, and may drop that error on its way (a
 * sink's stream does). The Promise facade uses it to report such a write as
 * done, or failed after its commit, rather than aborted.
 *
 * @internal
 */
export const commitObserver: FiberRef.FiberRef<((failure: CommitError | undefined) => void) | undefined> = FiberRef
  .unsafeMake<((failure: CommitError | undefined) => void) | undefined>(undefined)

const committedWith = (failure: CommitError | undefined): Effect.Effect<void> =>
  FiberRef.getWith(
    commitObserver,
    (observer) => observer === undefined ? Effect.void : Effect.sync(() => observer(failure))
  )

const renamed = committedWith(undefined)

/**
 * Removes a temp file of ours, ignoring failure (a write that failed reports
 * its own error). Confined: with `unlink` through the handle, never the
 * platform's `remove` (Node's `rm`), which looks at the name and then, if a
 * directory is there by then, empties it by path: another process that
 * swapped a full directory in for the temp file, then a link to outside the
 * root, had it delete files outside. `unlink` leaves a directory alone.
 */
const removeQuietly = (disk: Disk, path: string) =>
  disk.pins === undefined ? Effect.ignore(disk.fs.remove(path)) : Effect.ignore(disk.pins.unlink("", path, path))

/** @internal */
export const syncDirectory = (disk: Disk, operation: string, dir: string): Effect.Effect<void, FileSystemError> =>
  io(operation, dir, disk.fsyncDirectory(dir))

/**
 * After the commit point nothing may undo the change, and any failure says the
 * change is committed.
 *
 * @internal
 */
export const afterCommit = (
  operation: string,
  path: string,
  effect: Effect.Effect<void, FileSystemError>
): Effect.Effect<void, CommitError> =>
  Effect.catchAllCause(effect, (cause) => Effect.fail(new CommitError({ operation, path, cause: Cause.squash(cause) })))

/**
 * Creates the missing directories of `dir`, top-down. (In durable mode the
 * commit's `makeDurable` fsyncs the parent of each of them.)
 *
 * @internal
 */
export const ensureDirectory = (disk: Disk, operation: string, dir: string): Effect.Effect<void, FileSystemError> =>
  Effect.gen(function*() {
    const missing: Array<string> = []
    for (let d = dir;; d = parent(d)) {
      const info = yield* Effect.either(io(operation, d, disk.fs.stat(d)))
      if (info._tag === "Right") {
        if (info.right.type !== "Directory") {
          return yield* new FileSystemError({ operation, path: d, reason: "NotADirectory" })
        }
        break
      }
      if (info.left.reason !== "NotFound" || d === ROOT) return yield* info.left
      missing.push(d)
    }
    for (let i = missing.length - 1; i >= 0; i--) {
      const d = missing[i]
      yield* io(operation, d, disk.fs.makeDirectory(d)).pipe(
        Effect.catchIf((e) => e.reason === "AlreadyExists", () => Effect.void)
      )
      // A directory made now (or by a racing writer) is new: whatever this
      // client knew about a former one by that name no longer holds.
      forgetDurable(d)
    }
  })

/**
 * Where a replacement happens: the target's directory, and the path through
 * which its entries are named (`at`): the directory's own path, or for a
 * confined Client a handle on it that a link swapped in later cannot redirect.
 *
 * @internal
 */
export interface Place {
  readonly target: string
  readonly dir: string
  readonly at: string
  /** Whether `at` is a handle (then the directory exists, and is not made again by path). */
  readonly pinned: boolean
}

/**
 * The place of `target`. With handles, the directory is opened now (with
 * `create`, made first if missing, each level inside its opened parent) and
 * stays open until the scope closes.
 *
 * @internal
 */
export const placeOf = (
  disk: Disk,
  operation: string,
  target: string,
  create = true
): Effect.Effect<Place, FileSystemError | InvalidPathError, Scope.Scope> => {
  const dir = parent(target)
  return disk.pins === undefined ?
    Effect.succeed({ target, dir, at: dir, pinned: false }) :
    Effect.map(
      disk.pins.directory(operation, target, dir, create ? (created) => forgetDurable(created) : undefined),
      (pinned) => ({ target, dir, at: pinned.at, pinned: true })
    )
}

/** The place of `target` without handles: by path. */
const unpinned = (target: string): Place => ({ target, dir: parent(target), at: parent(target), pinned: false })

/**
 * Runs `f` on the place of `target`: without handles at once, else in a
 * scope that holds the directory open.
 */
const inPlace = <A, E>(
  disk: Disk,
  operation: string,
  target: string,
  f: (place: Place) => Effect.Effect<A, E>
): Effect.Effect<A, E | FileSystemError | InvalidPathError> =>
  disk.pins === undefined ? f(unpinned(target)) : Effect.scoped(Effect.flatMap(placeOf(disk, operation, target), f))

/**
 * Runs `create` on a fresh temp name beside the target (an exclusive create):
 * a name already taken means another name; a missing directory is created
 * (by path, when the place is not a handle), then the create is tried again.
 */
const withTempName = <A, R>(
  disk: Disk,
  operation: string,
  place: Place,
  create: (temp: string) => Effect.Effect<A, PlatformError, R>,
  // Creating the directories is interruptible between its syscalls, also
  // when the caller runs uninterruptibly (it passes its `restore`).
  restore: <X, E>(effect: Effect.Effect<X, E>) => Effect.Effect<X, E> = identity
): Effect.Effect<A, FileSystemError, R> => {
  const name = basename(place.target)
  const attempt = (retries: number): Effect.Effect<A, FileSystemError, R> =>
    Effect.catchAll(create(join(place.at, tempName(name, disk.tempSuffix))), (error) => {
      const code = errnoCode(error)
      if (code === "ENOENT" && retries > 0 && !place.pinned) {
        return Effect.zipRight(restore(ensureDirectory(disk, operation, place.dir)), attempt(retries - 1))
      }
      if (code === "EEXIST" && retries > 0) return attempt(retries - 1)
      return Effect.fail(fromPlatform(operation, place.target)(error))
    })
  return attempt(3)
}

const createFlags = (mode: number | undefined) =>
  mode === undefined ? { flag: "wx" as const } : { flag: "wx" as const, mode }

/**
 * Creates the temp file for the target, creating missing parent directories
 * on the way. The file is closed with the ambient scope; the temp file is
 * removed when `removal` closes unless `committed()`.
 */
const openTemp = (
  disk: Disk,
  operation: string,
  place: Place,
  mode: number | undefined,
  removal: Scope.Scope,
  committed: () => boolean
): Effect.Effect<{ readonly file: FileSystem.File; readonly temp: string }, FileSystemError, Scope.Scope> =>
  withTempName(disk, operation, place, (temp) =>
    // Open and register the removal as one step: an interrupt between them
    // would leave the temp file behind.
    Effect.uninterruptible(
      disk.fs.open(temp, createFlags(mode)).pipe(
        Effect.tap(() =>
          Scope.addFinalizer(removal, Effect.suspend(() => committed() ? Effect.void : removeQuietly(disk, temp)))
        ),
        Effect.map((file) => ({ file, temp }))
      )
    ))

/**
 * Creates the temp file for the target with all of `data` in one platform
 * call (create, write, close) and returns its path. The caller runs it
 * uninterruptibly: an interrupted call could create the file after the
 * cleanup looked for it. (Creating missing directories stays interruptible,
 * through `restore`.) On failure nothing is left behind.
 */
const writeTemp = (
  disk: Disk,
  operation: string,
  place: Place,
  data: Uint8Array,
  mode: number | undefined,
  restore: <X, E>(effect: Effect.Effect<X, E>) => Effect.Effect<X, E>
): Effect.Effect<string, FileSystemError> =>
  withTempName(disk, operation, place, (temp) =>
    disk.fs.writeFile(temp, data, createFlags(mode)).pipe(
      Effect.as(temp),
      // Past the create (a failed write or close), the file is ours to remove;
      // on ENOENT or EEXIST the create itself failed.
      Effect.tapError((error) => {
        const code = errnoCode(error)
        return code === "ENOENT" || code === "EEXIST" ? Effect.void : removeQuietly(disk, temp)
      })
    ), restore)

/**
 * The commit: rename over the target (the commit point), then in durable mode
 * fsync the directory.
 */
const commit = (
  disk: Disk,
  operation: string,
  temp: string,
  place: Place
): Effect.Effect<void, FileSystemError | CommitError> =>
  io(operation, place.target, disk.fs.rename(temp, join(place.at, basename(place.target)))).pipe(
    Effect.zipRight(
      disk.durable ?
        afterCommit(operation, place.target, syncDirectory(disk, operation, place.dir)).pipe(
          Effect.tapError(committedWith)
        ) :
        Effect.void
    ),
    Effect.zipRight(renamed)
  )

/**
 * One atomic replacement in progress: bytes go to the temp file, `finish`
 * commits. Until `finish` has renamed, closing the scope removes the temp file
 * and leaves the target as it was.
 *
 * @internal
 */
export interface Replacement {
  /** Writes a whole chunk (short writes are retried by `writeAll`). */
  readonly write: (chunk: unknown) => Effect.Effect<void, FileSystemError | InvalidArgumentError>
  /**
   * fsync (durable), close, lock check, rename, directory fsync (durable).
   * Uninterruptible, but for the lock check: an interruption that arrived
   * before it ends the replacement there, uncommitted.
   */
  readonly finish: Effect.Effect<void, FileSystemError | CommitError | LockLostError>
}

const notBytes = (operation: string, target: string) =>
  new InvalidArgumentError({ operation, path: target, argument: "data", detail: "chunks must be Uint8Arrays" })

/** @internal */
export const begin = (
  disk: Disk,
  operation: string,
  target: string,
  lock: Lock,
  mode?: number
): Effect.Effect<Replacement, FileSystemError | InvalidPathError, Scope.Scope> =>
  Effect.gen(function*() {
    let committed = false
    const scope = yield* Effect.scope
    // A handle on the directory (confined) is opened first in the scope, so
    // it is closed last: after the temp file's removal, which names it.
    const place = yield* placeOf(disk, operation, target)
    // The file gets its own scope so it is closed before the rename, while
    // the temp file's removal stays with the outer scope.
    const fileScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const { file, temp } = yield* openTemp(disk, operation, place, mode, scope, () => committed).pipe(
      Effect.provideService(Scope.Scope, fileScope)
    )
    return {
      // Each syscall runs whole (an interrupted in-flight write could land
      // after its descriptor is closed and reused); interruption is honoured
      // between syscalls, up to the rename.
      // (The platform's writeAll reports an empty buffer as a zero-byte write.)
      write: (chunk) =>
        !(chunk instanceof Uint8Array) ?
          Effect.fail(notBytes(operation, target)) :
          chunk.length === 0 ?
          Effect.void :
          Effect.uninterruptible(io(operation, target, file.writeAll(chunk))),
      finish: Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          if (disk.durable) yield* io(operation, target, file.sync)
          yield* Scope.close(fileScope, Exit.void)
          // The directory must be reachable after a power loss before the
          // new content is committed into it.
          if (disk.durable) yield* makeDurable(disk, operation, parent(target))
          // Never commit under a lock that no longer excludes others; an
          // interruption that arrived during the steps above is honoured
          // here, before the commit point (the scope removes the temp file).
          yield* restore(lock.ensureHeld(operation))
          // A CommitError means the rename happened: the new file must stay.
          yield* commit(disk, operation, temp, place).pipe(
            Effect.tapErrorTag("CommitError", () => Effect.sync(() => committed = true))
          )
          committed = true
        })
      )
    }
  })

/**
 * A durable replacement by path (no handles): the steps of `begin` and
 * `finish`, in the same order and with the same interruption points (between
 * the open and the write, and during the creation of missing directories),
 * as one chain of effects with one scope, that of the temp file's descriptor.
 * On a busy machine the durable write is bound by CPU, much of it Effect's
 * own per step (each nested scope, generator and provided service copies the
 * fiber's refs): with the file system stubbed (each call one macrotask), a
 * durable write by 16 writers cost 150 to 190 us of CPU this way against 170
 * to 290 us through `begin` and `finish`.
 * On failure before the rename the temp file is removed, then its descriptor
 * closed, as `begin`'s scope does.
 */
const replaceDurable = (
  disk: Disk,
  operation: string,
  target: string,
  lock: Lock,
  data: Uint8Array,
  mode: number | undefined
): Effect.Effect<void, FileSystemError | CommitError | LockLostError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Scope.make(), (fileScope) => {
      const place = unpinned(target)
      let temp: string | undefined
      let committed = false
      const open = withTempName(disk, operation, place, (name) =>
        Effect.map(Scope.extend(disk.fs.open(name, createFlags(mode)), fileScope), (file) => {
          temp = name
          return file
        }), restore)
      const steps = Effect.flatMap(open, (file) =>
        (data.length === 0
          ? restore(Effect.void)
          : restore(Effect.uninterruptible(io(operation, target, file.writeAll(data))))).pipe(
            Effect.zipRight(io(operation, target, file.sync)),
            Effect.zipRight(Scope.close(fileScope, Exit.void)),
            // The directory must be reachable after a power loss before the new
            // content is committed into it.
            Effect.zipRight(makeDurable(disk, operation, place.dir)),
            // Never commit under a lock that no longer excludes others; an
            // interruption that arrived during the steps above is honoured
            // here, before the commit point.
            Effect.zipRight(restore(lock.ensureHeld(operation))),
            Effect.zipRight(Effect.suspend(() =>
              commit(disk, operation, temp!, place).pipe(
                // A CommitError means the rename happened: the new file must stay.
                Effect.tapErrorTag("CommitError", () =>
                  Effect.sync(() =>
                    committed = true
                  ))
              )
            ))
          ))
      return Effect.onExit(steps, (exit) =>
        Exit.isSuccess(exit) ?
          Effect.void :
          Effect.zipRight(
            Effect.suspend(() =>
              temp === undefined || committed ? Effect.void : removeQuietly(disk, temp)
            ),
            Scope.close(fileScope, exit)
          ))
    })
  )

/**
 * Atomically replaces `target` with `data`. On failure or interruption before
 * the rename, the temp file is removed and the target is as it was.
 *
 * Not durable, it takes two platform calls: `writeFile` of the temp file
 * (exclusive create, write, close inside one call) and `rename`. Durable, it
 * keeps the descriptor open to fsync it (`replaceDurable` by path; `begin`
 * when confined, through the pinned directory).
 *
 * @internal
 */
export const replace = (
  disk: Disk,
  operation: string,
  target: string,
  lock: Lock,
  data: Uint8Array,
  mode?: number
): Effect.Effect<void, FileSystemError | InvalidPathError | InvalidArgumentError | CommitError | LockLostError> =>
  disk.durable ?
    (disk.pins === undefined ?
      replaceDurable(disk, operation, target, lock, data, mode) :
      Effect.uninterruptibleMask((restore) =>
        Effect.scoped(
          Effect.gen(function*() {
            const replacement = yield* restore(begin(disk, operation, target, lock, mode))
            yield* restore(replacement.write(data))
            // Uninterruptible but for its check just before the commit point.
            yield* restore(replacement.finish)
          })
        )
      )) :
    disk.pins === undefined ?
    replaceByPath(disk, operation, target, lock, data, mode) :
    inPlace(
      disk,
      operation,
      target,
      (place) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(writeTemp(disk, operation, place, data, mode, restore), (temp) =>
            // An interruption that arrived during the write is honoured here,
            // before the commit point; never commit under a lost lock.
            restore(lock.ensureHeld(operation)).pipe(
              Effect.zipRight(io(operation, target, disk.fs.rename(temp, join(place.at, basename(target))))),
              Effect.zipRight(renamed),
              // Uninterruptible already: a plain cause handler does what `onError` would.
              Effect.tapErrorCause(() => removeQuietly(disk, temp))
            ))
        )
    )

const WX = { flag: "wx" } as const

/**
 * `replace` by path, not durable: what `writeTemp` and the commit do, with
 * the fewest steps of the run loop (this is every plain `Client.write`): one
 * uninterruptible region, one handler per platform call, no scope, no
 * objects but the temp name. Same guarantees: the temp file is created
 * exclusively (a taken name means another name; a missing directory is made,
 * interruptibly, then the create is tried again), an interruption that
 * arrived during the write is honoured before the rename, the rename happens
 * only under a lock still held, and on any failure or interruption before
 * the rename the temp file is removed.
 */
const replaceByPath = (
  disk: Disk,
  operation: string,
  target: string,
  lock: Lock,
  data: Uint8Array,
  mode: number | undefined
): Effect.Effect<void, FileSystemError | LockLostError> =>
  Effect.uninterruptibleMask((restore) => {
    const dir = parent(target)
    const name = basename(target)
    const flags = mode === undefined ? WX : { flag: "wx" as const, mode }
    const attempt = (retries: number): Effect.Effect<void, FileSystemError | LockLostError> => {
      const temp = join(dir, tempName(name, disk.tempSuffix))
      return Effect.matchEffect(disk.fs.writeFile(temp, data, flags), {
        onFailure: (error) => {
          const code = errnoCode(error)
          // On ENOENT or EEXIST the create itself failed: nothing of ours is there.
          if (code === "ENOENT") {
            return retries > 0 ?
              Effect.zipRight(restore(ensureDirectory(disk, operation, dir)), attempt(retries - 1)) :
              Effect.fail(fromPlatform(operation, target)(error))
          }
          if (code === "EEXIST") {
            return retries > 0 ? attempt(retries - 1) : Effect.fail(fromPlatform(operation, target)(error))
          }
          // Past the create (a failed write or close): the file is ours to remove.
          return Effect.zipRight(removeQuietly(disk, temp), Effect.fail(fromPlatform(operation, target)(error)))
        },
        // An interruption that arrived during the write is honoured here,
        // before the commit point; never commit under a lost lock.
        onSuccess: () =>
          Effect.catchAllCause(
            Effect.zipRight(
              restore(lock.ensureHeld(operation)),
              Effect.zipRight(
                Effect.mapError(disk.fs.rename(temp, join(dir, name)), fromPlatform(operation, target)),
                renamed
              )
            ),
            (cause) => Effect.zipRight(removeQuietly(disk, temp), Effect.failCause(cause))
          )
      })
    }
    return attempt(3)
  })

/**
 * The elements of one stream chunk are written in blocks of up to this size:
 * a stream of many small elements costs one platform write per block rather
 * than one per element (the small ones are copied once into the block).
 *
 * @internal
 */
export const SINK_BLOCK = 1024 * 1024

/**
 * Writes the elements of each stream chunk, in order: consecutive elements
 * that fit in `SINK_BLOCK` together are copied into one block and written at
 * once; an element alone (or larger than a block) is written as it is. Every
 * element of a chunk is checked before any of it is written.
 *
 * One block serves the whole sink: writes are sequential, and the platform is
 * done with a buffer once its write has completed. (A new block per write
 * cost 47 full collections over 5 x 256 MiB; one reused block, 3.)
 */
const elementWriter = <E>(
  operation: string,
  target: string,
  write: (bytes: Uint8Array) => Effect.Effect<void, E>
) => {
  let block: Uint8Array | undefined
  return (chunk: Chunk.Chunk<unknown>): Effect.Effect<void, E | InvalidArgumentError> =>
    Effect.suspend((): Effect.Effect<void, E | InvalidArgumentError> => {
      const elements = Chunk.toReadonlyArray(chunk)
      for (const element of elements) {
        if (!(element instanceof Uint8Array)) return Effect.fail(notBytes(operation, target))
      }
      const bytes = elements as ReadonlyArray<Uint8Array>
      const from = (start: number): Effect.Effect<void, E> => {
        if (start >= bytes.length) return Effect.void
        let end = start
        let total = 0
        while (end < bytes.length && total + bytes[end].length <= SINK_BLOCK) total += bytes[end++].length
        if (end - start <= 1) return Effect.zipRight(write(bytes[start]), Effect.suspend(() => from(start + 1)))
        block ??= new Uint8Array(SINK_BLOCK)
        for (let i = start, at = 0; i < end; at += bytes[i++].length) block.set(bytes[i], at)
        return Effect.zipRight(write(block.subarray(0, total)), Effect.suspend(() => from(end)))
      }
      return from(0)
    })
}

/**
 * A sink that writes its input to a temp file and commits (rename) when the
 * input ends. Upstream failure or interruption discards the temp file. The
 * caller holds the write lock in the same scope.
 *
 * @internal
 */
export const replaceSink = (
  disk: Disk,
  operation: string,
  target: string,
  lock: Lock,
  mode?: number
): Effect.Effect<
  Sink.Sink<void, Uint8Array, never, FileSystemError | InvalidArgumentError | CommitError | LockLostError>,
  FileSystemError | InvalidPathError,
  Scope.Scope
> =>
  Effect.map(
    begin(disk, operation, target, lock, mode),
    (replacement) =>
      Sink.forEachChunk(elementWriter(operation, target, replacement.write)).pipe(
        Sink.mapEffect(() => replacement.finish)
      )
  )
