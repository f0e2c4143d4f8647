/**
 * Directory walks for `collect`, `collectEntries` and `recover` that do not
 * follow symbolic links.
 *
 * The platform's `readDirectory(dir, { recursive: true })` descends into
 * linked directories: out of a confined Client's root, and round a link loop
 * (`a/up -> ..`) until the path is too long. Like `find`, a walk here lists a
 * link as an entry and never descends into it. The platform has no `lstat`,
 * so a directory is told apart from a link to one by `readLink`, which only a
 * link answers.
 *
 * A confined Client on Linux lists each directory through a handle (see
 * `pin.ts`) opened at the real path the walk expects and checked to be
 * exactly there, so a directory swapped for a link during the walk is not
 * descended into either.
 *
 * @internal
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { FileSystemError, type InvalidPathError } from "../PersistenceError.js"
import { errnoCode, fromPlatform, io } from "./errors.js"
import { join } from "./path.js"
import type { Pins } from "./pin.js"

/** @internal */
export interface Listing {
  /** A path that names the directory, for calls on its entries (`<at>/<name>`). */
  readonly at: string
  /** The directory's path relative to where the walk started: "" there, else ending in "/". */
  readonly prefix: string
  readonly names: ReadonlyArray<string>
  /**
   * With `types` or `recursive`: the type of each entry, following links (a
   * dangling link is a `SymbolicLink`; an entry removed since it was listed,
   * `undefined`).
   */
  readonly types: ReadonlyArray<FileSystem.File.Type | undefined> | undefined
}

const STAT_CONCURRENCY = 16

/**
 * Whether the entry at `at` is a symbolic link: only a link answers
 * `readLink`; anything else fails with EINVAL, or without an errno code on a
 * file system that has no links. When it finds nothing, it asks once more (a
 * name another process replaces can be missing for a moment): nothing again
 * means the entry is gone, which counts as a link, with nothing to descend
 * into or remove. Other failures are errors.
 *
 * @internal
 */
export const isLink = (
  fs: FileSystem.FileSystem,
  operation: string,
  at: string,
  logical: string,
  again = true
): Effect.Effect<boolean, FileSystemError> =>
  fs.readLink(at).pipe(
    Effect.as(true),
    Effect.catchAll((error) => {
      const code = errnoCode(error)
      if (code === undefined || code === "EINVAL") return Effect.succeed(false)
      if (code === "ENOENT") return again ? isLink(fs, operation, at, logical, false) : Effect.succeed(true)
      return Effect.fail(fromPlatform(operation, logical)(error))
    })
  )

/**
 * The type of the entry itself whose target is of `target`: `SymbolicLink`
 * for a link, `undefined` if it is gone (removed since it was listed).
 */
const ownType = (
  fs: FileSystem.FileSystem,
  operation: string,
  at: string,
  logical: string,
  target: FileSystem.File.Type
): Effect.Effect<FileSystem.File.Type | undefined, FileSystemError> =>
  fs.readLink(at).pipe(
    Effect.as("SymbolicLink" as const),
    Effect.catchAll((error) => {
      const code = errnoCode(error)
      if (code === undefined || code === "EINVAL") return Effect.succeed(target)
      if (code === "ENOENT") return Effect.succeed(undefined)
      return Effect.fail(fromPlatform(operation, logical)(error))
    })
  )

/**
 * The type of an entry, following links. When `stat` finds nothing,
 * `readLink` tells a dangling link (a `SymbolicLink`) from an entry that is
 * gone (`undefined`: removed since it was listed); if the entry is there and
 * not a link, `stat` is asked once more. A link `stat` cannot follow for
 * another reason (a loop, a target another user's directory hides) is a
 * `SymbolicLink` too, as a dangling one: one such link planted in a tree must
 * not fail the listing of everything beside it.
 *
 * @internal
 */
export const typeOf = (
  fs: FileSystem.FileSystem,
  operation: string,
  at: string,
  logical: string
): Effect.Effect<FileSystem.File.Type | undefined, FileSystemError> => {
  const stat = io(operation, logical, fs.stat(at)).pipe(
    Effect.map((info): FileSystem.File.Type | undefined => info.type)
  )
  return stat.pipe(
    Effect.catchAll((failed) =>
      fs.readLink(at).pipe(
        Effect.as("SymbolicLink" as const),
        Effect.catchAll((error) =>
          failed.reason !== "NotFound" ?
            Effect.fail(failed) :
            errnoCode(error) === "ENOENT" ?
            Effect.succeed(undefined) :
            Effect.catchIf(stat, (e) => e.reason === "NotFound", () => Effect.succeed(undefined))
        )
      )
    )
  )
}

/**
 * Lists `dir` (and with `recursive` every directory below it that is not
 * reached through a link, breadth first as the platform does), running `f` on
 * each listing while its directory is held open. Entries below `dir` are
 * named relative to it.
 *
 * @internal
 */
export const walk = <A, E>(
  fs: FileSystem.FileSystem,
  pins: Pins | undefined,
  operation: string,
  path: unknown,
  dir: string,
  options: {
    readonly recursive: boolean
    readonly types: boolean
    /** `false`: a link's type is `SymbolicLink`, as `readdir` with file types says (default `true`). */
    readonly followLinks?: boolean
  },
  f: (listing: Listing) => Effect.Effect<A, E>
): Effect.Effect<Array<A>, E | FileSystemError | InvalidPathError> =>
  Effect.suspend(() => {
    const out: Array<A> = []

    /**
     * Lists one directory, runs `f`, and returns the subdirectories to visit:
     * `[logical path, expected real path, prefix]`.
     */
    const visit = (
      at: string,
      logical: string,
      real: string,
      prefix: string
    ): Effect.Effect<Array<readonly [string, string, string]>, E | FileSystemError> =>
      Effect.gen(function*() {
        const names = yield* io(operation, logical, fs.readDirectory(at))
        const follow = options.followLinks ?? true
        const types = options.types || options.recursive ?
          yield* Effect.forEach(names, (name) => {
            const type = typeOf(fs, operation, join(at, name), join(logical, name))
            return follow ? type : Effect.flatMap(type, (type) =>
              type === undefined || type === "SymbolicLink" ?
                Effect.succeed(type) :
                ownType(fs, operation, join(at, name), join(logical, name), type))
          }, { concurrency: STAT_CONCURRENCY }) :
          undefined
        const below: Array<readonly [string, string, string]> = []
        if (types !== undefined && options.recursive) {
          for (let i = 0; i < names.length; i++) {
            if (types[i] !== "Directory") {
              continue
            }
            const name = names[i]
            // Not followed: a directory's type is already its own.
            if (!follow || !(yield* isLink(fs, operation, join(at, name), join(logical, name)))) {
              below.push([join(logical, name), join(real, name), `${prefix}${name}/`])
            }
          }
        }
        out.push(yield* f({ at, prefix, names, types }))
        return below
      })

    // Breadth first: each level's directories in listing order.
    const level = (
      queue: ReadonlyArray<readonly [string, string, string]>,
      open: (logical: string, real: string) => Effect.Effect<
        { readonly at: string; readonly real: string } | undefined,
        FileSystemError | InvalidPathError,
        Scope.Scope
      >
    ): Effect.Effect<void, E | FileSystemError | InvalidPathError> =>
      queue.length === 0 ? Effect.void : Effect.flatMap(
        Effect.forEach(queue, ([logical, real, prefix]) =>
          Effect.scoped(
            Effect.flatMap(open(logical, real), (opened) =>
              opened === undefined ? Effect.succeed([]) : visit(opened.at, logical, opened.real, prefix))
          )),
        (next) =>
          level(next.flat(), open)
      )

    if (pins === undefined) {
      return Effect.as(
        level([[dir, dir, ""]], (logical) => Effect.succeed({ at: logical, real: logical })),
        out
      )
    }
    // The start is opened by its path (a link there may lead anywhere inside
    // the root); below it, only where the walk expects a directory to be.
    return Effect.scoped(
      Effect.flatMap(
        pins.directory(operation, path, dir),
        (start) =>
          Effect.flatMap(visit(start.at, dir, start.real, ""), (below) =>
            level(below, (logical, real) =>
              pins.exactDirectory(operation, logical, real)))
      )
    ).pipe(Effect.as(out))
  })

/**
 * Removes `name` from the directory named by `parent.at` (a handle of a
 * confined Client), and everything below it when it is a directory, without
 * following links and without resolving any path below a handle again: each
 * directory is opened where it is expected (and checked to be exactly there),
 * emptied through that handle, subdirectories first, and removed with
 * `rmdir`; everything else with `unlink` (see `unlink.ts` for why not the
 * platform's `remove`, which is Node's `rm`).
 *
 * A directory that is not where it was expected (a link swapped in) is left
 * alone and the removal fails with `Busy`; one that another process fills
 * again as it is emptied is emptied again, a few times, before the removal
 * fails with `NotEmpty`.
 *
 * @internal
 */
export const removeTree = (
  fs: FileSystem.FileSystem,
  pins: Pins,
  operation: string,
  logical: string,
  parent: { readonly at: string; readonly real: string },
  name: string,
  force: boolean
): Effect.Effect<void, FileSystemError> => {
  const ATTEMPTS = 3
  const removeEntry = (
    at: string,
    real: string,
    child: string,
    logicalChild: string
  ): Effect.Effect<void, FileSystemError> =>
    Effect.flatMap(typeOf(fs, operation, join(at, child), logicalChild), (type) =>
      type === undefined ?
        Effect.void :
        Effect.flatMap(
          type === "Directory" ?
            Effect.map(isLink(fs, operation, join(at, child), logicalChild), (l) => !l) :
            Effect.succeed(false),
          (directory) =>
            directory ?
              removeDirectory(at, join(real, child), child, logicalChild, ATTEMPTS) :
              pins.unlink(operation, logicalChild, join(at, child)).pipe(
                Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
              )
        ))
  const removeDirectory = (
    at: string,
    real: string,
    child: string,
    logicalChild: string,
    attempts: number
  ): Effect.Effect<void, FileSystemError> =>
    Effect.flatMap(empty(real, logicalChild), (emptied) =>
      !emptied ?
        Effect.fail(new FileSystemError({ operation, path: logicalChild, reason: "Busy", code: "EBUSY" })) :
        pins.rmdir(operation, logicalChild, join(at, child)).pipe(
          Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void),
          Effect.catchIf(
            (e) => e.reason === "NotEmpty" && attempts > 1,
            () => removeDirectory(at, real, child, logicalChild, attempts - 1)
          )
        ))
  /** Empties the directory expected at `real`; `false` when something else is there. */
  const empty = (real: string, logicalDir: string): Effect.Effect<boolean, FileSystemError> =>
    Effect.scoped(
      Effect.flatMap(pins.exactDirectory(operation, logicalDir, real), (opened) =>
        opened === undefined ? Effect.succeed(false) : Effect.flatMap(
          io(operation, logicalDir, fs.readDirectory(opened.at)),
          (names) =>
            Effect.as(
              Effect.forEach(
                names,
                (child) =>
                  removeEntry(opened.at, opened.real, child, join(logicalDir, child)),
                { discard: true }
              ),
              true
            )
        ))
    )
  // The entry itself must exist, unless `force`.
  return Effect.flatMap(typeOf(fs, operation, join(parent.at, name), logical), (type) =>
    type !== undefined ?
      removeEntry(parent.at, parent.real, name, logical) :
      force ?
      Effect.void :
      Effect.fail(new FileSystemError({ operation, path: logical, reason: "NotFound", code: "ENOENT" })))
}
