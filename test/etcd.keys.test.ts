/**
 * The etcd key layout (src/internal/etcd/keys.ts), without etcd: the ranges
 * a request scans find exactly the requests it conflicts with, for paths
 * whose names look like the layout's own markers (`#w`, `%23`, a prefix of a
 * sibling's name).
 *
 * Replay a failure with ETCD_KEYS_SEED=<seed>.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import {
  encodeSegment,
  entryMode,
  normalizePrefix,
  pathKey,
  prefixRange,
  requestKey,
  scanRanges
} from "../src/internal/etcd/keys.js"
import { topMost } from "../src/internal/path.js"

// The conflict rule's relation, written here from the rule: two paths overlap
// when one's segments start with all of the other's (equal, or an ancestor).
const segmentsOf = (path: string): Array<string> => path.split("/").filter((s) => s !== "")
const overlaps = (p: string, q: string): boolean => {
  const a = segmentsOf(p)
  const b = segmentsOf(q)
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false
  return true
}

const PREFIX = "/effect-persistence/locks"

describe("etcd key layout", () => {
  it("escapes the layout's markers in path segments, injectively", () => {
    expect(encodeSegment("plain name")).toBe("plain name")
    expect(encodeSegment("#w")).toBe("%23w")
    expect(encodeSegment("%23w")).toBe("%2523w")
    expect(pathKey(PREFIX, "/")).toBe(PREFIX)
    expect(pathKey(PREFIX, "/a/#r/b")).toBe(`${PREFIX}/a/%23r/b`)
    expect(requestKey(PREFIX, "/a/b", "write", "7.1")).toBe(`${PREFIX}/a/b/#w/7.1`)
    expect(requestKey(PREFIX, "/", "read", "7.2")).toBe(`${PREFIX}/#r/7.2`)
  })

  it("keys are distinct as bytes: lone surrogates (UTF-8 would make each U+FFFD) are escaped", () => {
    expect(encodeSegment("s\uD800")).toBe("s%uD800")
    expect(encodeSegment("\uDC00s")).toBe("%uDC00s")
    expect(encodeSegment("\uD83D\uDE00")).toBe("\uD83D\uDE00")
    // Strings over an alphabet of markers and surrogates: equal keys (as etcd sees them) only for equal segments.
    const alphabet = ["a", "%", "#", "u", "D800", "\uD800", "\uDC00", "\uFFFD", "\uD83D\uDE00", "%uD800"]
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.constantFrom(...alphabet), { maxLength: 6 }),
        FastCheck.array(FastCheck.constantFrom(...alphabet), { maxLength: 6 }),
        (a, b) => {
          const [s, t] = [a.join(""), b.join("")]
          return (s === t) === Buffer.from(encodeSegment(s)).equals(Buffer.from(encodeSegment(t)))
        }
      ),
      { numRuns: 5_000 }
    )
  })

  it("scans each ancestor's own entries (writes only for a read) and the path's subtree", () => {
    const keys = (mode: "read" | "write", paths: ReadonlyArray<string>) =>
      scanRanges(PREFIX, mode, paths).map((r) => [r.key.toString(), r.end.toString()])
    expect(keys("write", ["/a/b"])).toEqual([
      [`${PREFIX}/#`, `${PREFIX}/$`],
      [`${PREFIX}/a/#`, `${PREFIX}/a/$`],
      [`${PREFIX}/a/b/`, `${PREFIX}/a/b0`]
    ])
    expect(keys("read", ["/a/b"])).toEqual([
      [`${PREFIX}/#w/`, `${PREFIX}/#w0`],
      [`${PREFIX}/a/#w/`, `${PREFIX}/a/#w0`],
      [`${PREFIX}/a/b/`, `${PREFIX}/a/b0`]
    ])
    expect(keys("read", ["/"])).toEqual([[`${PREFIX}/`, `${PREFIX}0`]])
    // Shared ancestors are scanned once.
    expect(keys("write", ["/a/b", "/a/c"])).toHaveLength(4)
  })

  it("a prefix range ends after every key that starts with the prefix", () => {
    const range = prefixRange("a\u00ff")
    expect([...range.key]).toEqual([0x61, 0xc3, 0xbf])
    expect([...range.end]).toEqual([0x61, 0xc3, 0xc0])
    expect(prefixRange("").end).toEqual(Buffer.from([0]))
    expect(normalizePrefix("/locks//")).toBe("/locks")
    expect(normalizePrefix("/")).toBe("")
  })

  it("tells write entries from read entries, and other keys from both", () => {
    expect(entryMode(Buffer.from(requestKey(PREFIX, "/x", "write", "1.1")))).toBe("write")
    expect(entryMode(Buffer.from(requestKey(PREFIX, "/x", "read", "1.1")))).toBe("read")
    expect(entryMode(Buffer.from(requestKey(PREFIX, "/#w", "read", "1.1")))).toBe("read")
    for (const other of ["#w/1", `${PREFIX}/x/#w/`, `${PREFIX}/x/#x/1`, `${PREFIX}/x/config`, `${PREFIX}/x#w/1`]) {
      expect(entryMode(Buffer.from(other)), other).toBeUndefined()
    }
  })

  it("finds exactly the conflicting requests (property)", () => {
    // Names chosen to collide with the layout if it were wrong: markers, escapes, prefixes of siblings.
    const segment = FastCheck.constantFrom("a", "ab", "#w", "#r", "#", "%", "%23w", "%2", "w", "a#w", "\u00ff")
    const path = FastCheck.array(segment, { minLength: 0, maxLength: 4 }).map((s) => "/" + s.join("/"))
    const request = FastCheck.record({
      mode: FastCheck.constantFrom("read" as const, "write" as const),
      paths: FastCheck.array(path, { minLength: 1, maxLength: 3 })
    }).map(({ mode, paths }) =>
      paths.length > 1 || mode === "write" ?
        // A combined request is a write over paths other than the root, as planAll makes it.
        { mode: "write" as const, paths: topMost(paths.map((p) => p === "/" ? "/a" : p)) } :
        { mode, paths }
    )
    const conflicts = (a: { mode: string; paths: ReadonlyArray<string> }, b: typeof a) =>
      (a.mode === "write" || b.mode === "write") && a.paths.some((p) => b.paths.some((q) => overlaps(p, q)))
    const seed = Number(process.env.ETCD_KEYS_SEED ?? Date.now() % 1_000_000)
    try {
      FastCheck.assert(
        FastCheck.property(request, request, (r, s) => {
          const ranges = scanRanges(PREFIX, r.mode, r.paths)
          const found = s.paths.some((q) => {
            const key = Buffer.from(requestKey(PREFIX, q, s.mode, "9.9"))
            const inRange = ranges.some((range) => key.compare(range.key) >= 0 && key.compare(range.end) < 0)
            // What the manager keeps of a scan: for a read, only write entries.
            return inRange && (r.mode === "write" || entryMode(key) === "write")
          })
          return found === conflicts(r, s)
        }),
        { seed, numRuns: 5_000 }
      )
    } catch (error) {
      throw new Error(`replay with ETCD_KEYS_SEED=${seed}: ${String(error)}`)
    }
  })
})
