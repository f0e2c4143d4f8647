/**
 * `unlink(2)` and `rmdir(2)` for a confined Client's handles: the one place
 * in `src/` (besides the lock server) that calls `node:fs` itself.
 *
 * The platform `FileSystem` removes entries only with `remove`, which is
 * Node's `fs.rm`: it `lstat`s the path, and then its internal `rimraf`
 * `lstat`s it again and, if a directory is there by then, empties it by path,
 * even when not asked to recurse. A process that swaps a full directory in
 * between the two (and a link to outside the root inside it) makes a removal
 * through a handle delete outside the root: measured, a recursive delete of a
 * tree whose subdirectory another process swapped for a link removed files
 * outside the root within 46 to 157 rounds. `unlink` never removes a
 * directory and `rmdir` only an empty one; neither follows a link. They are
 * used only with handles (`pin.ts`), which exist only where the `FileSystem`
 * is the operating system's (its descriptors are this process's).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { FileSystemError } from "../PersistenceError.js"
import { reasonOf } from "./errors.js"

/** @internal */
export interface Unlink {
  /** Removes a non-directory (a link itself, not its target). */
  readonly unlink: (operation: string, logical: string, at: string) => Effect.Effect<void, FileSystemError>
  /** Removes an empty directory. */
  readonly rmdir: (operation: string, logical: string, at: string) => Effect.Effect<void, FileSystemError>
}

/**
 * The two calls, or `undefined` where `node:fs` cannot be loaded.
 *
 * @internal
 */
export const make: Effect.Effect<Unlink | undefined> = Effect.promise(() =>
  import("node:fs").then(
    (fs): Unlink | undefined => {
      const call = (name: "unlink" | "rmdir") => (operation: string, logical: string, at: string) =>
        Effect.async<void, FileSystemError>((resume) => {
          fs[name](at, (error) => {
            if (error === null) return resume(Effect.void)
            const code = typeof error.code === "string" ? error.code : undefined
            resume(Effect.fail(
              new FileSystemError({
                operation,
                path: logical,
                reason: reasonOf(code),
                ...(code !== undefined ? { code } : {}),
                cause: error
              })
            ))
          })
        })
      return { unlink: call("unlink"), rmdir: call("rmdir") }
    },
    () => undefined
  )
)
