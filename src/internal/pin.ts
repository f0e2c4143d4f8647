/**
 * Handles that a symbolic link swapped in later cannot redirect, for a Client
 * confined to a root directory.
 *
 * Confinement checks a path (with `realpath`) before the operation; a process
 * that then swaps a directory on the path for a link to outside the root
 * would redirect every later call made by path. So a confined Client opens
 * the directory it works in (or the file it reads), reads where the
 * descriptor really leads from `/proc/self/fd/<fd>` (the kernel's own answer
 * for the object opened, not a path resolved again), refuses it unless it is
 * inside the root, and then names entries as `/proc/self/fd/<fd>/<name>`:
 * the kernel resolves that to the opened directory itself, wherever it is
 * now, so a later swap cannot redirect the temp file, the rename or the
 * removal. All of it goes through the platform `FileSystem` (`open`,
 * `readLink` and paths), which has no `openat`.
 *
 * This needs Linux's `/proc`; `make` probes for it, and without it the
 * Client works by path as before (the limit is documented). Entries are
 * removed through a handle with `unlink` and `rmdir` (see `unlink.ts`).
 *
 * @internal
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { FileSystemError, InvalidPathError } from "../PersistenceError.js"
import { invalidPath, io, openable, tooLarge } from "./errors.js"
import { basename, isAncestor, join, normalize, parent, ROOT } from "./path.js"
import * as Removal from "./unlink.js"

/** @internal */
export interface Pins extends Removal.Unlink {
  /** The real path of the root: what every handle must lead inside. */
  readonly realRoot: string
  /**
   * Opens the directory `dir` and returns a path that names it, checked to
   * lead inside the root. With `created`, missing directories are made on the
   * way, each inside an opened parent (and `created` is told about each).
   * The handle lives until the scope closes.
   */
  readonly directory: (
    operation: string,
    path: unknown,
    dir: string,
    created?: (dir: string) => void
  ) => Effect.Effect<Pinned, FileSystemError | InvalidPathError, Scope.Scope>
  /**
   * Opens the directory at the real path `real` only if that is where it
   * leads: a link anywhere on `real` (swapped in after the caller looked)
   * gives `undefined`. Errors name the `logical` path. For walks that do not follow links.
   */
  readonly exactDirectory: (
    operation: string,
    logical: string,
    real: string
  ) => Effect.Effect<Pinned | undefined, FileSystemError, Scope.Scope>
  /** Reads the whole file `p` through a handle checked to lead inside the root. */
  readonly read: (
    operation: string,
    path: unknown,
    p: string
  ) => Effect.Effect<Uint8Array, FileSystemError | InvalidPathError>
  /** Checks that `file`, opened at `logical`, leads inside the root; returns where it is. */
  readonly check: (
    operation: string,
    path: unknown,
    logical: string,
    file: FileSystem.File
  ) => Effect.Effect<string, FileSystemError | InvalidPathError>
}

/** @internal */
export interface Pinned {
  /** Names the opened object: `/proc/self/fd/<fd>`. */
  readonly at: string
  /** Where it really is (from `/proc`). */
  readonly real: string
}

const procPath = (file: FileSystem.File) => `/proc/self/fd/${file.fd}`

const READ_CHUNK = 64 * 1024

/**
 * The largest file Node's `readFile` reads whole (its `kIoMaxLength`): past
 * it, it fails with `ERR_FS_FILE_TOO_LARGE` before allocating.
 */
const READ_MAX = 2 ** 31 - 1

/**
 * The rest of an open file, as Node's `readFile` reads it: as many bytes as
 * its size says (fewer if it ends first), or, when the size says nothing (0:
 * empty, or a file of `/proc`), until the end. A file larger than `max`
 * (`READ_MAX`) fails as there, before anything is allocated; one that said 0
 * and goes on past `max` (another process appending as fast as it is read)
 * fails once it has.
 *
 * @internal
 */
export const readAll = (
  operation: string,
  p: string,
  file: FileSystem.File,
  max = READ_MAX
): Effect.Effect<Uint8Array, FileSystemError> =>
  Effect.flatMap(io(operation, p, file.stat), (info) => {
    const size = Number(info.size)
    if (size > max) return Effect.fail(tooLarge(operation, p, size))
    return size > 0 ? io(operation, p, readSized(file, size)) : readToEnd(operation, p, file, max)
  })

/** `readAll` of a file whose size is known. */
const readSized = (file: FileSystem.File, size: number): Effect.Effect<Uint8Array, PlatformError> => {
  const buffer = new Uint8Array(size)
  const fill = (at: number): Effect.Effect<Uint8Array, PlatformError> =>
    at >= size ?
      Effect.succeed(buffer) :
      Effect.flatMap(file.read(buffer.subarray(at)), (n) =>
        Number(n) === 0 ? Effect.succeed(buffer.slice(0, at)) : fill(at + Number(n)))
  return fill(0)
}

/** `readAll` of a file whose size says nothing: chunks until the end, at most `max` bytes. */
const readToEnd = (
  operation: string,
  p: string,
  file: FileSystem.File,
  max: number
): Effect.Effect<Uint8Array, FileSystemError> =>
  Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let total = 0
    const more: Effect.Effect<Uint8Array, FileSystemError> = Effect.flatMap(
      io(operation, p, file.readAlloc(READ_CHUNK)),
      (chunk) => {
        if (chunk._tag === "Some") {
          total += chunk.value.length
          if (total > max) return Effect.fail(tooLarge(operation, p, total))
          chunks.push(chunk.value)
          return more
        }
        const out = new Uint8Array(total)
        chunks.reduce((at, c) => (out.set(c, at), at + c.length), 0)
        return Effect.succeed(out)
      }
    )
    return more
  })

const inside = (base: string, p: string) => p === base || isAncestor(base, p)

/**
 * Pins for a root, or `undefined` when the platform cannot give them (no
 * `/proc`, a `FileSystem` that is not the operating system's).
 *
 * @internal
 */
export const make = (fs: FileSystem.FileSystem, root: string): Effect.Effect<Pins | undefined> =>
  Effect.gen(function*() {
    const supported = yield* Effect.scoped(
      Effect.flatMap(fs.open(ROOT, { flag: "r" }), (file) => fs.readLink(procPath(file)))
    ).pipe(Effect.map((real) => real === ROOT), Effect.orElseSucceed(() => false))
    // Removal through a handle needs unlink and rmdir, which the platform lacks.
    const removal = supported ? yield* Removal.make : undefined
    if (removal === undefined) return undefined
    const realRoot = yield* fs.realPath(root).pipe(Effect.orElseSucceed(() => root))

    const where = (file: FileSystem.File): Effect.Effect<string, PlatformError> =>
      Effect.map(fs.readLink(procPath(file)), (real) => {
        // A path the kernel cannot show whole is never inside the root.
        const normal = normalize(real)
        return normal._tag === "Right" ? normal.right : ""
      })

    const check = (operation: string, path: unknown, logical: string, file: FileSystem.File) =>
      io(operation, logical, where(file)).pipe(
        Effect.filterOrFail(
          (real) => inside(realRoot, real),
          () => invalidPath(operation, path, "OutsideRoot", "a symbolic link led outside the root when it was opened")
        )
      )

    // Opens for reading (a directory cannot be opened otherwise).
    // Never a FIFO or a device: its open could block for good (see openable).
    const open = (operation: string, dir: string, at: string) =>
      Effect.zipRight(openable(fs, operation, dir, at), io(operation, dir, fs.open(at, { flag: "r" })))

    const directory = (
      operation: string,
      path: unknown,
      dir: string,
      created?: (dir: string) => void
    ): Effect.Effect<Pinned, FileSystemError | InvalidPathError, Scope.Scope> =>
      open(operation, dir, dir).pipe(
        Effect.catchIf(
          (error) => created !== undefined && error.reason === "NotFound" && isAncestor(root, dir),
          (missing) =>
            Effect.gen(function*() {
              const above = yield* directory(operation, path, parent(dir), created)
              const at = join(above.at, basename(dir))
              yield* io(operation, dir, fs.makeDirectory(at)).pipe(
                Effect.catchIf((e) => e.reason === "AlreadyExists", () => Effect.void)
              )
              created?.(dir)
              return yield* open(operation, dir, at).pipe(Effect.mapError((e) => e.reason === "NotFound" ? missing : e))
            })
        ),
        Effect.flatMap((file) =>
          Effect.map(check(operation, path, dir, file), (real): Pinned => ({ at: procPath(file), real }))
        )
      )

    const exactDirectory = (operation: string, logical: string, real: string) =>
      Effect.flatMap(open(operation, logical, real), (file) =>
        io(operation, logical, where(file)).pipe(
          Effect.map((now) => now === real ? { at: procPath(file), real } : undefined)
        ))

    const read = (operation: string, path: unknown, p: string) =>
      Effect.scoped(
        Effect.flatMap(open(operation, p, p), (opened) =>
          Effect.zipRight(check(operation, path, p, opened), readAll(operation, p, opened)))
      )

    return { ...removal, realRoot, directory, exactDirectory, read, check }
  })
