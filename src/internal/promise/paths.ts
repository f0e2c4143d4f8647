/**
 * Path arguments as the original library read them, so that a program moved
 * to the facade meets the same refusals with the same words: the Client
 * refuses a relative path ("Path must be absolute.") and the root
 * ("Operations on root are not supported."), the LockManager resolves a
 * relative path against the working directory and refuses only a write on
 * the root ("Operation is not supported."). A non-string path gets Node's own
 * `ERR_INVALID_ARG_TYPE`, from the same `node:path` call the original made.
 * The Effect API keeps its stricter rule; the facade hands it the resolved,
 * absolute path.
 *
 * @internal
 */
import * as nodePath from "node:path"
import { nullBytes, originalError } from "./errors.js"

/** The original's words for a relative path given to the Client: `"<name> must be absolute."`. @internal */
export type PathName = "Path" | "oldPath" | "newPath"

/**
 * A Client path made absolute and normal, as the original did first: a
 * relative path is refused with its words, then `path.resolve` normalises.
 *
 * @internal
 */
export const absolute = (path: unknown, name: PathName = "Path"): string => {
  // Throws Node's ERR_INVALID_ARG_TYPE for a non-string, as the original's check did.
  if (!nodePath.isAbsolute(path as string)) throw originalError(`${name} must be absolute.`)
  return nodePath.resolve(path as string)
}

/**
 * Whether a resolved path is the root: the original compared a path with its
 * own directory.
 *
 * @internal
 */
export const isRoot = (resolved: string): boolean => nodePath.dirname(resolved) === resolved

/**
 * Refuses the root, for an operation on a file or on an entry of a directory.
 *
 * @internal
 */
export const notRoot = (resolved: string): string => {
  if (isRoot(resolved)) throw originalError("Operations on root are not supported.")
  return resolved
}

/**
 * Refuses a NUL byte with the error Node's `fs` gave the original for it
 * (which it met only after taking the lock: here nothing is taken).
 *
 * @internal
 */
export const withoutNul = (resolved: string, name: PathName = "Path"): string => {
  if (resolved.includes("\0")) throw nullBytes(name === "Path" ? "path" : name, resolved)
  return resolved
}

/**
 * A Client path to list: absolute, normal, without NUL; the root may be listed.
 *
 * @internal
 */
export const directoryPath = (path: unknown): string => withoutNul(absolute(path))

/**
 * A Client path to read, write, delete or stream: as {@link directoryPath},
 * and never the root.
 *
 * @internal
 */
export const entryPath = (path: unknown): string => withoutNul(notRoot(absolute(path)))

/**
 * A LockManager path: resolved against the working directory, as the
 * original's `path.resolve` did (a non-string gets Node's error from it). A
 * write lock on the root is refused with the original's words, a NUL byte
 * with Node's.
 *
 * @internal
 */
export const lockPath = (path: unknown, mode: "read" | "write"): string => {
  const resolved = nodePath.resolve(path as string)
  if (mode === "write" && isRoot(resolved)) throw originalError("Operation is not supported.")
  // The original locked such a string; no file can have that name, and the
  // lock service refuses it: with the words Node's fs uses for it.
  if (resolved.includes("\0")) throw nullBytes("path", path as string)
  return resolved
}
