/**
 * How lock requests are laid out in etcd's key space. Pure: no etcd client.
 *
 * A request on a path is one key per locked path,
 * `<prefix>/<seg1>/.../<segN>/#<r|w>/<request id>`, with each segment escaped
 * so that it never starts with `#` and never contains `/`. Then:
 * - the keys of requests on exactly path P all start with `key(P)/#`;
 * - the keys of requests on P and on every path below it start with `key(P)/`,
 *   and no other key does (`/a/b` gives `key(/a/b)/`, which `/a/bc` does not
 *   start with);
 * so the requests that can conflict with one on P are found with one prefix
 * range per ancestor of P (its own entries only) and one over P's subtree.
 *
 * @internal
 */
import type { LockMode } from "../../LockManager.js"
import { segments } from "../path.js"

/** `%`, `#`, and a UTF-16 surrogate without its pair. */
const ESCAPED = /[%#]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const escape = (c: string): string =>
  c === "%" ? "%25" : c === "#" ? "%23" : `%u${c.charCodeAt(0).toString(16).toUpperCase()}`

/**
 * Escapes `%` and `#`, and lone surrogates (which UTF-8 would turn into one
 * U+FFFD: two paths would share a key). The escape is injective on the bytes
 * of the key (two segments never share an encoding) and an encoded segment
 * never starts with `#`, the marker of a request entry. Segments never
 * contain `/` (they come from normal paths).
 *
 * @internal
 */
export const encodeSegment = (segment: string): string => segment.replace(ESCAPED, escape)

/**
 * The key of a normal path under `prefix`: the prefix itself for the root.
 *
 * @internal
 */
export const pathKey = (prefix: string, path: string): string => {
  let key = prefix
  for (const segment of segments(path)) key += "/" + encodeSegment(segment)
  return key
}

/**
 * The key of one path of a request. `id` is unique to the request and
 * contains no `/`.
 *
 * @internal
 */
export const requestKey = (prefix: string, path: string, mode: LockMode, id: string): string =>
  `${pathKey(prefix, path)}/#${mode === "write" ? "w" : "r"}/${id}`

const HASH = 0x23
const SLASH = 0x2f
const R = 0x72
const W = 0x77

/**
 * The mode of a request entry found in a scan: its key ends with
 * `/#r/<id>` or `/#w/<id>`. Undefined for any other key under the prefix
 * (not a lock request: the scans ignore it).
 *
 * @internal
 */
export const entryMode = (key: Uint8Array): LockMode | undefined => {
  const slash = key.lastIndexOf(SLASH)
  if (slash < 3 || slash === key.length - 1 || key[slash - 2] !== HASH || key[slash - 3] !== SLASH) return undefined
  const mode = key[slash - 1]
  return mode === W ? "write" : mode === R ? "read" : undefined
}

/**
 * A prefix range of keys: `[key, end)`.
 *
 * @internal
 */
export interface KeyRange {
  readonly key: Buffer
  readonly end: Buffer
}

/**
 * The range of every key that starts with `prefix`: the end is the prefix with
 * its last byte incremented (dropping trailing 0xff bytes first), as etcd's
 * own `WithPrefix` does.
 *
 * @internal
 */
export const prefixRange = (prefix: string): KeyRange => {
  const key = Buffer.from(prefix, "utf8")
  let length = key.length
  while (length > 0 && key[length - 1] === 0xff) length--
  // All 0xff (or empty): every key from `key` on.
  if (length === 0) return { key, end: Buffer.from([0]) }
  const end = Buffer.from(key.subarray(0, length))
  end[length - 1]++
  return { key, end }
}

/**
 * The ranges to scan for the requests a request over `locked` (top-most
 * paths, as the lock table takes them) may conflict with: each ancestor's own
 * entries (only its writes, for a read request: reads never conflict) and
 * each path's whole subtree. Duplicates (shared ancestors) appear once.
 *
 * @internal
 */
export const scanRanges = (prefix: string, mode: LockMode, locked: ReadonlyArray<string>): Array<KeyRange> => {
  const own = mode === "write" ? "/#" : "/#w/"
  const seen = new Set<string>()
  const ranges: Array<KeyRange> = []
  const add = (prefixOfRange: string) => {
    if (seen.has(prefixOfRange)) return
    seen.add(prefixOfRange)
    ranges.push(prefixRange(prefixOfRange))
  }
  for (const path of locked) {
    const parts = segments(path)
    let key = prefix
    // The root has no ancestor: its own entries are in its subtree.
    if (parts.length > 0) add(key + own)
    for (let i = 0; i < parts.length - 1; i++) {
      key += "/" + encodeSegment(parts[i])
      add(key + own)
    }
    add(pathKey(prefix, path) + "/")
  }
  return ranges
}

/**
 * The key prefix option without trailing separators (a prefix of `/` or `""`
 * puts requests at the top of the key space).
 *
 * @internal
 */
export const normalizePrefix = (prefix: string): string => prefix.replace(/\/+$/, "")
