/**
 * The Client against hostile names, links and input: names one character off
 * its temp names, symbolic links out of a confined root and round loops, huge
 * chunk sizes, long multibyte names, a directory moved into itself through a
 * link, and another process swapping a directory for a link while writes run.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, Exit, Fiber, Layer, Option, Queue, Schedule, Schema, Stream } from "effect"
import * as childProcess from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import type * as Client from "../src/Client.js"
import { make as makeKeyValueStore } from "../src/internal/keyValueStore.js"
import { readAll } from "../src/internal/pin.js"
import { leftoverName, makeClient, snapshot, tempDir, tempFiles } from "./utils/client.js"
import { expectIdle, waitUntil } from "./utils/locks.js"
import { mulberry32 } from "./utils/random.js"
import * as Recording from "./utils/recordingFileSystem.js"

const bytesOf = (s: string) => new TextEncoder().encode(s)

/** The tag and reason of a failed effect's typed error, or a description of what happened instead. */
const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return "succeeded"
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) return `no typed error: ${Cause.pretty(exit.cause)}`
    const error = failure.value as { _tag: string; reason?: string; argument?: string }
    return [error._tag, error.reason ?? error.argument].filter((x) => x !== undefined).join(" ")
  })

/**
 * The name the Client really gives the temp file of `dir/<name>`: a write
 * through a recording file system, whose `writeFile` (exclusive create) names
 * it. The written file is removed again.
 */
const realTempName = (dir: string, name: string, suffix = "tmp") =>
  Effect.gen(function*() {
    const { fs, log } = yield* Recording.makeNode()
    const { client } = yield* makeClient({ tempSuffix: suffix }, Layer.succeed(FileSystem.FileSystem, fs))
    yield* client.write(`${dir}/${name}`, "x")
    const created = (yield* log.events).find((event) => event.startsWith("writeFile ") && event.includes(" wx "))
    nodeFs.rmSync(`${dir}/${name}`)
    const path = created!.slice("writeFile ".length, created!.lastIndexOf(" wx "))
    expect(nodePath.dirname(path)).toBe(dir)
    return nodePath.basename(path)
  })

// A temp name, by the documented rule: ".", the name part, ".", a token of 20
// characters from [0-9a-z] whose last 8 check the rest, ".", the suffix.
const TOKEN = 20
const TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"

/** Every way to be one step off the rule, starting from a real temp name. */
const nearMisses = (valid: string, suffix: string): Array<string> => {
  const end = valid.length - suffix.length - 1
  const token = valid.slice(end - TOKEN, end)
  const name = valid.slice(1, end - TOKEN - 1)
  expect(`.${name}.${token}.${suffix}`).toBe(valid)
  const make = (n: string, t: string, s: string) => `.${n}.${t}.${s}`
  const at = (t: string, i: number, c: string) => t.slice(0, i) + c + t.slice(i + 1)
  const out: Array<string> = []
  // Each token character changed to another allowed one: the check no longer holds.
  for (let i = 0; i < TOKEN; i++) {
    out.push(make(name, at(token, i, TOKEN_CHARS[(TOKEN_CHARS.indexOf(token[i]) + 17) % 36]), suffix))
  }
  // A character outside [0-9a-z] in the token.
  for (const c of ["A", "Z", "-", "_", ".", " ", "é"]) out.push(make(name, at(token, 7, c), suffix))
  // The token one shorter or longer at either end, and the former 12-character one.
  out.push(make(name, token.slice(1), suffix), make(name, token.slice(0, -1), suffix))
  out.push(make(name, `0${token}`, suffix), make(name, `${token}0`, suffix), make(name, token.slice(0, 12), suffix))
  // The name part one character off.
  out.push(make(`${name}x`, token, suffix), make(`x${name}`, token, suffix), make(name.slice(1) || "y", token, suffix))
  // A dot missing or doubled.
  out.push(valid.slice(1), `.${valid}`, `.${name}${token}.${suffix}`, `.${name}.${token}${suffix}`)
  out.push(`.${name}..${token}.${suffix}`, `.${name}.${token}..${suffix}`, `.${name}_${token}.${suffix}`)
  // The suffix one character off, or another case.
  out.push(make(name, token, suffix.slice(1)), make(name, token, suffix.slice(0, -1)), make(name, token, `${suffix}x`))
  out.push(make(name, token, `x${suffix}`), make(name, token, suffix.toUpperCase()))
  // Something before or after.
  out.push(`${valid}~`, `${valid}.bak`, `x${valid}`)
  return Array.from(new Set(out)).filter((n) => n !== valid && n.length > 0)
}

/** User files from the issue that looked like temp files to `recover` and `collect`. */
const lookalikes = [
  ".notes.202401011200.tmp",
  ".x.abcdefghijkl.tmp",
  ".draft.000000000001.tmp",
  ".report.json.abcdefghijklmnopqrst.tmp",
  ".x.00000000000000000000.tmp"
]

describe("temp names are unmistakable", () => {
  it.scoped("a leftover named by an earlier version is still recognised and removed by recover (the check is stable)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const leftovers = [
        // Made by the code of 2026-12-03 05:00 (Math.random and Number#toString(36)).
        ".report.json.n1hc84k1hpb9g24sw9gd.tmp",
        // Made by the code of 2026-12-03 15:35 (names joined, then normalised, before hashing).
        ".doc.bin.b0pfpymcawxeck2vfkpa.tmp",
        ".caf\u00e9.txt.3npytowg883di9geb4ts.tmp",
        // The same name stored decomposed, as macOS does: the check is computed in NFC.
        ".cafe\u0301.txt.3npytowg883di9geb4ts.tmp",
        ".\u65e5\u672c\u8a9e\u306e\u30d5\u30a1\u30a4\u30eb\u540d.json.4g9a4uzrf90md4aimqvf.tmp",
        ".\u{1f4be} disk.rbl13w610zpt9p9ipesf.tmp"
      ]
      const parted = ".\u65e5\u672c\u8a9e.txt.onwl4y0tjbmfwnr0zkfb.part"
      // One check character off: a user's file.
      const forged = ".doc.bin.b0pfpymcawxeck2vfkpb.tmp"
      for (const name of [...leftovers, parted, forged]) nodeFs.writeFileSync(`${dir}/${name}`, "partial")
      const { client } = yield* makeClient()
      const { client: parts } = yield* makeClient({ tempSuffix: "part" })
      expect((yield* client.recover(dir)).map((p) => nodePath.basename(p)).sort()).toEqual([...leftovers].sort())
      expect((yield* parts.recover(dir)).map((p) => nodePath.basename(p))).toEqual([parted])
      expect(nodeFs.readdirSync(dir)).toEqual([forged])
    }))

  it("temp names follow the rule: the check is cyrb53 of name/random/suffix in NFC, as 8 base-36 digits", () => {
    // A reference model of the check, written from the rule.
    const cyrb53 = (text: string) => {
      let h1 = 0xdeadbeef
      let h2 = 0x41c6ce57
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i)
        h1 = Math.imul(h1 ^ c, 2654435761)
        h2 = Math.imul(h2 ^ c, 1597334677)
      }
      h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
      h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
      return 4294967296 * (2097151 & h2) + (h1 >>> 0)
    }
    const expectedCheck = (namePart: string, random: string, suffix: string) =>
      (cyrb53(`${namePart}/${random}/${suffix}`.normalize("NFC")) % 36 ** 8).toString(36).padStart(8, "0")
    const next = mulberry32(0x7e)
    const names = ["doc.bin", "caf\u00e9", "cafe\u0301", "\u{1f4be} disk", "x".repeat(40), "a.b.c"]
    const suffixes = ["tmp", "partial", "p\u00e4rt", "a.b"]
    for (let i = 0; i < 400; i++) {
      const name = names[Math.floor(next() * names.length)]
      const suffix = suffixes[Math.floor(next() * suffixes.length)]
      const temp = leftoverName(name, suffix)
      const match = /^\.(.+)\.([0-9a-z]{12})([0-9a-z]{8})\.(.+)$/su.exec(temp)
      expect(match, temp).not.toBeNull()
      const [, namePart, random, check, suffixPart] = match!
      expect([namePart, suffixPart]).toEqual([name, suffix])
      expect(check, temp).toBe(expectedCheck(namePart, random, suffix))
    }
  })

  for (const suffix of ["tmp", "part", "x.y"]) {
    it.scoped(`names one step off a temp name are user files (tempSuffix ${JSON.stringify(suffix)})`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { client, manager } = yield* makeClient({ tempSuffix: suffix })
        const valid = yield* realTempName(dir, "doc.json", suffix)
        const names = [...nearMisses(valid, suffix), ...(suffix === "tmp" ? lookalikes : [])]
        expect(names.length).toBeGreaterThan(40)
        nodeFs.mkdirSync(`${dir}/sub`)
        for (const name of names) yield* client.write(`${dir}/sub/${name}`, `user data ${name}`)
        // Real leftovers beside them: a crashed writer's temp files.
        nodeFs.writeFileSync(`${dir}/sub/${valid}`, "partial")
        const other = yield* realTempName(`${dir}/sub`, "other", suffix)
        nodeFs.writeFileSync(`${dir}/sub/${other}`, "partial")

        expect((yield* client.collect(`${dir}/sub`)).sort()).toEqual([...names].sort())
        expect((yield* client.collect(dir, { recursive: true })).sort()).toEqual(
          ["sub", ...names.map((n) => `sub/${n}`)].sort()
        )
        expect((yield* client.collectEntries(`${dir}/sub`)).map((e) => e.name).sort()).toEqual([...names].sort())
        expect((yield* client.collect(`${dir}/sub`, { includeTemp: true })).length).toBe(names.length + 2)
        expect((yield* client.recover(dir, { recursive: true })).sort()).toEqual(
          [`${dir}/sub/${valid}`, `${dir}/sub/${other}`].sort()
        )
        for (const name of names) expect(nodeFs.readFileSync(`${dir}/sub/${name}`, "utf8")).toBe(`user data ${name}`)
        expect(nodeFs.readdirSync(`${dir}/sub`).length).toBe(names.length)
        yield* expectIdle(manager)
      }))
  }

  it.scoped("the Client refuses to create a name of a temp file's form, for any suffix, and changes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const mine = yield* realTempName(dir, "doc", "tmp")
      const theirs = yield* realTempName(dir, "doc", "part")
      // Spelled with a lone surrogate, which the system stores as U+FFFD: a temp name there.
      const lone = (yield* realTempName(dir, "a\uFFFD", "tmp")).replace("\uFFFD", "\uD800")
      nodeFs.writeFileSync(`${dir}/f`, "f")
      const before = snapshot(dir)
      for (const name of [mine, theirs, lone]) {
        const target = `${dir}/${name}`
        const refused = "InvalidPathError TempName"
        expect(yield* failureOf(client.write(target, "x"))).toBe(refused)
        expect(yield* failureOf(client.write(`${target}/below`, "x"))).toBe(refused)
        expect(yield* failureOf(client.write(`${dir}/a/${name}/b/c`, "x"))).toBe(refused)
        expect(yield* failureOf(Stream.run(Stream.make(bytesOf("x")), client.sink(target)))).toBe(refused)
        expect(yield* failureOf(client.modify(target, () => "x"))).toBe(refused)
        expect(yield* failureOf(client.writeJson(target, Schema.Number, 1))).toBe(refused)
        expect(yield* failureOf(client.modifyJson(target, Schema.Number, () => 1))).toBe(refused)
        expect(yield* failureOf(client.rename(`${dir}/f`, target))).toBe(refused)
        expect(yield* failureOf(client.copy(`${dir}/f`, target))).toBe(refused)
        expect(yield* failureOf(client.copy(`${dir}/f`, `${dir}/a/${name}/b`))).toBe(refused)
        expect(yield* failureOf(client.makeDirectory(target))).toBe(refused)
      }
      expect(snapshot(dir)).toEqual(before)
      // A leftover can still be read, rescued by a rename, or deleted.
      nodeFs.writeFileSync(`${dir}/${mine}`, "partial")
      expect(new TextDecoder().decode(yield* client.read(`${dir}/${mine}`))).toBe("partial")
      yield* client.rename(`${dir}/${mine}`, `${dir}/rescued`)
      expect(nodeFs.readFileSync(`${dir}/rescued`, "utf8")).toBe("partial")
      nodeFs.writeFileSync(`${dir}/${theirs}`, "partial")
      yield* client.delete(`${dir}/${theirs}`)
      yield* expectIdle(manager)
    }))

  it.scoped(
    "a huge segment of dots and token-like runs is checked in linear time, then refused by the system",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { client, manager } = yield* makeClient()
        // Every dot could start a suffix: checking each against the whole name
        // took 39 s of blocked event loop for 168 KB (quadratic).
        const segment = "." + "abcdefghijklmnopqrst.".repeat(16_000) + "x"
        expect(yield* failureOf(client.write(`${dir}/${segment}`, "x"))).toBe("FileSystemError NameTooLong")
        expect(nodeFs.readdirSync(dir)).toEqual([])
        yield* expectIdle(manager)
      }),
    30_000
  )

  it.scoped("recover removes only regular files: not a directory or a link named like a temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const asDirectory = yield* realTempName(dir, "d")
      const asLink = yield* realTempName(dir, "l")
      nodeFs.mkdirSync(`${dir}/${asDirectory}`)
      nodeFs.writeFileSync(`${dir}/target`, "t")
      nodeFs.symlinkSync(`${dir}/target`, `${dir}/${asLink}`)
      expect((yield* client.collect(dir)).sort()).toEqual([asDirectory, asLink, "target"].sort())
      expect(yield* client.recover(dir, { recursive: true })).toEqual([])
      expect(nodeFs.readlinkSync(`${dir}/${asLink}`)).toBe(`${dir}/target`)
      expect(nodeFs.statSync(`${dir}/${asDirectory}`).isDirectory()).toBe(true)
      yield* expectIdle(manager)
    }))

  it.scoped("a tempSuffix that cannot be read back or leaves no room for the name is refused", () =>
    Effect.gen(function*() {
      expect(yield* failureOf(makeClient({ tempSuffix: "x".repeat(65) }))).toBe("InvalidPathError InvalidName")
      expect(yield* failureOf(makeClient({ tempSuffix: "t\uD800" }))).toBe("InvalidPathError InvalidName")
      expect(yield* failureOf(makeClient({ tempSuffix: "é".repeat(32) }))).toBe("succeeded")
    }))
})

describe("recursive walks stay inside the directory and do not follow links", () => {
  for (const confined of [true, false]) {
    it.scoped(
      `collect, collectEntries and recover list a link but never descend into it (${
        confined ? "confined" : "unconfined"
      })`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const root = `${dir}/root`
          const outside = `${dir}/outside`
          nodeFs.mkdirSync(`${root}/a/b`, { recursive: true })
          nodeFs.mkdirSync(`${outside}/private`, { recursive: true })
          nodeFs.writeFileSync(`${outside}/private/secret.txt`, "secret")
          const outsideLeftover = `${outside}/${leftoverName("backup")}`
          nodeFs.writeFileSync(outsideLeftover, "not yours")
          const insideLeftover = `${root}/a/b/${leftoverName("x")}`
          nodeFs.writeFileSync(insideLeftover, "partial")
          nodeFs.writeFileSync(`${root}/a/file`, "f")
          nodeFs.symlinkSync(outside, `${root}/link`)
          nodeFs.symlinkSync("..", `${root}/a/up`)
          nodeFs.symlinkSync(`${root}/a`, `${root}/alias`)
          nodeFs.symlinkSync(`${root}/gone`, `${root}/dangling`)
          // A loop no `stat` can follow: a link, as a dangling one, not a failure of the listing.
          nodeFs.symlinkSync("loop", `${root}/a/loop`)
          const { client, manager } = yield* makeClient(confined ? { root } : {})

          const expected = ["a", "a/b", "a/file", "a/loop", "a/up", "alias", "dangling", "link"]
          expect((yield* client.collect(root, { recursive: true })).sort()).toEqual(expected)
          expect((yield* client.collectEntries(root, { recursive: true })).sort((x, y) => x.name.localeCompare(y.name)))
            .toEqual([
              { name: "a", type: "Directory" },
              { name: "a/b", type: "Directory" },
              { name: "a/file", type: "File" },
              { name: "a/loop", type: "SymbolicLink" },
              { name: "a/up", type: "Directory" },
              { name: "alias", type: "Directory" },
              { name: "dangling", type: "SymbolicLink" },
              { name: "link", type: "Directory" }
            ])
          expect((yield* client.collect(root, { recursive: true, includeTemp: true })).sort()).toEqual(
            [...expected, `a/b/${nodePath.basename(insideLeftover)}`].sort()
          )
          expect(yield* client.recover(root, { recursive: true })).toEqual([insideLeftover])
          expect(nodeFs.readFileSync(outsideLeftover, "utf8")).toBe("not yours")
          // Listing through the link itself (not recursively into another link) still works.
          expect((yield* client.collect(`${root}/a`, { recursive: true })).sort()).toEqual(["b", "file", "loop", "up"])
          if (!confined) {
            // (The leftover there is hidden, as any.)
            expect((yield* client.collect(`${root}/link`, { recursive: true })).sort()).toEqual(
              ["private", "private/secret.txt"]
            )
          } else {
            expect(yield* failureOf(client.collect(`${root}/link`, { recursive: true }))).toBe(
              "InvalidPathError OutsideRoot"
            )
            expect(yield* failureOf(client.recover(`${root}/link`, { recursive: true }))).toBe(
              "InvalidPathError OutsideRoot"
            )
          }
          expect(nodeFs.readFileSync(outsideLeftover, "utf8")).toBe("not yours")
          yield* expectIdle(manager)
        })
    )
  }

  it.scoped("a deep tree is listed breadth first, each directory in the order the file system gives", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/a/b/c`, { recursive: true })
      nodeFs.mkdirSync(`${dir}/z`)
      nodeFs.writeFileSync(`${dir}/a/b/c/f`, "f")
      const { client } = yield* makeClient()
      const names = yield* client.collect(dir, { recursive: true })
      expect(names.sort()).toEqual(["a", "a/b", "a/b/c", "a/b/c/f", "z"])
      expect(names.indexOf("a/b")).toBeLessThan(names.indexOf("a/b/c"))
    }))
})

/** A file system whose files record the size of every buffer `read` is given. */
const recordingReads = Effect.gen(function*() {
  const real = yield* FileSystem.FileSystem
  const sizes: Array<number> = []
  const wrap = (file: FileSystem.File): FileSystem.File => ({
    [FileSystem.FileTypeId]: FileSystem.FileTypeId,
    fd: file.fd,
    get stat() {
      return file.stat
    },
    seek: (offset, from) => file.seek(offset, from),
    sync: file.sync,
    read: (buffer) => Effect.suspend(() => (sizes.push(buffer.length), file.read(buffer))),
    readAlloc: (size) => file.readAlloc(size),
    truncate: (length) => file.truncate(length),
    write: (buffer) => file.write(buffer),
    writeAll: (buffer) => file.writeAll(buffer)
  })
  const fs = FileSystem.make({ ...real, open: (path, options) => Effect.map(real.open(path, options), wrap) })
  return { fs, sizes }
}).pipe(Effect.provide(NodeFileSystem.layer))

/** `body` on a Client by path, then on one confined to the test's directory; no lock is left either way. */
const byPathAndConfined = (
  title: string,
  body: (dir: string, client: Client.ClientService) => Effect.Effect<void, unknown>
) => {
  for (const confined of [false, true]) {
    it.scoped(`${title} (${confined ? "confined" : "by path"})`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { client, manager } = yield* makeClient(confined ? { root: dir } : {})
        yield* body(dir, client)
        yield* expectIdle(manager)
      }))
  }
}

/** A sparse file of `size` bytes: no space taken. */
const sparse = (path: string, size: number): void => {
  nodeFs.writeFileSync(path, "")
  nodeFs.truncateSync(path, size)
}

describe("files too large to read whole", () => {
  byPathAndConfined(
    "read, readJson and modify of a file over 2 GiB fail typed, before allocating",
    (dir, client) =>
      Effect.gen(function*() {
        // Just past the 2 GiB Node reads whole, and past what a typed array can hold.
        for (const size of [2 ** 31, 5 * 2 ** 30]) {
          const big = `${dir}/big-${size}`
          sparse(big, size)
          for (
            const operation of [
              client.read(big),
              client.readJson(big, Schema.Unknown),
              client.modify(big, () => "x")
            ]
          ) {
            const error = yield* Effect.flip(operation as Effect.Effect<unknown, Error>)
            expect(error).toMatchObject({ _tag: "FileSystemError", path: big, code: "ERR_FS_FILE_TOO_LARGE" })
            expect(error.message).toContain("stream it instead")
          }
          expect(nodeFs.statSync(big).size).toBe(size)
        }
      })
  )
})

describe("JSON nested deeper than the stack", () => {
  // JSON.parse takes it, a recursive schema recursed out of the stack: a defect.
  it.scoped("does not match a recursive schema: DecodeError, the file unchanged and nothing held", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const deep = "[".repeat(200_000) + "]".repeat(200_000)
      nodeFs.writeFileSync(`${dir}/deep.json`, deep)
      const { client, manager } = yield* makeClient()
      interface Tree extends ReadonlyArray<Tree> {}
      const TreeS: Schema.Schema<Tree> = Schema.Array(Schema.suspend(() => TreeS))
      expect(yield* failureOf(client.readJson(`${dir}/deep.json`, TreeS))).toBe("DecodeError Decode")
      expect(yield* failureOf(client.modifyJson(`${dir}/deep.json`, TreeS, (t) => t))).toBe("DecodeError Decode")
      expect(nodeFs.readFileSync(`${dir}/deep.json`, "utf8")).toBe(deep)
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))
})

describe("text longer than a string can hold", () => {
  byPathAndConfined(
    "readString, readJson, modifyJson and the key-value store's get and modify fail typed",
    (dir, client) =>
      Effect.gen(function*() {
        // 2^29 zero bytes are 2^29 characters, past V8's longest string (2^29 - 24).
        const size = 2 ** 29
        const big = `${dir}/kv/big`
        nodeFs.mkdirSync(`${dir}/kv`)
        sparse(big, size)
        for (
          const operation of [
            client.readString(big),
            client.readJson(big, Schema.Unknown),
            client.modifyJson(big, Schema.Unknown, () => Effect.succeed("x"))
          ]
        ) {
          const error = yield* Effect.flip(operation as Effect.Effect<unknown, Error>)
          expect(error).toMatchObject({ _tag: "FileSystemError", path: big, code: "ERR_STRING_TOO_LONG" })
          expect(error.message).toContain("read the bytes or stream them")
        }
        // The store's file for key "big" is `big` itself.
        const store = yield* makeKeyValueStore(client, { directory: `${dir}/kv` })
        for (const operation of [store.get("big"), store.modify("big", () => "x")]) {
          const error = yield* Effect.flip(operation as Effect.Effect<unknown, Error>)
          expect(error).toMatchObject({ _tag: "SystemError", module: "KeyValueStore" })
          expect(error.cause).toMatchObject({ _tag: "FileSystemError", code: "ERR_STRING_TOO_LONG" })
        }
        expect(nodeFs.statSync(big).size).toBe(size)
      })
  )
})

describe("files whose size says nothing (0: /proc, or still being written)", () => {
  /** A file that says its size is 0 and reads `chunks` chunks of 1 KiB (chunk i filled with i), then its end. */
  const sizeless = (chunks: number) => {
    let next = 0
    return {
      stat: Effect.succeed({ size: FileSystem.Size(0) }),
      readAlloc: () =>
        Effect.sync(() => next < chunks ? Option.some(new Uint8Array(1024).fill(next++ % 256)) : Option.none())
    } as unknown as FileSystem.File
  }

  it.effect("are read to their end; one that goes on past the bound fails typed instead of growing memory", () =>
    Effect.gen(function*() {
      const whole = yield* readAll("Client.read", "/log", sizeless(3), 4096)
      expect([whole.length, whole[0], whole[1024], whole[2047], whole[2048], whole[3071]]).toEqual([
        3072,
        0,
        1,
        1,
        2,
        2
      ])
      // Exactly at the bound is fine, one chunk past it is not (and an endless one ends).
      expect((yield* readAll("Client.read", "/log", sizeless(4), 4096)).length).toBe(4096)
      for (const chunks of [5, Infinity]) {
        const error = yield* Effect.flip(readAll("Client.read", "/log", sizeless(chunks), 4096))
        expect(error).toMatchObject({ _tag: "FileSystemError", path: "/log", code: "ERR_FS_FILE_TOO_LARGE" })
      }
    }))
})

describe("options from plain JavaScript", () => {
  // Options typed as objects of booleans and numbers reach the Client from
  // JavaScript as anything: a string "false" is truthy, a number has no fields.
  it.scoped("that are not an object, or a flag that is not a boolean, fail typed before any lock or I/O", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/f`, "kept")
      nodeFs.writeFileSync(`${dir}/f`, "kept")
      const { client, manager } = yield* makeClient()
      const before = snapshot(dir)
      // Another fiber holds the whole directory: an operation that took a lock would wait.
      const taken = yield* Deferred.make<void>()
      const holder = yield* Effect.forkScoped(
        Effect.scoped(
          Effect.zipRight(manager.lock(dir, "write"), Effect.zipRight(Deferred.succeed(taken, void 0), Effect.never))
        )
      )
      yield* Deferred.await(taken)
      const bad = (options: unknown) => options as never
      const cases: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown>]> = [
        ["options", client.write(`${dir}/new`, "x", bad(5))],
        ["options", client.write(`${dir}/f`, "x", bad("0o600"))],
        ["options", Stream.run(Stream.make(bytesOf("x")), client.sink(`${dir}/new`, bad(5)))],
        ["options", client.copy(`${dir}/f`, `${dir}/new`, bad(true))],
        ["options", client.modify(`${dir}/f`, () => "x", bad(5))],
        ["options", client.writeJson(`${dir}/new`, Schema.Unknown, 1, bad(5))],
        ["options", client.delete(`${dir}/f`, bad("force"))],
        ["options.recursive", client.delete(`${dir}/d`, bad({ recursive: "yes" }))],
        ["options.force", client.delete(`${dir}/f`, bad({ force: 1 }))],
        ["options", client.collect(dir, bad(1))],
        ["options.recursive", client.collect(dir, bad({ recursive: 1 }))],
        ["options.includeTemp", client.collectEntries(dir, bad({ includeTemp: "true" }))],
        ["options.followLinks", client.collect(dir, bad({ followLinks: "false" }))],
        ["options", client.recover(dir, bad("recursive"))],
        ["options.recursive", client.recover(dir, bad({ recursive: "false" }))]
      ]
      for (const [argument, operation] of cases) {
        expect(yield* failureOf(Effect.timeout(operation, "5 seconds"))).toBe(`InvalidArgumentError ${argument}`)
      }
      expect(snapshot(dir)).toEqual(before)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })
      yield* Fiber.interrupt(holder)
      yield* expectIdle(manager)
      // Absent (undefined or null) is the defaults.
      expect(yield* client.collect(dir, bad(null))).toEqual(["d", "f"])
      yield* client.write(`${dir}/f`, "new", bad(null))
      expect(nodeFs.readFileSync(`${dir}/f`, "utf8")).toBe("new")
    }))

  it.effect("a Client built with options that are not an object, or a flag that is not a boolean, is refused", () =>
    Effect.gen(function*() {
      const bad = (options: unknown) => options as Client.ClientOptions
      expect(yield* failureOf(makeClient(bad(5)))).toBe("InvalidArgumentError options")
      expect(yield* failureOf(makeClient(bad({ durable: "false" })))).toBe("InvalidArgumentError options.durable")
      expect(yield* failureOf(makeClient(bad({ groupCommit: 0 })))).toBe("InvalidArgumentError options.groupCommit")
      const { client } = yield* makeClient(bad(null))
      expect(client.durable).toBe(false)
      // The settings of a constructor concern no path: the message shows none.
      expect((yield* Effect.flip(makeClient(bad({ durable: "false" })))).message).toBe(
        "Client.make: invalid options.durable: expected a boolean, got \"false\""
      )
    }))
})

describe("stream: chunk sizes", () => {
  it.scoped("options are read once: a getter that answers otherwise later cannot bypass the check", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/f`, "0123456789")
      const { client } = yield* makeClient()
      let reads = 0
      // 2 when checked; 0 (refused) or 3 afterwards: the stream was empty, or cut otherwise.
      const options = {
        get chunkSize() {
          return reads++ === 0 ? 2 : 0
        }
      }
      const chunks = yield* Stream.runCollect(client.stream(`${dir}/f`, options))
      expect(Chunk.toReadonlyArray(chunks).map((c) => Buffer.from(c).toString())).toEqual([
        "01",
        "23",
        "45",
        "67",
        "89"
      ])
      expect(reads).toBe(1)
    }))

  it.scoped("a chunk size past 1 GiB is a typed error before anything is read", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/f`, "hello")
      const { client, manager } = yield* makeClient()
      for (const chunkSize of [2 ** 40, 2 ** 30 + 1, 1e300]) {
        expect(yield* failureOf(Stream.runDrain(client.stream(`${dir}/f`, { chunkSize })))).toBe(
          "InvalidArgumentError options.chunkSize"
        )
      }
      yield* expectIdle(manager)
    }))

  it.scoped("a chunk size larger than the file allocates what the file holds, not the chunk size", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/small`, "hello")
      const big = Buffer.alloc(300_001, 7)
      nodeFs.writeFileSync(`${dir}/big`, big)
      const { fs, sizes } = yield* recordingReads
      const { client, manager } = yield* makeClient({}, Layer.succeed(FileSystem.FileSystem, fs))
      for (const chunkSize of [1e9, 2 ** 30]) {
        sizes.length = 0
        const chunks = yield* Stream.runCollect(client.stream(`${dir}/small`, { chunkSize }))
        expect(Chunk.toReadonlyArray(chunks).map((c) => Buffer.from(c).toString())).toEqual(["hello"])
        expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024)
      }
      // Chunks keep their size: only the last is short.
      sizes.length = 0
      const chunks = Chunk.toReadonlyArray(
        yield* Stream.runCollect(client.stream(`${dir}/big`, { chunkSize: 100_000 }))
      )
      expect(chunks.map((c) => c.length)).toEqual([100_000, 100_000, 100_000, 1])
      expect(Buffer.concat(chunks).equals(big)).toBe(true)
      expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(big.length + 64 * 1024)
      // From an offset, the allocation is what is left after it.
      sizes.length = 0
      const tail = yield* Stream.runCollect(client.stream(`${dir}/big`, { chunkSize: 1e9, offset: 300_000 }))
      expect(Chunk.toReadonlyArray(tail).map((c) => c.length)).toEqual([1])
      expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024)
      yield* expectIdle(manager)
    }))
})

/** Whether `name` fits NAME_MAX and comes back from the file system as it is (no lone surrogate). */
const storable = (name: string) => Buffer.byteLength(name) <= 255 && Buffer.from(name, "utf8").toString("utf8") === name

/** `storable`, and no character was cut (which would leave a U+FFFD). */
const fitsAndWellFormed = (name: string) => storable(name) && !name.includes("\uFFFD")

describe("long multibyte names", () => {
  const names: ReadonlyArray<readonly [string, string]> = [
    ["80 CJK characters (240 bytes)", "字".repeat(80)],
    ["85 CJK characters (255 bytes)", "字".repeat(85)],
    ["63 emoji, surrogate pairs (252 bytes)", "😀".repeat(63)],
    ["an emoji across the cut", "a".repeat(227) + "😀".repeat(7)],
    ["127 two-byte characters and one byte (255 bytes)", "é".repeat(127) + "a"],
    ["255 ASCII characters", "a".repeat(255)]
  ]
  for (const [label, name] of names) {
    it.scoped(`${label}: written, read back, and the temp name is recognised`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255)
        for (const durable of [false, true]) {
          const { client, manager } = yield* makeClient({ durable })
          yield* client.write(`${dir}/${name}`, `content ${durable}`)
          expect(new TextDecoder().decode(yield* client.read(`${dir}/${name}`))).toBe(`content ${durable}`)
          yield* Stream.run(Stream.make(bytesOf("sunk")), client.sink(`${dir}/${name}`))
          expect(nodeFs.readFileSync(`${dir}/${name}`, "utf8")).toBe("sunk")
          yield* expectIdle(manager)
        }
        // The temp name fits, is whole characters of the name, and a crash
        // leftover by that name is what collect hides and recover removes.
        const temp = yield* realTempName(dir, name)
        expect(fitsAndWellFormed(temp)).toBe(true)
        const part = temp.slice(1, temp.length - TOKEN - ".tmp".length - 2)
        expect(name.startsWith(part)).toBe(true)
        expect(Buffer.byteLength(part)).toBeGreaterThan(200)
        nodeFs.writeFileSync(`${dir}/${temp}`, "partial")
        const { client } = yield* makeClient()
        expect(yield* client.collect(dir)).toEqual([])
        expect(yield* client.collect(dir, { includeTemp: true })).toEqual([temp])
        expect(yield* client.recover(dir)).toEqual([`${dir}/${temp}`])
      }))
  }

  it.scoped("a sink's temp file under a long name is visible while it runs and leaves nothing when interrupted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const name = "字".repeat(85)
      const { client, manager } = yield* makeClient()
      const queue = yield* Queue.unbounded<Uint8Array>()
      const fiber = yield* Stream.fromQueue(queue).pipe(Stream.run(client.sink(`${dir}/${name}`)), Effect.fork)
      yield* Queue.offer(queue, bytesOf("chunk"))
      yield* waitUntil(Effect.sync(() => tempFiles(dir).length === 1), "temp file created")
      expect(fitsAndWellFormed(tempFiles(dir)[0])).toBe(true)
      yield* Fiber.interrupt(fiber)
      expect(nodeFs.readdirSync(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.scoped("a name with a lone surrogate gets a temp name the file system stores as it was made", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const name = "a\uD800b".repeat(50)
      const temp = yield* realTempName(dir, name)
      expect(storable(temp)).toBe(true)
      nodeFs.writeFileSync(`${dir}/${temp}`, "partial")
      expect(nodeFs.readdirSync(dir)).toEqual([temp])
      const { client } = yield* makeClient()
      expect(yield* client.recover(dir)).toEqual([`${dir}/${temp}`])
    }))
})

describe("a removal the system refuses", () => {
  // An immutable file: its unlink is refused (EPERM) even for root, as
  // another user's file in a sticky directory is for its non-owners.
  const immutable = (path: string) =>
    Effect.acquireRelease(
      Effect.sync(() => childProcess.spawnSync("chattr", ["+i", path]).status === 0),
      () => Effect.sync(() => childProcess.spawnSync("chattr", ["-i", path]))
    )

  for (const confined of [false, true]) {
    it.scoped(`delete and recover report PermissionDenied, not NotADirectory (${confined ? "confined" : "by path"})`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = `${dir}/kept`
        const leftover = `${dir}/${leftoverName("doc")}`
        nodeFs.writeFileSync(file, "kept")
        nodeFs.writeFileSync(leftover, "partial")
        if (!(yield* immutable(file)) || !(yield* immutable(leftover))) {
          return console.log("skipped: chattr +i is not supported here")
        }
        const { client, manager } = yield* makeClient(confined ? { root: dir } : {})
        expect(yield* failureOf(client.delete(file))).toBe("FileSystemError PermissionDenied")
        expect(yield* failureOf(client.recover(dir))).toBe("FileSystemError PermissionDenied")
        expect(nodeFs.readFileSync(file, "utf8")).toBe("kept")
        expect(nodeFs.existsSync(leftover)).toBe(true)
        yield* expectIdle(manager)
      }))

    it.scoped(`recover leaves another user's leftover it may not remove, and removes its own (${confined ? "confined" : "by path"})`, () =>
      Effect.gen(function*() {
        if (process.getuid?.() !== 0) return console.log("skipped: needs root (chown)")
        const dir = yield* tempDir
        // As in a directory with the sticky bit, for a user who does not own it.
        const theirs = `${dir}/${leftoverName("theirs")}`
        const ours = `${dir}/${leftoverName("ours")}`
        nodeFs.writeFileSync(theirs, "partial")
        nodeFs.writeFileSync(ours, "partial")
        nodeFs.chownSync(theirs, 65534, 65534)
        if (!(yield* immutable(theirs))) return console.log("skipped: chattr +i is not supported here")
        const { client, manager } = yield* makeClient(confined ? { root: dir } : {})
        expect(yield* client.recover(dir)).toEqual([ours])
        expect(nodeFs.readdirSync(dir)).toEqual([nodePath.basename(theirs)])
        // Again: still not a failure.
        expect(yield* client.recover(dir)).toEqual([])
        yield* expectIdle(manager)
      }))
  }
})

describe("delete in a confined client", () => {
  it.scoped("a recursive delete removes links in the tree, never what they lead to; force and missing paths", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const root = `${dir}/root`
      const outside = `${dir}/outside`
      nodeFs.mkdirSync(`${root}/t/a/b`, { recursive: true })
      nodeFs.mkdirSync(outside)
      nodeFs.writeFileSync(`${outside}/keep`, "outside")
      nodeFs.writeFileSync(`${root}/t/a/b/f`, "f")
      nodeFs.writeFileSync(`${root}/t/g`, "g")
      nodeFs.symlinkSync(outside, `${root}/t/a/out`)
      nodeFs.symlinkSync(`${outside}/keep`, `${root}/t/file-link`)
      nodeFs.symlinkSync(`${root}/t/a`, `${root}/t/loop`)
      nodeFs.symlinkSync(outside, `${root}/dirlink`)
      const { client, manager } = yield* makeClient({ root })
      yield* client.delete(`${root}/t`, { recursive: true })
      expect(nodeFs.readdirSync(root)).toEqual(["dirlink"])
      expect(nodeFs.readFileSync(`${outside}/keep`, "utf8")).toBe("outside")
      expect(yield* failureOf(client.delete(`${root}/t`, { recursive: true }))).toBe("FileSystemError NotFound")
      yield* client.delete(`${root}/t`, { recursive: true, force: true })
      yield* client.delete(`${root}/t/x`, { force: true })
      expect(yield* failureOf(client.delete(`${root}/t`))).toBe("FileSystemError NotFound")
      // A link to a directory outside, in the root: the link is removed (as
      // `rm` does), never followed: nothing outside is.
      yield* client.delete(`${root}/dirlink`, { recursive: true })
      expect(nodeFs.readdirSync(root)).toEqual([])
      expect(nodeFs.readdirSync(outside)).toEqual(["keep"])
      // So is one to a file outside, without recursive.
      nodeFs.symlinkSync(`${outside}/keep`, `${root}/file-link`)
      yield* client.delete(`${root}/file-link`)
      expect(nodeFs.readdirSync(root)).toEqual([])
      expect(nodeFs.readFileSync(`${outside}/keep`, "utf8")).toBe("outside")
      yield* expectIdle(manager)
    }))
})

describe("rename: a directory into itself through a link", () => {
  const variants: ReadonlyArray<readonly [string, (dir: string) => Client.ClientOptions]> = [
    ["not durable", () => ({})],
    ["durable", () => ({ durable: true })],
    ["confined", (dir) => ({ root: dir })]
  ]
  for (const [label, options] of variants) {
    it.scoped(`is an InvalidArgumentError and changes nothing (${label})`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        nodeFs.mkdirSync(`${dir}/d/inner`, { recursive: true })
        nodeFs.writeFileSync(`${dir}/d/f`, "f")
        nodeFs.symlinkSync(`${dir}/d`, `${dir}/link`)
        nodeFs.symlinkSync("d/inner", `${dir}/deeplink`)
        const { client, manager } = yield* makeClient(options(dir))
        const before = snapshot(dir)
        for (const target of ["link/sub", "link/new/deeper/x", "deeplink/x", "deeplink/new/x", "link/inner/x"]) {
          expect(yield* failureOf(client.rename(`${dir}/d`, `${dir}/${target}`)), target).toBe(
            "InvalidArgumentError to"
          )
          expect(snapshot(dir), target).toEqual(before)
        }
        // A link is not the directory: it may move into the directory it points to.
        yield* client.rename(`${dir}/link`, `${dir}/d/link`)
        expect(nodeFs.readlinkSync(`${dir}/d/link`)).toBe(`${dir}/d`)
        yield* expectIdle(manager)
      }))
  }
})

/**
 * Runs `script` in a second process until the scope closes (then it is
 * killed). It spins without pause, so it runs at a lower priority: on a
 * shared machine it must not starve the test runner.
 */
const spinning = (script: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = childProcess.spawn(process.execPath, ["-e", script, ...args], { stdio: "ignore" })
      try {
        if (child.pid !== undefined) os.setPriority(child.pid, 10)
      } catch {
        // Only a courtesy.
      }
      return child
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

/**
 * A second process that swaps `root/d` between a link to a directory inside
 * the root and a link to one outside, each swap one atomic rename, as fast as
 * it can, until it is killed. It counts its swaps in `count`, replaced by a
 * rename: a file rewritten in place is empty for a moment, and read then
 * counted no swap at all.
 */
const swapper = (root: string, outside: string, count: string) =>
  spinning(
    `
const fs = require("node:fs")
const [root, outside, count] = process.argv.slice(1)
let swaps = 0
for (;;) {
  for (const target of ["real", outside]) {
    try { fs.symlinkSync(target, root + "/d.next") } catch {}
    fs.renameSync(root + "/d.next", root + "/d")
    if (++swaps % 1000 === 0) {
      fs.writeFileSync(count + ".next", String(swaps))
      fs.renameSync(count + ".next", count)
    }
  }
}`,
    [root, outside, count]
  )

describe("a confined client racing a symbolic link swap", () => {
  for (const durable of [false, true]) {
    it.live(
      `nothing is written, created, renamed, copied, deleted or read outside the root (${
        durable ? "durable" : "not durable"
      })`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const root = `${dir}/root`
          const outside = `${dir}/outside`
          nodeFs.mkdirSync(`${root}/real`, { recursive: true })
          nodeFs.mkdirSync(outside)
          nodeFs.symlinkSync("real", `${root}/d`)
          // SWAP_ROUNDS for a longer run.
          const rounds = Number(process.env.SWAP_ROUNDS ?? (durable ? 30 : 60))
          for (let i = 0; i < rounds; i++) {
            nodeFs.writeFileSync(`${outside}/victim-${i}`, "outside")
            nodeFs.writeFileSync(`${root}/real/victim-${i}`, "inside")
            nodeFs.writeFileSync(`${root}/source-${i}`, "moved")
            nodeFs.writeFileSync(`${root}/copy-source-${i}`, "copied")
          }
          nodeFs.writeFileSync(`${outside}/secret`, "SECRET")
          nodeFs.writeFileSync(`${root}/real/secret`, "public")
          nodeFs.writeFileSync(`${outside}/${leftoverName("x")}`, "not yours")
          const outsideBefore = snapshot(outside)
          const { client, manager } = yield* makeClient({ root, durable })
          const count = `${dir}/swaps`
          yield* swapper(root, outside, count)
          // Another process: polled, with a deadline.
          yield* Effect.sync(() => nodeFs.existsSync(count)).pipe(
            Effect.repeat({ until: (started) => started, schedule: Schedule.spaced("10 millis") }),
            Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "the swapper never started" }),
            Effect.orDie
          )

          const seen = new Map<string, number>()
          const outcome = (what: string) => <A, E>(effect: Effect.Effect<A, E>) =>
            Effect.flatMap(failureOf(effect), (result) =>
              Effect.sync(() => seen.set(`${what}: ${result}`, (seen.get(`${what}: ${result}`) ?? 0) + 1)))
          const leaks: Array<string> = []
          const d = `${root}/d`
          yield* Effect.forEach(
            Array.from({ length: rounds }, (_, i) =>
              i),
            (i) =>
              Effect.all([
                outcome("write")(client.write(`${d}/w-${i}`, "w")),
                outcome("write with parents")(client.write(`${d}/p-${i}/q/x`, "p")),
                outcome("sink")(Stream.run(Stream.make(bytesOf("s")), client.sink(`${d}/s-${i}`))),
                outcome("modify")(client.modify(`${d}/m-${i}`, () => "m")),
                outcome("rename")(client.rename(`${root}/source-${i}`, `${d}/r-${i}`)),
                outcome("delete")(client.delete(`${d}/victim-${i}`)),
                outcome("read")(
                  Effect.flatMap(
                    client.readString(`${d}/secret`),
                    (text) => Effect.sync(() => text === "SECRET" && leaks.push(`read ${i}`))
                  )
                ),
                outcome("stream")(
                  Effect.flatMap(
                    Stream.runCollect(client.stream(`${d}/secret`)),
                    (chunks) =>
                      Effect.sync(() =>
                        Buffer.concat(Chunk.toReadonlyArray(chunks)).toString() === "SECRET" &&
                        leaks.push(`stream ${i}`)
                      )
                  )
                ),
                outcome("copy in")(client.copy(`${root}/copy-source-${i}`, `${d}/c-${i}`)),
                outcome("copy out")(
                  Effect.flatMap(
                    client.copy(`${d}/secret`, `${root}/copied-${i}`),
                    () =>
                      Effect.sync(() =>
                        nodeFs.readFileSync(`${root}/copied-${i}`, "utf8") === "SECRET" && leaks.push(`copy ${i}`)
                      )
                  )
                ),
                outcome("makeDirectory")(client.makeDirectory(`${d}/md-${i}/x`)),
                outcome("recover")(client.recover(root, { recursive: true }))
              ], { concurrency: "unbounded", discard: true }),
            { concurrency: 4, discard: true }
          )
          // Under heavy load the swapper may swap faster than any whole
          // operation completes, so that every one of them was refused, or be
          // starved so that none was: then more writes, one at a time, until
          // one has landed inside and one was refused (each is checked as the
          // others are), so that both sides of the race are seen.
          const seenWrite = (outcome: string) => [...seen].some(([key]) => key.startsWith(`write: ${outcome}`))
          const bothSides = () => seenWrite("succeeded") && seenWrite("InvalidPathError OutsideRoot")
          for (let i = 0; i < 2_000 && !bothSides(); i++) {
            yield* outcome("write")(client.write(`${d}/again-${i}`, "w"))
          }

          const swaps = Number(nodeFs.readFileSync(count, "utf8"))
          const outcomes = Object.fromEntries([...seen].sort())
          const after = snapshot(outside)
          const escaped = [...new Set([...Object.keys(outsideBefore), ...Object.keys(after)])]
            .filter((key) => outsideBefore[key] !== after[key])
            .map((key) => `${key} ${key in after ? (key in outsideBefore ? "changed" : "created") : "removed"}`)
          console.log(
            `symlink race: ${swaps}+ swaps during ${rounds} rounds; ${leaks.length} reads of the outside file, ${escaped.length} changes outside; outcomes ${
              JSON.stringify(outcomes)
            }`
          )
          expect(swaps).toBeGreaterThan(0)
          expect(leaks).toEqual([])
          expect(escaped).toEqual([])
          // Operations on root/d both succeeded and were refused: the race was run.
          const times = (suffix: string) =>
            [...seen].filter(([key]) => key.endsWith(suffix) && !key.startsWith("recover")).reduce(
              (n, [, k]) => n + k,
              0
            )
          expect(times(": succeeded")).toBeGreaterThan(0)
          expect(times(": InvalidPathError OutsideRoot")).toBeGreaterThan(0)
          yield* expectIdle(manager)
        }).pipe(Effect.scoped),
      120_000
    )
  }

  it.live(
    "a recursive delete whose tree has a directory swapped for a link deletes nothing outside the root",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const root = `${dir}/root`
        const outside = `${dir}/outside`
        nodeFs.mkdirSync(root)
        nodeFs.mkdirSync(outside)
        // The same names as the files of the tree, and more.
        for (let i = 0; i < 50; i++) nodeFs.writeFileSync(`${outside}/f-${i}`, "outside")
        const outsideBefore = snapshot(outside)
        const { client, manager } = yield* makeClient({ root })
        // Swaps root/t/s (a directory) for a link to outside and back, as fast as it can.
        yield* spinning(
          `
const fs = require("node:fs")
const [root, outside] = process.argv.slice(1)
for (;;) {
  try {
    fs.renameSync(root + "/t/s", root + "/held")
    try { fs.symlinkSync(outside, root + "/t/s") } catch {}
    for (let spin = 0; spin < 20000; spin++);
    fs.unlinkSync(root + "/t/s")
    fs.renameSync(root + "/held", root + "/t/s")
  } catch {}
}`,
          [root, outside]
        )
        const rounds = Number(process.env.SWAP_ROUNDS ?? 250)
        let deleted = 0
        let round = 0
        // Until the last round, or the first change outside (then the test fails).
        for (; round < rounds && nodeFs.readdirSync(outside).length === 50; round++) {
          // A fresh tree, moved into place whole: t/s holds 20 files. (The
          // swapper moves things under the set-up too: a round whose set-up
          // fails is skipped.)
          try {
            nodeFs.rmSync(`${root}/held`, { recursive: true, force: true })
            nodeFs.rmSync(`${root}/build`, { recursive: true, force: true })
            nodeFs.mkdirSync(`${root}/build/s`, { recursive: true })
            for (let i = 0; i < 20; i++) nodeFs.writeFileSync(`${root}/build/s/f-${i}`, "inside")
            nodeFs.renameSync(`${root}/build`, `${root}/t`)
          } catch {
            continue
          }
          const exit = yield* Effect.exit(client.delete(`${root}/t`, { recursive: true, force: true }))
          if (Exit.isSuccess(exit)) deleted++
        }
        const after = snapshot(outside)
        console.log(
          `recursive delete race: ${deleted} trees deleted in ${round} rounds; ${
            Object.keys(outsideBefore).filter((key) => after[key] !== outsideBefore[key]).length
          } of 50 files outside removed or changed`
        )
        expect(deleted).toBeGreaterThan(0)
        expect(after).toEqual(outsideBefore)
        yield* expectIdle(manager)
      }).pipe(Effect.scoped),
    120_000
  )
})

/**
 * The neighbour of `fixtures/temp-exchange.c`, compiled with the machine's C
 * compiler (`$CC`, else `cc`): Node has neither inotify events fast enough
 * nor `renameat2`, and the race it runs needs both. Running until the scope
 * closes; `ready` once its directories are prepared.
 */
const tempExchanger = (dir: string, prefix: string, outside: string, victims: number, episodes: number) =>
  Effect.acquireRelease(
    Effect.sync(() => nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "temp-exchange-"))),
    (built) => Effect.sync(() => nodeFs.rmSync(built, { recursive: true, force: true }))
  ).pipe(Effect.flatMap((built) =>
    Effect.acquireRelease(
      Effect.async<childProcess.ChildProcess, Error>((resume) => {
        const binary = `${built}/temp-exchange`
        const source = nodePath.join(import.meta.dirname, "fixtures", "temp-exchange.c")
        childProcess.execFile(process.env.CC ?? "cc", ["-O2", "-o", binary, source], (error) => {
          if (error !== null) {
            return resume(Effect.fail(new Error(`cc could not build the neighbour: ${error.message}`)))
          }
          const child = childProcess.spawn(binary, [dir, prefix, outside, String(victims), String(episodes)], {
            stdio: ["ignore", "ignore", "pipe"]
          })
          child.stderr.on("data", (data) => {
            if (String(data).includes("ready")) resume(Effect.succeed(child))
          })
          child.once("exit", () => resume(Effect.fail(new Error("the neighbour exited before it was ready"))))
        })
      }),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
  ))

describe("a confined client whose temp file another process swaps for a directory", () => {
  it.live(
    "a write that fails before its commit removes only its own temp file: nothing outside the root is deleted",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const root = `${dir}/root`
        const outside = `${dir}/outside`
        // The target is a directory that is not empty: every write's rename fails, and the write cleans up.
        nodeFs.mkdirSync(`${root}/d/f`, { recursive: true })
        nodeFs.writeFileSync(`${root}/d/f/keep`, "")
        nodeFs.mkdirSync(outside)
        const victims = 10
        for (let i = 0; i < victims; i++) nodeFs.writeFileSync(`${outside}/v${i}`, "outside")
        const outsideBefore = snapshot(outside)
        const { client, manager } = yield* makeClient({ root })
        // Each temp file of `f` is exchanged for a full directory, then flipped
        // with a link to outside until it is gone.
        const rounds = Number(process.env.SWAP_ROUNDS ?? 600)
        yield* tempExchanger(`${root}/d`, ".f.", outside, victims, rounds + 10)
        const outcomes = new Map<string, number>()
        let round = 0
        // Until the last round, or the first file deleted outside (then the test fails).
        for (; round < rounds && nodeFs.readdirSync(outside).length === victims; round++) {
          const outcome = yield* failureOf(client.write(`${root}/d/f`, "data"))
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
        }
        const after = snapshot(outside)
        console.log(
          `temp exchange race: ${round} rounds, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}; ${
            victims - nodeFs.readdirSync(outside).length
          } of ${victims} files outside deleted`
        )
        expect(after).toEqual(outsideBefore)
        // Each write failed at its rename, with a typed error.
        expect([...outcomes.keys()].every((outcome) => outcome.startsWith("FileSystemError"))).toBe(true)
        yield* expectIdle(manager)
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("special files are never opened", () => {
  // A FIFO's open blocks until a writer comes, in a call nothing interrupts:
  // the operation would hang with its locks held.
  for (const confined of [false, true]) {
    it.live(
      `copy, stream, read and modify of a FIFO${
        confined ? ", and a write below it" : " and of an endless device"
      }, fail typed at once and hold nothing (${confined ? "confined" : "not confined"})`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const fifo = `${dir}/fifo`
          childProcess.execFileSync("mkfifo", [fifo])
          nodeFs.writeFileSync(`${dir}/f`, "f")
          const { client, manager } = yield* makeClient(confined ? { root: dir } : {})
          const bounded = <A, E>(effect: Effect.Effect<A, E>) =>
            failureOf(Effect.timeoutFail(effect, { duration: "5 seconds", onTimeout: () => "hung" }))
          expect(yield* bounded(client.copy(fifo, `${dir}/copy`))).toBe("FileSystemError InvalidData")
          expect(nodeFs.existsSync(`${dir}/copy`)).toBe(false)
          // A stream opens its file in a scope: an open that blocked could not be interrupted.
          expect(yield* bounded(Stream.runDrain(client.stream(fifo)))).toBe("FileSystemError InvalidData")
          // A read opened the FIFO (and blocked) unless confined.
          expect(yield* bounded(client.read(fifo))).toBe("FileSystemError InvalidData")
          expect(yield* bounded(client.readString(fifo))).toBe("FileSystemError InvalidData")
          expect(yield* bounded(client.modify(fifo, () => "x"))).toBe("FileSystemError InvalidData")
          if (!confined) {
            // A device whose size says nothing and that never ends: the read grew memory by 150 MiB a second.
            expect(yield* bounded(client.read("/dev/zero"))).toBe("FileSystemError InvalidData")
            expect(yield* bounded(client.readJson("/dev/zero", Schema.Unknown))).toBe("FileSystemError InvalidData")
          }
          if (confined) {
            expect(yield* bounded(client.write(`${fifo}/x`, "x"))).toBe("FileSystemError InvalidData")
            expect(yield* bounded(client.copy(`${dir}/f`, `${fifo}/x`))).toBe("FileSystemError InvalidData")
          }
          yield* expectIdle(manager)
        }).pipe(Effect.scoped),
      30_000
    )
  }

  it.live(
    "a durable confined sink whose directory is swapped for a link to a FIFO ends committed, unsynced, holding nothing",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const root = `${dir}/root`
        nodeFs.mkdirSync(`${root}/d`, { recursive: true })
        childProcess.execFileSync("mkfifo", [`${dir}/fifo`])
        const { client, manager } = yield* makeClient({ root, durable: true })
        // The directories are known durable: the commit's directory fsync is the only open by path left.
        yield* client.write(`${root}/d/warm`, "w")
        const gate = yield* Effect.makeLatch(false)
        const input = Stream.concat(
          Stream.make(bytesOf("hello")),
          Stream.fromEffect(Effect.as(gate.await, bytesOf("")))
        )
        const sink = yield* Effect.fork(Stream.run(input, client.sink(`${root}/d/file`)))
        // The sink has opened its temp file (it does so through the scheduler's I/O, polled here).
        yield* Effect.sync(() => tempFiles(`${root}/d`).length === 1).pipe(
          Effect.repeat({ until: (created) => created, schedule: Schedule.spaced("5 millis") })
        )
        // Another process swaps the directory: the rename goes through the handle, the fsync by path.
        nodeFs.renameSync(`${root}/d`, `${root}/moved`)
        nodeFs.symlinkSync(`${dir}/fifo`, `${root}/d`)
        yield* gate.open
        const error = yield* Effect.flip(Fiber.join(sink))
        expect(error).toMatchObject({ _tag: "CommitError", path: `${root}/d/file` })
        expect(nodeFs.readFileSync(`${root}/moved/file`, "utf8")).toBe("hello")
        yield* expectIdle(manager)
      }).pipe(Effect.scoped),
    30_000
  )
})
