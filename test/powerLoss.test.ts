import { FileSystem } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Schema, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as nodeOs from "node:os"
import * as nodePath from "node:path"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import * as FaultFileSystem from "../src/testing/FaultFileSystem.js"
import * as PowerLoss from "../src/testing/PowerLoss.js"
import {
  check,
  noDirectorySync,
  noFileSync,
  omitTemp,
  pauseAfterMakeDirectory,
  renameBeforeSync,
  type Scenario,
  simulatedClient,
  type Verdict
} from "./utils/powerLoss.js"

const bytesOf = (s: string) => new TextEncoder().encode(s)
const textOf = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Every scenario also holds this file, which nothing may disturb. */
const KEEP = { "/data/keep": "keep" } as const
const kept = (s: PowerLoss.Snapshot) => s["/data/keep"] === "keep"

/** The target holds `old` (`undefined`: absent) or `next`, nothing else. */
const oldOrNew = (path: string, old: string | undefined, next: string) => (s: PowerLoss.Snapshot) =>
  kept(s) && (s[path] === old || s[path] === next)

const holds = (path: string, next: string) => (s: PowerLoss.Snapshot) => kept(s) && s[path] === next

const replaceScenario = (
  name: string,
  path: string,
  old: string | undefined,
  next: string,
  run: Scenario["run"]
): Scenario => ({
  name,
  initial: { "/data/": "", ...KEEP, ...(old === undefined ? {} : { [path]: old }) },
  run,
  during: oldOrNew(path, old, next),
  after: holds(path, next)
})

const Doc = Schema.Struct({ n: Schema.Number, label: Schema.String })

const absentBelow = (dir: string) => (s: PowerLoss.Snapshot) => Object.keys(s).every((p) => !p.startsWith(dir + "/"))

const renameScenario = (name: string, from: string, to: string, oldTo: string | undefined): Scenario => ({
  name,
  initial: { "/data/": "", ...KEEP, [from]: "moving", ...(oldTo === undefined ? {} : { [to]: oldTo }) },
  run: (client) => client.rename(from, to),
  // Never lost, never partial: under one of its names with its content.
  during: (s) =>
    kept(s) && (s[from] === undefined || s[from] === "moving") && (s[to] === oldTo || s[to] === "moving") &&
    (s[from] === "moving" || s[to] === "moving"),
  after: (s) => kept(s) && s[from] === undefined && s[to] === "moving"
})

const copyScenario = (name: string, to: string, oldTo: string | undefined): Scenario => ({
  name,
  initial: { "/data/": "", ...KEEP, "/data/src": "copied content", ...(oldTo === undefined ? {} : { [to]: oldTo }) },
  run: (client) => client.copy("/data/src", to),
  // The source is never disturbed; the target is old or new, never partial.
  during: (s) => kept(s) && s["/data/src"] === "copied content" && (s[to] === oldTo || s[to] === "copied content"),
  after: (s) => kept(s) && s["/data/src"] === "copied content" && s[to] === "copied content"
})

const concurrentScenario = (count: number): Scenario => {
  const paths = Array.from({ length: count }, (_, i) => `/data/f${i}`)
  // Half the files exist, half are new.
  const old = (i: number) => i % 2 === 0 ? `old ${i}` : undefined
  const next = (i: number) => `new content ${i}`
  const initial: Record<string, string> = { "/data/": "", ...KEEP }
  paths.forEach((path, i) => {
    const o = old(i)
    if (o !== undefined) initial[path] = o
  })
  return {
    name: `${count} concurrent writes`,
    initial,
    run: (client) =>
      Effect.all(paths.map((path, i) => client.write(path, next(i))), { concurrency: "unbounded", discard: true }),
    during: (s) => kept(s) && paths.every((path, i) => s[path] === old(i) || s[path] === next(i)),
    after: (s) => kept(s) && paths.every((path, i) => s[path] === next(i))
  }
}

const scenarios = (concurrent: number): ReadonlyArray<Scenario> => [
  replaceScenario(
    "write (new file)",
    "/data/new",
    undefined,
    "new content",
    (c) => c.write("/data/new", "new content")
  ),
  replaceScenario(
    "write (replace)",
    "/data/target",
    "old content",
    "new, longer content",
    (c) => c.write("/data/target", "new, longer content")
  ),
  replaceScenario(
    "write (missing parents)",
    "/data/a/b/c/file",
    undefined,
    "deep",
    (c) => c.write("/data/a/b/c/file", "deep")
  ),
  replaceScenario(
    "sink",
    "/data/target",
    "old content",
    "new content in three chunks",
    (c) =>
      Stream.run(Stream.make("new content ", "in three ", "chunks").pipe(Stream.map(bytesOf)), c.sink("/data/target"))
  ),
  replaceScenario(
    "modify",
    "/data/counter",
    "41",
    "42",
    (c) =>
      c.modify("/data/counter", (current) => String(Number(textOf(Option.getOrElse(current, () => bytesOf("0")))) + 1))
  ),
  replaceScenario(
    "writeJson",
    "/data/doc.json",
    JSON.stringify({ n: 1, label: "one" }),
    JSON.stringify({ n: 2, label: "two" }),
    (c) => c.writeJson("/data/doc.json", Doc, { n: 2, label: "two" })
  ),
  copyScenario("copy (over a file)", "/data/dst", "old dst"),
  copyScenario("copy (missing parents)", "/data/x/y/dst", undefined),
  {
    name: "makeDirectory (missing parents)",
    initial: { "/data/": "", ...KEEP },
    run: (client) => client.makeDirectory("/data/a/b"),
    // Each level is there or not; never a level without its parent.
    during: (s) => kept(s) && (s["/data/a/b/"] === undefined || s["/data/a/"] === ""),
    after: (s) => kept(s) && s["/data/a/b/"] === ""
  },
  renameScenario("rename (same directory, over a file)", "/data/from", "/data/to", "old to"),
  renameScenario("rename (across directories, missing parents)", "/data/src/from", "/data/dst/sub/to", undefined),
  {
    name: "delete (file)",
    initial: { "/data/": "", ...KEEP, "/data/victim": "victim" },
    run: (client) => client.delete("/data/victim"),
    during: (s) => kept(s) && (s["/data/victim"] === undefined || s["/data/victim"] === "victim"),
    after: (s) => kept(s) && s["/data/victim"] === undefined
  },
  {
    name: "delete (directory, recursive)",
    initial: { "/data/": "", ...KEEP, "/data/tree/x": "x", "/data/tree/y/z": "z", "/data/tree/empty/": "" },
    run: (client) => client.delete("/data/tree", { recursive: true }),
    // Not atomic as a whole (a recursive delete is not promised to be): each file is there intact or gone.
    during: (s) =>
      kept(s) && (s["/data/tree/x"] === undefined || s["/data/tree/x"] === "x") &&
      (s["/data/tree/y/z"] === undefined || s["/data/tree/y/z"] === "z"),
    after: (s) => kept(s) && absentBelow("/data/tree")(s) && s["/data/tree/"] === undefined
  },
  concurrentScenario(concurrent)
]

const describeTally = (t: Verdict["during"]) =>
  t.violations === 0 ? `holds (${t.states} crash states)` : `VIOLATED (${t.violations} of ${t.states} crash states)`

describe("power loss: the simulated disk", () => {
  it("a file fsync makes data durable, not the name; a directory fsync makes the name durable", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    const fd = disk.open("/d/f", "wx")
    disk.write(fd, bytesOf("ab"))
    expect(disk.crashStates().map((s) => s["/d/f"]).sort()).toEqual([undefined, "", "\0\0", "ab"].sort())
    disk.sync(fd)
    expect(disk.crashStates().map((s) => s["/d/f"]).sort()).toEqual([undefined, "ab"].sort())
    const dir = disk.open("/d", "r")
    disk.sync(dir)
    expect(disk.crashStates()).toEqual([{ "/d/": "", "/d/f": "ab" }])
    expect(disk.volatile()).toEqual({ "/d/": "", "/d/f": "ab" })
  })

  // The contents of `path` over every crash state, as short names: a run of
  // one character per 4 KiB block ("A" for 4096 "A"s, "0" for 4096 zeros).
  const blocksOf = (disk: PowerLoss.SimulatedDisk, path: string, options?: PowerLoss.CrashStatesOptions) =>
    Array.from(new Set(disk.crashStates(options).map((s) => s[path]))).map((content) => {
      if (content === undefined || content.length % 4096 !== 0) return content
      let out = ""
      for (let i = 0; i < content.length; i += 4096) {
        const block = content.slice(i, i + 4096)
        if (block !== block[0].repeat(4096)) return content
        out += block[0] === "\0" ? "0" : block[0]
      }
      return out
    }).sort()
  const block = (c: string) => c.repeat(4096)

  it("a write reaches the device block by block: an append may land in part, or cut short at a block", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": "" })
    const fd = disk.open("/d/f", "a")
    disk.write(fd, bytesOf(block("A") + block("B")))
    // Nothing, the first block only (size cut there), or both blocks each landed or zeros.
    expect(blocksOf(disk, "/d/f")).toEqual(["", "0", "00", "0B", "A", "A0", "AB"].sort())
    // With a block as large as the write, it lands whole or not at all.
    expect(blocksOf(disk, "/d/f", { blockSize: Infinity })).toEqual(["", "00", "AB"].sort())
    disk.sync(fd)
    expect(blocksOf(disk, "/d/f")).toEqual(["AB"])
    // Whole writes land where they were written, not at the start of the file.
    const inPlace = disk.open("/d/f", "r+")
    disk.seek(inPlace, 4096, "start")
    disk.write(inPlace, bytesOf(block("C")))
    expect(blocksOf(disk, "/d/f", { blockSize: Infinity })).toEqual(["AB", "AC"])
  })

  it("an overwrite in place leaves each block old or new, never zeros, and in no particular order", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": block("A") + block("B") })
    const fd = disk.open("/d/f", "r+")
    disk.write(fd, bytesOf(block("X")))
    disk.write(fd, bytesOf(block("Y")))
    // The second block's new data may land while the first's does not.
    expect(blocksOf(disk, "/d/f")).toEqual(["AB", "AY", "XB", "XY"].sort())
    // A commit byte written after the data in one write may land without the data.
    const slot = new PowerLoss.SimulatedDisk({ "/d/slot": "O".repeat(8191) + "0" })
    slot.write(slot.open("/d/slot", "r+"), bytesOf("N".repeat(8191) + "1"))
    expect(slot.crashStates().map((s) => s["/d/slot"]).sort()).toEqual(
      [
        "O".repeat(8191) + "0",
        "N".repeat(4096) + "O".repeat(4095) + "0",
        "O".repeat(4096) + "N".repeat(4095) + "1",
        "N".repeat(8191) + "1"
      ].sort()
    )
  })

  it("a size a write left short carries on: a later overwrite in place may land on it", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": "H".repeat(100) })
    const fd = disk.open("/d/f", "a")
    disk.write(fd, bytesOf("A".repeat(8092)))
    const header = disk.open("/d/f", "r+")
    disk.write(header, bytesOf("N".repeat(10)))
    const contents = disk.crashStates().map((s) => s["/d/f"])
    // The header landed; the append's size did not, or only up to its first block.
    expect(contents).toContain("N".repeat(10) + "H".repeat(90))
    expect(contents).toContain("N".repeat(10) + "H".repeat(90) + "A".repeat(3996))
  })

  it("a write of nothing changes nothing, not even the size", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": "abc" })
    const fd = disk.open("/d/f", "r+")
    disk.seek(fd, 100, "start")
    disk.write(fd, new Uint8Array(0))
    expect(disk.volatile()["/d/f"]).toBe("abc")
    expect(disk.crashStates().map((s) => s["/d/f"])).toEqual(["abc"])
  })

  it("a truncation after an overwrite may land without it", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": block("A") + block("A") })
    const fd = disk.open("/d/f", "r+")
    disk.write(fd, bytesOf(block("B")))
    disk.truncateFd(fd, 4096)
    expect(blocksOf(disk, "/d/f")).toEqual(["A", "AA", "B", "BA"].sort())
  })

  it("entry changes of one directory land in order; a rename lands whole", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/a/x": "x", "/b/": "" })
    disk.makeDirectory("/a/n", false)
    disk.rename("/a/x", "/b/y")
    const names = disk.crashStates().map((s) => Object.keys(s).filter((p) => p !== "/a/" && p !== "/b/").join(","))
    // Never "/b/y" without "/a/n" (same directory order for /a), never both or neither of x and y.
    expect(names.sort()).toEqual(["/a/x", "/a/n/,/a/x", "/a/n/,/b/y"].sort())
    expect(disk.pendingMetadata).toBe(2)
    disk.sync(disk.open("/b", "r"))
    expect(disk.pendingMetadata).toBe(0)
  })

  it("a new directory's content is unreachable until its entry in the parent is durable", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    disk.makeDirectory("/d/sub", false)
    disk.writeFile("/d/sub/f", bytesOf("f"))
    disk.sync(disk.open("/d/sub/f", "r"))
    disk.sync(disk.open("/d/sub", "r"))
    expect(disk.crashStates().some((s) => s["/d/sub/f"] === undefined)).toBe(true)
    disk.sync(disk.open("/d", "r"))
    expect(disk.crashStates()).toEqual([{ "/d/": "", "/d/sub/": "", "/d/sub/f": "f" }])
  })

  it("enumeration fails loudly past its limit", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    for (let i = 0; i < 12; i++) disk.writeFile(`/d/f${i}`, bytesOf("x"))
    expect(() => disk.crashStates({ limit: 1000 })).toThrow(/more than 1000 crash states/)
  })

  it("enumeration stops at its limit before the subsets of many directories exist", () => {
    // One unsynced create in each of 24 directories: 2^24 orders of landing.
    // Built all at once they took gigabytes before the limit was checked.
    const sharded = () => {
      const initial: Record<string, string> = {}
      for (let i = 0; i < 24; i++) initial[`/s${i}/`] = ""
      const disk = new PowerLoss.SimulatedDisk(initial)
      for (let i = 0; i < 24; i++) {
        const fd = disk.open(`/s${i}/f`, "wx")
        disk.write(fd, bytesOf("x"))
        disk.sync(fd)
        disk.close(fd)
      }
      return disk
    }
    const before = process.memoryUsage().heapUsed
    // Independent directories: refused before any state is examined.
    expect(() => sharded().crashStates()).toThrow(/more than 200000 crash states/)
    // Renames tie every directory to the next: no bound is known up front,
    // so the enumeration itself stops at the limit.
    const chained = sharded()
    for (let i = 0; i < 23; i++) chained.rename(`/s${i}/f`, `/s${i + 1}/from${i}`)
    expect(() => chained.crashStates({ limit: 1000 })).toThrow(/more than 1000 crash states/)
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 2 ** 20)
  })

  // From plain JavaScript: a NaN limit switched the limit off, a relative key
  // was taken as absolute, a string was read as { "/0": ... }, an empty key
  // was dropped, content of another type failed at the first read.
  it("options and initial states it cannot mean are refused, saying what is wrong", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    for (const limit of [NaN, 0, -1, 1.5]) {
      expect(() => disk.crashStates({ limit }), String(limit)).toThrow(/limit must be a positive integer or Infinity/)
    }
    expect(disk.crashStates({ limit: Infinity }).length).toBe(1)
    for (const initial of ["x", null, ["/a"]]) {
      expect(() => new PowerLoss.SimulatedDisk(initial as never), String(initial)).toThrow(/expected an object/)
    }
    for (const key of ["data/x", "", "/", "/.."]) {
      expect(() => new PowerLoss.SimulatedDisk({ [key]: "1" }), key).toThrow(/is not an absolute path below \//)
    }
    expect(() => new PowerLoss.SimulatedDisk({ "/a": 123 as never })).toThrow(/must be a string or a Uint8Array/)
  })

  it("a write of more blocks than the limit allows says so and names the way out", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    disk.writeFile("/d/big", new Uint8Array(1024 * 1024).fill(0x61))
    expect(() => disk.crashStates()).toThrow(/too many crash states for \/d\/big.*blockSize/)
    expect(disk.crashStates({ blockSize: 256 * 1024 }).length).toBeGreaterThan(1)
    expect(() => disk.crashStates({ blockSize: 0 })).toThrow(/blockSize must be a positive integer or Infinity/)
    // Counted before anything is made: 17 blocks fit the limit, but not with
    // every size the append may stop at (they took all the machine's memory).
    const appended = new PowerLoss.SimulatedDisk({ "/d/": "" })
    appended.writeFile("/d/f", new Uint8Array(17 * 4096).fill(0x61))
    expect(() => appended.crashStates()).toThrow(/too many crash states for \/d\/f/)
    // And by bytes: whole writes of a large file, or many appends of a few blocks.
    const large = new PowerLoss.SimulatedDisk({ "/d/": "" })
    large.writeFile("/d/f", new Uint8Array(200 * 1024 * 1024))
    expect(() => large.crashStates({ blockSize: Infinity })).toThrow(/would take more than 256 MiB/)
    const appends = new PowerLoss.SimulatedDisk({ "/d/f": "" })
    const fd = appends.open("/d/f", "a")
    for (let i = 0; i < 12; i++) appends.write(fd, new Uint8Array(4 * 4096).fill(0x62))
    expect(() => appends.crashStates()).toThrow(/too many crash states for \/d\/f/)
  })

  it("a tree deeper than 64 directories is enumerated, not taken for a cycle", () => {
    const disk = new PowerLoss.SimulatedDisk({})
    let dir = ""
    for (let i = 0; i < 100; i++) {
      const parent = dir === "" ? "/" : dir
      dir += `/d${i}`
      disk.makeDirectory(dir, false)
      disk.sync(disk.open(parent, "r"))
    }
    const fd = disk.open(`${dir}/f`, "wx")
    disk.write(fd, bytesOf("x"))
    disk.sync(fd)
    disk.close(fd)
    const states = disk.crashStates()
    expect(states.map((s) => s[`${dir}/f`]).sort()).toEqual([undefined, "x"].sort())
    for (const s of states) expect(Object.keys(s).filter((path) => path.endsWith("/")).length).toBe(100)
  })

  it("thousands of pending operations are enumerated without running out of stack", () => {
    // One directory: the states are the prefixes of its 6,000 creations (the
    // search went one call deeper per operation and overflowed here).
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    for (let i = 0; i < 6000; i++) disk.makeDirectory(`/d/x${i}`, false)
    const withFile = (s: PowerLoss.Snapshot) => s["/d/f"]
    const fd = disk.open("/d/f", "wx")
    disk.close(fd)
    // Without the 6,000 names in the snapshots, they are the states with and without `f`.
    const states = disk.crashStates({ omit: (path) => path.startsWith("/d/x") })
    expect(states.map(withFile).sort()).toEqual([undefined, ""].sort())
  })

  it("a tree of 20,000 files with nothing pending is its one state", () => {
    const initial: Record<string, string> = {}
    for (let i = 0; i < 20_000; i++) initial[`/d/f${i}`] = `${i}`
    const states = new PowerLoss.SimulatedDisk(initial).crashStates()
    expect(states.length).toBe(1)
    expect(Object.keys(states[0]).length).toBe(20_001)
    expect(states[0]["/d/f19999"]).toBe("19999")
  })

  it("tens of thousands of pending operations are refused at once, not enumerated for minutes", () => {
    // One directory: 20,001 prefixes, each applied from the start, is some 200 million steps.
    const disk = new PowerLoss.SimulatedDisk({ "/d/": "" })
    for (let i = 0; i < 20_000; i++) disk.close(disk.open(`/d/f${i}`, "wx"))
    expect(() => disk.crashStates({ omit: (path) => path.startsWith("/d/f") })).toThrow(
      /would take more than 100000000 steps.*fsync its directories/
    )
  })

  it("a tree 20,000 directories deep is listed, removed and refused by size, without running out of stack", () => {
    // Built with short paths (each directory moved into a new one), every change durable.
    const disk = new PowerLoss.SimulatedDisk({ "/t0/": "" })
    const sync = (path: string) => {
      const fd = disk.open(path, "r")
      disk.sync(fd)
      disk.close(fd)
    }
    for (let i = 1; i < 20_000; i++) {
      disk.makeDirectory(`/t${i}`, false)
      disk.rename(`/t${i - 1}`, `/t${i}/c`)
      sync("/")
      sync(`/t${i}`)
    }
    const top = "/t19999"
    expect(disk.readDirectory(top, true).length).toBe(19_999)
    // Its paths alone take gigabytes of characters: refused, not a RangeError or an out-of-memory.
    expect(() => disk.crashStates()).toThrow(/would build more than 256 MiB of path names/)
    expect(() => disk.volatile()).toThrow(/would build more than 256 MiB of path names/)
    disk.remove(top, true, false)
    expect(disk.volatile()).toEqual({})
  })

  it("renames chained through many directories: each state has the file in one place", () => {
    const n = 400
    const initial: Record<string, string> = { "/s0/f": "f" }
    for (let i = 1; i <= n; i++) initial[`/s${i}/`] = ""
    const disk = new PowerLoss.SimulatedDisk(initial)
    for (let i = 0; i < n; i++) disk.rename(`/s${i}/f`, `/s${i + 1}/f`)
    // Each rename shares a directory with the next: the states are the n + 1 prefixes.
    const places = disk.crashStates().map((s) => Object.keys(s).filter((path) => s[path] === "f"))
    expect(places.length).toBe(n + 1)
    expect(places.every((found) => found.length === 1)).toBe(true)
    expect(new Set(places.map((found) => found[0])).size).toBe(n + 1)
  })

  it("states too large to hold together are refused before they are made, naming the way out", () => {
    // 40,000 durable files, and 100 new empty ones whose names are not
    // durable: 101 states of 40,000 paths or more each.
    const initial: Record<string, string> = {}
    for (let i = 0; i < 40_000; i++) initial[`/d/f${i}`] = ""
    const disk = new PowerLoss.SimulatedDisk(initial)
    for (let i = 0; i < 100; i++) disk.close(disk.open(`/d/new${i}`, "wx"))
    expect(() => disk.crashStates()).toThrow(/would build more than 4000000 paths.*omit/)
    // Omitting what does not matter is the way out.
    expect(disk.crashStates({ omit: (path) => /^\/d\/f\d/.test(path) }).length).toBe(101)
  })

  it("a failed fsync is reported once by the next fsync of each descriptor open at the time", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": "old" })
    const writer = disk.open("/d/f", "r+")
    const other = disk.open("/d/f", "r")
    disk.write(writer, bytesOf("new"))
    disk.failSync(writer)
    // As Linux reports it: EIO to the other descriptor, once, and then success.
    expect(() => disk.sync(other)).toThrow(expect.objectContaining({ code: "EIO", syscall: "fsync" }))
    disk.sync(other)
    // A descriptor opened after the failure, and the one that reported it, see success.
    disk.sync(disk.open("/d/f", "r"))
    disk.sync(writer)
    // The data is still lost, whichever descriptor syncs.
    expect(disk.crashStates().map((s) => s["/d/f"])).toEqual(["old"])
    // A full device is reported as such to the others too, not as an I/O error.
    disk.write(writer, bytesOf("new"))
    disk.failSync(writer, "ENOSPC")
    expect(() => disk.sync(other)).toThrow(expect.objectContaining({ code: "ENOSPC", syscall: "fsync" }))
  })

  it("a name too long is met in walk order, as Linux meets it", () => {
    const disk = new PowerLoss.SimulatedDisk({ "/d/f": "f" })
    const long = "n".repeat(256)
    const codeOf = (f: () => unknown) => {
      try {
        f()
        return "ok"
      } catch (error) {
        return (error as PowerLoss.ErrnoError).code
      }
    }
    expect({
      // Refused where it stands, even when `..` follows it.
      beforeDotDot: codeOf(() => disk.stat(`/d/${long}/../f`)),
      // A missing directory, or a file, before it is met first.
      belowMissing: codeOf(() => disk.stat(`/missing/${long}`)),
      belowFile: codeOf(() => disk.stat(`/d/f/${long}`)),
      // A missing source is found before the target's name is looked at.
      renameMissing: codeOf(() => disk.rename("/d/missing", `/d/${long}`)),
      // realpath walks a component at a time: a long spelling of a short path resolves.
      realPath: codeOf(() => disk.realPath("/d/" + "./".repeat(2100) + "f"))
    }).toEqual({
      beforeDotDot: "ENAMETOOLONG",
      belowMissing: "ENOENT",
      belowFile: "ENOTDIR",
      renameMissing: "ENOENT",
      realPath: "ok"
    })
  })

  it("paths are walked as Linux walks them: every call fails (or not) as node:fs does on a real disk, leaving the same tree", () => {
    // A file `f`, a directory `e` holding a file `f2` and an empty directory
    // `d3`, and a missing `m`; each path after each of them: a slash, `.`,
    // `..`, a name; and a name too long, with and without a slash. The
    // reference is the real file system, in a temp dir.
    const paths = [
      "f/",
      "f//",
      "f/.",
      "f/..",
      "f/x",
      "f/./",
      "f/x/..",
      "f/../f",
      "./f",
      "m/",
      "m/.",
      "m/..",
      "m/x",
      "m/x/..",
      "e/",
      "e//",
      "e/.",
      "e/..",
      "e/x/..",
      "e/../f",
      "e/./f2",
      "e/f2/",
      "e/f2/.",
      "e/f2/..",
      "e/f2/../f2",
      "e/d3/..",
      "e/d3/../../f",
      ".",
      "..",
      "n".repeat(256),
      `${"n".repeat(256)}/`
    ]
    const calls: ReadonlyArray<
      readonly [string, (p: string, root: string) => unknown, (d: PowerLoss.SimulatedDisk, p: string) => unknown]
    > = [
      ["stat", (p) => nodeFs.statSync(p).isFile(), (d, p) => d.stat(p).type === "File"],
      ["access", (p) => nodeFs.accessSync(p), (d, p) => d.access(p)],
      ["readFile", (p) => nodeFs.readFileSync(p, "latin1"), (d, p) => textOf(d.readFile(p))],
      ["readdir", (p) => nodeFs.readdirSync(p).sort(), (d, p) => d.readDirectory(p, false)],
      ...(["r", "r+", "w", "wx", "a"] as const).map((flag) =>
        [
          `open ${flag}`,
          (p: string) => nodeFs.closeSync(nodeFs.openSync(p, flag)),
          (d: PowerLoss.SimulatedDisk, p: string) => d.close(d.open(p, flag))
        ] as const
      ),
      ["writeFile", (p) => nodeFs.writeFileSync(p, "x"), (d, p) => d.writeFile(p, bytesOf("x"))],
      ["mkdir", (p) => void nodeFs.mkdirSync(p), (d, p) => d.makeDirectory(p, false)],
      ["mkdir -p", (p) => void nodeFs.mkdirSync(p, { recursive: true }), (d, p) => d.makeDirectory(p, true)],
      ["rm", (p) => nodeFs.rmSync(p), (d, p) => d.remove(p, false, false)],
      ["rm -f", (p) => nodeFs.rmSync(p, { force: true }), (d, p) => d.remove(p, false, true)],
      ["rm -rf", (p) => nodeFs.rmSync(p, { force: true, recursive: true }), (d, p) => d.remove(p, true, true)],
      ["rename from", (p, root) => nodeFs.renameSync(p, `${root}/g`), (d, p) => d.rename(p, "/b/r/g")],
      ["rename a file to", (p, root) => nodeFs.renameSync(`${root}/e/f2`, p), (d, p) => d.rename("/b/r/e/f2", p)],
      ["rename a directory to", (p, root) => nodeFs.renameSync(`${root}/e/d3`, p), (d, p) => d.rename("/b/r/e/d3", p)],
      ["rename `f/` to", (p, root) => nodeFs.renameSync(`${root}/f/`, p), (d, p) => d.rename("/b/r/f/", p)]
    ]
    const outcome = (call: () => unknown) => {
      try {
        return { ok: call() ?? null }
      } catch (error) {
        return { code: (error as { code?: string }).code }
      }
    }
    const realTree = (dir: string): Array<string> =>
      nodeFs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort().map((name) => {
        const full = nodePath.join(dir, name)
        return nodeFs.statSync(full).isDirectory() ? `${name}/` : `${name}=${nodeFs.readFileSync(full, "latin1")}`
      })
    const modelTree = (disk: PowerLoss.SimulatedDisk): Array<string> =>
      Object.entries(disk.volatile()).filter(([path]) => path.startsWith("/b/r/") && path !== "/b/r/")
        .map(([path, content]) => path.slice(5) + (path.endsWith("/") ? "" : `=${content}`)).sort()
    const differences: Array<unknown> = []
    for (const [name, real, simulated] of calls) {
      for (const path of paths) {
        // Node's rm empties the directory a path ending in `..` names by paths
        // through it, in the order readdir gives (the file system's): what
        // survives depends on that order.
        if (name === "rm -rf" && path.endsWith("..")) continue
        const base = nodeFs.mkdtempSync(nodePath.join(nodeOs.tmpdir(), "power-loss-walk-"))
        const root = nodePath.join(base, "r")
        try {
          nodeFs.mkdirSync(`${root}/e/d3`, { recursive: true })
          nodeFs.writeFileSync(`${root}/f`, "F")
          nodeFs.writeFileSync(`${root}/e/f2`, "G")
          const disk = new PowerLoss.SimulatedDisk({ "/b/r/f": "F", "/b/r/e/f2": "G", "/b/r/e/d3/": "" })
          const expected = { ...outcome(() => real(`${root}/${path}`, root)), tree: realTree(root) }
          const actual = { ...outcome(() => simulated(disk, `/b/r/${path}`)), tree: modelTree(disk) }
          if (JSON.stringify(actual) !== JSON.stringify(expected)) differences.push({ name, path, expected, actual })
        } finally {
          nodeFs.rmSync(base, { recursive: true, force: true })
        }
      }
    }
    expect(differences).toEqual([])
  })

  it("errors are SystemErrors whose cause carries the errno code", () =>
    Effect.gen(function*() {
      const fs = PowerLoss.fileSystem(new PowerLoss.SimulatedDisk({ "/d/f": "f" }))
      const codes = yield* Effect.all([
        Effect.flip(fs.readFile("/d/missing")),
        Effect.flip(fs.makeDirectory("/d")),
        Effect.flip(fs.readDirectory("/d/f")),
        Effect.flip(fs.remove("/d")),
        Effect.flip(fs.makeDirectory("/d/f/x", { recursive: true })),
        // Linux's limits: 255 bytes a name, 4096 a path with its NUL.
        Effect.flip(fs.readFile("/d/" + "n".repeat(256))),
        Effect.flip(fs.writeFileString("/d" + "/n".repeat(2047), "x"))
      ])
      expect(codes.map((e) => e._tag === "SystemError" && (e.cause as PowerLoss.ErrnoError).code)).toEqual([
        "ENOENT",
        "EEXIST",
        "ENOTDIR",
        "ERR_FS_EISDIR",
        "ENOTDIR",
        "ENAMETOOLONG",
        "ENAMETOOLONG"
      ])
      expect(codes[0]).toMatchObject({ _tag: "SystemError", reason: "NotFound" })
    }).pipe(Effect.runPromise))
})

describe("power loss: durable Client", () => {
  for (const scenario of scenarios(8)) {
    it.effect(`${scenario.name}: old or new at every crash point, the new state once returned`, () =>
      Effect.gen(function*() {
        const verdict = yield* check(scenario, { durable: true })
        expect(verdict.during, JSON.stringify(verdict.during.example)).toMatchObject({ violations: 0 })
        expect(verdict.after, JSON.stringify(verdict.after.example)).toMatchObject({ violations: 0 })
        // Not vacuous: the crash states did differ along the way.
        expect(verdict.during.states).toBeGreaterThan(1)
        expect(verdict.calls).toBeGreaterThanOrEqual(2)
      }))
  }

  it.effect("8 concurrent writes to one directory: each one survives from the moment it returns", () =>
    Effect.gen(function*() {
      const disk = new PowerLoss.SimulatedDisk({ "/data/": "", "/data/f0": "old" })
      const { client } = yield* simulatedClient(disk, { durable: true })
      const lost: Array<string> = []
      yield* Effect.all(
        Array.from({ length: 8 }, (_, i) =>
          client.write(`/data/f${i}`, `new ${i}`).pipe(Effect.tap(() => {
            const states = disk.crashStates({ omit: omitTemp })
            if (states.some((s) => s[`/data/f${i}`] !== `new ${i}`)) lost.push(`/data/f${i}`)
          }))),
        { concurrency: "unbounded", discard: true }
      )
      expect(lost).toEqual([])
      expect(disk.crashStates({ omit: omitTemp })).toEqual([disk.volatile({ omit: omitTemp })])
    }))
})

describe("power loss: Clients on two file systems over one disk", () => {
  const durableOn: ReadonlyArray<readonly [string, (disk: PowerLoss.SimulatedDisk) => FileSystem.FileSystem]> = [
    ["another file system over the disk", (disk) => PowerLoss.fileSystem(disk)],
    ["a FaultFileSystem over the disk", (disk) => FaultFileSystem.wrap(PowerLoss.fileSystem(disk)).fileSystem],
    ["a copy of a file system over the disk", (disk) => ({ ...PowerLoss.fileSystem(disk) })]
  ]
  for (const [name, durableFileSystem] of durableOn) {
    it.effect(`a directory one deletes and creates again is made durable again by the other's durable write (${name})`, () =>
      Effect.gen(function*() {
        const disk = new PowerLoss.SimulatedDisk({ "/data/": "" })
        const manager = yield* LockManager.make
        const on = (fs: FileSystem.FileSystem, durable: boolean) =>
          Client.make({ durable }).pipe(
            Effect.provideService(FileSystem.FileSystem, fs),
            Effect.provideService(LockManager.LockManager, manager),
            Effect.orDie
          )
        const durable = yield* on(durableFileSystem(disk), true)
        const other = yield* on(PowerLoss.fileSystem(disk), false)
        yield* durable.write("/data/x/f1", "one")
        yield* other.delete("/data/x", { recursive: true })
        yield* other.makeDirectory("/data/x")
        yield* durable.write("/data/x/f2", "two")
        // Returned, so durable: in every state a power cut can leave.
        const states = disk.crashStates({ omit: omitTemp })
        expect(states.filter((state) => state["/data/x/f2"] !== "two")).toEqual([])
      }))
  }
})

describe("power loss: non-durable Client", () => {
  it.effect("what survives without fsync (printed as a table)", () =>
    Effect.gen(function*() {
      const rows: Array<readonly [string, Verdict]> = []
      // 3 concurrent writers: without fsync every file's data stays pending and the state space grows as 3^n.
      for (const scenario of scenarios(3)) rows.push([scenario.name, yield* check(scenario, { durable: false })])
      const width = Math.max(...rows.map(([name]) => name.length))
      console.log(
        [
          "durable: false, power loss:",
          ...rows.map(([name, v]) =>
            `  ${name.padEnd(width)}  old-or-new: ${describeTally(v.during)}; after success: ${describeTally(v.after)}`
          )
        ].join("\n")
      )
      const summary = Object.fromEntries(
        rows.map(([name, v]) => [name, { oldOrNew: v.during.violations === 0, survives: v.after.violations === 0 }])
      )
      // Only renames and deletes of existing, durable files keep old-or-new: they move or drop an inode whose
      // data is on disk. Nothing is promised to survive a returned call.
      const entry = (oldOrNew: boolean) => ({ oldOrNew, survives: false })
      expect(summary).toEqual({
        "write (new file)": entry(false),
        "write (replace)": entry(false),
        "write (missing parents)": entry(false),
        "sink": entry(false),
        "modify": entry(false),
        "writeJson": entry(false),
        "copy (over a file)": entry(false),
        "copy (missing parents)": entry(false),
        "makeDirectory (missing parents)": entry(true),
        "rename (same directory, over a file)": entry(true),
        "rename (across directories, missing parents)": entry(false),
        "delete (file)": entry(true),
        "delete (directory, recursive)": entry(true),
        "3 concurrent writes": entry(false)
      })
      const verdict = (name: string) => rows.find(([n]) => n === name)![1]
      // The rename landed, the data did not: an empty file, or zeros of the new size.
      const torn = verdict("write (replace)").during.violating.map((s) => s["/data/target"])
      expect(torn.sort()).toEqual(["", "\0".repeat("new, longer content".length)].sort())
      // The move landed in /data/src and /data/dst/sub, the new directories' entries did not: the file is lost.
      expect(verdict("rename (across directories, missing parents)").during.violating).toContainEqual({
        "/data/": "",
        "/data/keep": "keep",
        "/data/src/": ""
      })
    }))

  it.effect("a replaced file of more than one block may come back partly written", () =>
    Effect.gen(function*() {
      const disk = new PowerLoss.SimulatedDisk({ "/data/target": "old" })
      const { client } = yield* simulatedClient(disk, { durable: false })
      yield* client.write("/data/target", "A".repeat(4096) + "B".repeat(4096))
      const contents = new Set(disk.crashStates({ omit: omitTemp }).map((s) => s["/data/target"]))
      // The rename landed; of the data, the first block only, the second only, or the size cut at the first.
      expect(contents).toContain("A".repeat(4096) + "\0".repeat(4096))
      expect(contents).toContain("\0".repeat(4096) + "B".repeat(4096))
      expect(contents).toContain("A".repeat(4096))
      expect(contents).toContain("old")
    }))
})

describe("power loss: the checker catches broken durability", () => {
  const replace = scenarios(1).find((scenario) => scenario.name === "write (replace)")!

  it.effect("(a) no directory fsync: a returned write may be lost (the rename did not land)", () =>
    Effect.gen(function*() {
      const verdict = yield* check(replace, { durable: true, wrap: noDirectorySync })
      expect(verdict.during.violations).toBe(0)
      expect(verdict.after.violations).toBeGreaterThan(0)
      expect(verdict.after.example?.["/data/target"]).toBe("old content")
    }))

  it.effect("(b) no file fsync: zeros or an empty file, during and after", () =>
    Effect.gen(function*() {
      const verdict = yield* check(replace, { durable: true, wrap: noFileSync })
      expect(verdict.during.violations).toBeGreaterThan(0)
      expect(verdict.after.violations).toBeGreaterThan(0)
    }))

  it.effect("(c) rename before the data fsync: a crash in between leaves a torn target", () =>
    Effect.gen(function*() {
      const verdict = yield* check(replace, { durable: true, wrap: renameBeforeSync })
      expect(verdict.during.violations).toBeGreaterThan(0)
      expect(verdict.during.example?.["/data/target"]).toMatch(/^\0*$/)
      // Everything is synced by the time it returns: only the in-flight check can see this one.
      expect(verdict.after.violations).toBe(0)
    }))
})

// A directory that exists is not proof its entry is durable: its creator may not have fsynced its parent yet,
// or was interrupted (or crashed) in between. These caught that bug; the Client now makes the path of every
// directory it commits into durable (once per directory, cached) before the rename.
describe("power loss: concurrent directory creation", () => {
  it.effect("a write into a directory another writer just created survives once it returned", () =>
    Effect.gen(function*() {
      const disk = new PowerLoss.SimulatedDisk({ "/data/": "" })
      const reached = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const { client } = yield* simulatedClient(disk, {
        durable: true,
        wrap: pauseAfterMakeDirectory("/data/new", reached, release)
      })
      // A creates /data/new and is about to fsync /data (held here, as a slow scheduler would).
      const a = yield* Effect.fork(client.write("/data/new/a", "a"))
      yield* Deferred.await(reached)
      // B writes into /data/new meanwhile and returns.
      yield* client.write("/data/new/b", "b")
      const lost = disk.crashStates({ omit: omitTemp }).filter((s) => s["/data/new/b"] !== "b")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(a)
      expect(lost).toEqual([])
    }))

  it.effect("a write into a directory whose creator was interrupted survives once it returned", () =>
    Effect.gen(function*() {
      const disk = new PowerLoss.SimulatedDisk({ "/data/": "" })
      const reached = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const { client } = yield* simulatedClient(disk, {
        durable: true,
        wrap: pauseAfterMakeDirectory("/data/new", reached, release)
      })
      // A creates /data/new and is interrupted (a timeout, say) before it fsyncs /data.
      const a = yield* Effect.fork(client.write("/data/new/a", "a"))
      yield* Deferred.await(reached)
      yield* Fiber.interrupt(a)
      // Later, with nothing else in flight, B writes into /data/new and returns.
      yield* client.write("/data/new/b", "b")
      expect(disk.volatile({ omit: omitTemp })).toEqual({ "/data/": "", "/data/new/": "", "/data/new/b": "b" })
      const lost = disk.crashStates({ omit: omitTemp }).filter((s) => s["/data/new/b"] !== "b")
      // The one missing step is an fsync of /data (the entry of /data/new): with it, B survives.
      disk.sync(disk.open("/data", "r"))
      expect(disk.crashStates({ omit: omitTemp }).filter((s) => s["/data/new/b"] !== "b")).toEqual([])
      expect(lost).toEqual([])
    }))
})
