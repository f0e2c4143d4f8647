/**
 * Path validation and normalisation shared by the LockManager and the Client.
 * Pure and synchronous: a refused path never reaches the lock table or the disk.
 *
 * @internal
 */
import * as Either from "effect/Either"
import type { InvalidPathReason } from "../PersistenceError.js"

/** @internal */
export const ROOT = "/"

/**
 * Validates and normalises an absolute path: resolves `.` and `..` lexically
 * (`..` at the root stays at the root, as in POSIX), collapses repeated
 * separators and drops a trailing one. Equivalent spellings give one string.
 *
 * @internal
 */
export const normalize = (path: unknown): Either.Either<string, InvalidPathReason> => {
  if (typeof path !== "string") return Either.left("NotAString")
  if (path.length === 0) return Either.left("Empty")
  if (path.charCodeAt(0) !== 47) return Either.left("Relative")
  if (path.includes("\0")) return Either.left("NulByte")
  return Either.right(isNormal(path) ? path : resolveSegments(path))
}

// The common case, an already normal path, costs one scan and no allocation.
const isNormal = (path: string): boolean => {
  const length = path.length
  if (length === 1) return true
  if (path.charCodeAt(length - 1) === 47) return false
  for (let i = 0; i < length; i++) {
    if (path.charCodeAt(i) !== 47) continue
    const next = path.charCodeAt(i + 1)
    if (next === 47) return false
    if (next === 46) {
      const after = path.charCodeAt(i + 2)
      if (after === 47 || Number.isNaN(after)) return false
      if (after === 46) {
        const third = path.charCodeAt(i + 3)
        if (third === 47 || Number.isNaN(third)) return false
      }
    }
  }
  return true
}

const resolveSegments = (path: string): string => {
  const out: Array<string> = []
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue
    if (segment === "..") out.pop()
    else out.push(segment)
  }
  return "/" + out.join("/")
}

/**
 * The segments of a normal path; the root has none.
 *
 * @internal
 */
export const segments = (normal: string): Array<string> => normal === ROOT ? [] : normal.slice(1).split("/")

/**
 * Whether `ancestor` is a strict ancestor of `path` (both normal).
 *
 * @internal
 */
export const isAncestor = (ancestor: string, path: string): boolean =>
  ancestor !== path && (ancestor === ROOT || (path.startsWith(ancestor) && path.charCodeAt(ancestor.length) === 47))

/**
 * The sort key of a normal path: "/" becomes NUL, which no path contains and
 * which sorts before every other character, so that in key order each path is
 * followed at once by all of its descendants (with "/" itself, "/a-b" would
 * fall between "/a" and "/a/b").
 */
const keyOf = (normal: string): string => normal.replaceAll("/", "\0")

/**
 * Reduces a set of normal paths, each with a mode, to the top-most ones, in
 * O(n log n): duplicates count once (a write wins over a read), and a path
 * below another in the set is covered by it, so a combined request never
 * conflicts with itself. A write below a read makes the read a write (the
 * request then excludes readers of that whole subtree: more than it asked,
 * never less).
 *
 * @internal
 */
export const topMostModes = <M extends "read" | "write">(
  paths: ReadonlyArray<string>,
  modes: ReadonlyArray<M>
): { readonly paths: Array<string>; readonly modes: Array<M | "write"> } => {
  const order = paths.map((path, i) => ({ key: keyOf(path), path, mode: modes[i] as M | "write" }))
  order.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const kept: Array<(typeof order)[number]> = []
  let last: (typeof order)[number] | undefined
  for (const item of order) {
    if (
      last !== undefined &&
      (item.key === last.key ||
        (item.key.startsWith(last.key) && (last.path === ROOT || item.key.charCodeAt(last.key.length) === 0)))
    ) {
      if (item.mode === "write") last.mode = "write"
      continue
    }
    kept.push(item)
    last = item
  }
  return { paths: kept.map((k) => k.path), modes: kept.map((k) => k.mode) }
}

/**
 * `topMostModes` for a set of paths that are all written.
 *
 * @internal
 */
export const topMost = (paths: ReadonlyArray<string>): Array<string> =>
  topMostModes(paths, paths.map(() => "write" as const)).paths

/**
 * The directory part of a normal path (the root is its own parent).
 *
 * @internal
 */
export const parent = (normal: string): string => {
  const i = normal.lastIndexOf("/")
  return i <= 0 ? ROOT : normal.slice(0, i)
}

/**
 * The last segment of a normal path ("" for the root).
 *
 * @internal
 */
export const basename = (normal: string): string => normal.slice(normal.lastIndexOf("/") + 1)

/**
 * Joins a normal directory path and a relative name.
 *
 * @internal
 */
export const join = (dir: string, name: string): string => dir === ROOT ? ROOT + name : `${dir}/${name}`
