import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { SystemError } from "@effect/platform/Error"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, ConfigProvider, Effect, Exit, Fiber, Layer, Option, Queue, Schema, Sink, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as nodePath from "node:path"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import { LockLostError } from "../src/PersistenceError.js"
import { leftoverName, makeClient, snapshot, tempDir, tempFiles } from "./utils/client.js"
import { expectIdle, waitUntil } from "./utils/locks.js"
import { pseudoRandom } from "./utils/random.js"
import { recordSpans } from "./utils/tracing.js"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const bytesOf = (s: string) => new TextEncoder().encode(s)

/** Writes a leftover temp file as a crashed writer would have left it. */
const leftover = (dir: string, name: string, suffix = "tmp") => {
  const path = nodePath.join(dir, leftoverName(name, suffix))
  nodeFs.writeFileSync(path, "partial")
  return path
}

describe("Client.read / readString", () => {
  it.scoped("reads bytes and text under a read lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/f.txt`, "héllo")
      expect(text(yield* client.read(`${dir}/f.txt`))).toBe("héllo")
      expect(yield* client.readString(`${dir}/f.txt`)).toBe("héllo")
      expect(yield* client.readString(`${dir}//./f.txt`, "utf-8")).toBe("héllo")
      yield* expectIdle(manager)
    }))

  it.scoped("text comes back as it was written, a leading U+FEFF too; readJson takes a document after one", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      yield* client.write(`${dir}/bom.txt`, "\ufeffh\u00e9llo")
      expect(yield* client.readString(`${dir}/bom.txt`)).toBe("\ufeffh\u00e9llo")
      // As Node reads it.
      expect(nodeFs.readFileSync(`${dir}/bom.txt`, "utf8")).toBe("\ufeffh\u00e9llo")
      nodeFs.writeFileSync(`${dir}/bom.json`, "\ufeff{\"a\":1}")
      expect(yield* client.readJson(`${dir}/bom.json`, Schema.Struct({ a: Schema.Number }))).toEqual({ a: 1 })
      yield* expectIdle(manager)
    }))

  it.scoped("a file system service of reads only (no open: a stub of your own) still makes a Client that reads", () =>
    Effect.gen(function*() {
      const stub = FileSystem.makeNoop({
        readFile: () => Effect.succeed(new TextEncoder().encode("stubbed")),
        stat: () => Effect.succeed({ type: "File" } as FileSystem.File.Info)
      })
      const { client } = yield* makeClient({}, Layer.succeed(FileSystem.FileSystem, { ...stub, open: undefined! }))
      expect(yield* client.readString("/stub/f")).toBe("stubbed")
    }))

  it.scoped("a missing file fails as NotFound with the operation and path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const error = yield* Effect.flip(client.read(`${dir}/missing`))
      expect(error).toMatchObject({
        _tag: "FileSystemError",
        reason: "NotFound",
        operation: "Client.read",
        path: `${dir}/missing`
      })
      expect(error.message).toContain("no such file or directory")
      yield* expectIdle(manager)
    }))

  it.scoped("reading a directory fails as IsADirectory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const error = yield* Effect.flip(client.readString(dir))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "IsADirectory" })
      yield* expectIdle(manager)
    }))
})

describe("Client.write", () => {
  it.scoped("replaces content atomically, creates missing parents, leaves no temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      yield* client.write(`${dir}/a/b/c.txt`, "one")
      expect(nodeFs.readFileSync(`${dir}/a/b/c.txt`, "utf8")).toBe("one")
      yield* client.write(`${dir}/a/b/c.txt`, bytesOf("two"))
      expect(nodeFs.readFileSync(`${dir}/a/b/c.txt`, "utf8")).toBe("two")
      yield* client.write(`${dir}/a/b/c.txt`, "")
      expect(nodeFs.readFileSync(`${dir}/a/b/c.txt`, "utf8")).toBe("")
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.scoped("the mode option sets the new file's permissions", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      yield* client.write(`${dir}/secret`, "s", { mode: 0o600 })
      expect(nodeFs.statSync(`${dir}/secret`).mode & 0o777).toBe(0o600)
      yield* client.write(`${dir}/open`, "o", { mode: 0o640 })
      expect(nodeFs.statSync(`${dir}/open`).mode & 0o777).toBe(0o640)
      yield* expectIdle(manager)
    }))

  it.scoped("a parent that is a file fails as NotADirectory and changes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/file`, "x")
      const before = snapshot(dir)
      const error = yield* Effect.flip(client.write(`${dir}/file/child`, "y"))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotADirectory" })
      const deeper = yield* Effect.flip(client.write(`${dir}/file/a/b`, "y"))
      expect(deeper).toMatchObject({ _tag: "FileSystemError", reason: "NotADirectory" })
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))

  it.scoped("writing where a directory stands fails and keeps the directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/inside`, "keep")
      const before = snapshot(dir)
      const error = yield* Effect.flip(client.write(`${dir}/d`, "x"))
      expect(error._tag).toBe("FileSystemError")
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))

  it.scoped("a custom tempSuffix names the temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient({ tempSuffix: "partial" })
      const queue = yield* Queue.unbounded<Uint8Array>()
      const fiber = yield* Stream.fromQueue(queue).pipe(Stream.run(client.sink(`${dir}/big.bin`)), Effect.fork)
      yield* Queue.offer(queue, bytesOf("chunk"))
      yield* waitUntil(Effect.sync(() => tempFiles(dir, "partial").length === 1), "temp file created")
      expect(tempFiles(dir, "partial")[0]).toMatch(/^\.big\.bin\.[0-9a-z]{20}\.partial$/)
      yield* Fiber.interrupt(fiber)
      expect(nodeFs.readdirSync(dir)).toEqual([])
      yield* expectIdle(manager)
    }))
})

describe("Client.stream", () => {
  it.scoped("streams chunks with offset, length and chunk size, holding a read lock while open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/s`, "0123456789")
      const all = yield* Stream.runCollect(client.stream(`${dir}/s`, { chunkSize: 3 }))
      expect(Chunk.toReadonlyArray(all).map(text)).toEqual(["012", "345", "678", "9"])
      // null options mean the defaults, as in Node's fs.
      const whole = yield* Stream.runCollect(client.stream(`${dir}/s`, null as unknown as undefined))
      expect(Chunk.toReadonlyArray(whole).map(text).join("")).toBe("0123456789")
      const part = yield* Stream.runCollect(client.stream(`${dir}/s`, { offset: 2, bytesToRead: 5 }))
      expect(Chunk.toReadonlyArray(part).map(text).join("")).toBe("23456")
      const seen = yield* client.stream(`${dir}/s`, { chunkSize: 4 }).pipe(
        Stream.mapEffect((chunk) => Effect.map(manager.stats, (s) => [text(chunk), s.held] as const)),
        Stream.runCollect
      )
      expect(Chunk.toReadonlyArray(seen).every(([, held]) => held === 1)).toBe(true)
      yield* expectIdle(manager)
    }))

  // Reads grow from one chunk to blocks of 1 MiB, cut into chunkSize views.
  it.scoped("large files: every byte once, in order, every chunk chunkSize long but the last", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const size = 3 * 1024 * 1024 + 12_345
      const content = pseudoRandom(size, 7)
      nodeFs.writeFileSync(`${dir}/big`, content)
      const cases: Array<{ offset?: number; bytesToRead?: number; chunkSize?: number }> = [
        {},
        { chunkSize: 1000 },
        { chunkSize: 2 * 1024 * 1024 + 1 },
        { offset: 99_999, chunkSize: 4096 },
        { offset: 5, bytesToRead: 1024 * 1024 + 7, chunkSize: 65_536 },
        { bytesToRead: size + 10 },
        { offset: size - 3, chunkSize: 2 },
        { offset: size + 1 }
      ]
      for (const options of cases) {
        const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(client.stream(`${dir}/big`, options)))
        const start = Math.min(options.offset ?? 0, size)
        const expected = content.subarray(start, Math.min(size, start + (options.bytesToRead ?? size)))
        expect(Buffer.concat(chunks).equals(expected), JSON.stringify(options)).toBe(true)
        const chunkSize = options.chunkSize ?? 64 * 1024
        expect(chunks.slice(0, -1).every((chunk) => chunk.length === chunkSize), JSON.stringify(options)).toBe(true)
        expect(chunks.every((chunk) => chunk.length > 0 && chunk.length <= chunkSize)).toBe(true)
      }
      yield* expectIdle(manager)
    }))

  it.scoped("a block holds at most 64 chunks; reads grow only while they fill their block", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/f`, pseudoRandom(100_000, 3))
      const { client } = yield* makeClient()
      const blocks = yield* client.stream(`${dir}/f`, { chunkSize: 1 }).pipe(
        Stream.chunks,
        Stream.map(Chunk.size),
        Stream.runCollect
      )
      expect(Math.max(...blocks)).toBe(64)
      expect(Chunk.reduce(blocks, 0, (a, b) => a + b)).toBe(100_000)

      // A file system whose reads return at most 1,000 bytes (as some special
      // files do): the requested size stays at one chunk.
      const requested: Array<number> = []
      const shortReads = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
          ...fs,
          open: (path, options) =>
            Effect.map(fs.open(path, options), (file) => ({
              ...file,
              seek: (offset, from) => file.seek(offset, from),
              read: (buffer: Uint8Array) => {
                requested.push(buffer.length)
                return file.read(buffer.subarray(0, 1000))
              }
            }))
        }))
      ).pipe(Layer.provide(NodeFileSystem.layer))
      const short = (yield* makeClient({}, shortReads)).client
      const chunks = yield* Stream.runCollect(short.stream(`${dir}/f`, { chunkSize: 4096 }))
      expect(Buffer.concat(Chunk.toReadonlyArray(chunks)).equals(pseudoRandom(100_000, 3))).toBe(true)
      expect(Math.max(...requested)).toBe(4096)
    }))

  it.scoped("a missing file fails the stream as NotFound and releases the lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const error = yield* Effect.flip(Stream.runDrain(client.stream(`${dir}/nope`)))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", operation: "Client.stream" })
      yield* expectIdle(manager)
    }))
})

describe("Client.sink", () => {
  it.scoped("commits what it received when the input ends", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/out`, "old")
      yield* Stream.make("a", "bc", "def").pipe(Stream.map(bytesOf), Stream.run(client.sink(`${dir}/out`)))
      expect(nodeFs.readFileSync(`${dir}/out`, "utf8")).toBe("abcdef")
      yield* Stream.empty.pipe(Stream.run(client.sink(`${dir}/new/empty`, { mode: 0o600 })))
      expect(nodeFs.readFileSync(`${dir}/new/empty`, "utf8")).toBe("")
      expect(nodeFs.statSync(`${dir}/new/empty`).mode & 0o777).toBe(0o600)
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  // Small elements of one stream chunk are gathered into blocks of 1 MiB;
  // large ones are written as they are, in order with the rest.
  it.scoped("many small and some large elements in one stream chunk arrive whole and in order", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const sizes = [
        ...Array.from({ length: 3000 }, (_, i) => 1 + (i * 7919) % 1500),
        3 * 1024 * 1024,
        0,
        1024 * 1024,
        ...Array.from({ length: 40 }, () => 100_000)
      ]
      const elements = sizes.map((size, i) => pseudoRandom(size, i))
      yield* Stream.fromChunk(Chunk.unsafeFromArray(elements)).pipe(Stream.run(client.sink(`${dir}/out`)))
      expect(nodeFs.readFileSync(`${dir}/out`).equals(Buffer.concat(elements))).toBe(true)
      // A bad element anywhere in a chunk: nothing is committed.
      const bad = yield* Effect.flip(
        Stream.fromChunk(Chunk.unsafeFromArray<unknown>([...elements.slice(0, 5), "text"])).pipe(
          Stream.run(client.sink(`${dir}/out`) as unknown as Sink.Sink<void, unknown, never, Client.WriteError>)
        )
      )
      expect(bad).toMatchObject({ _tag: "InvalidArgumentError", argument: "data" })
      expect(nodeFs.readFileSync(`${dir}/out`).equals(Buffer.concat(elements))).toBe(true)
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.scoped("an upstream failure leaves the target untouched and no temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/out`, "old")
      const exit = yield* Stream.make(bytesOf("new")).pipe(
        Stream.concat(Stream.fail("upstream broke")),
        Stream.run(client.sink(`${dir}/out`)),
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(nodeFs.readFileSync(`${dir}/out`, "utf8")).toBe("old")
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))
})

describe("Client.collect / collectEntries", () => {
  it.scoped("lists names, recursively, hiding leftover temp files unless asked", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.mkdirSync(`${dir}/sub/deeper`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/a.txt`, "a")
      nodeFs.writeFileSync(`${dir}/sub/b.txt`, "b")
      nodeFs.writeFileSync(`${dir}/.hidden`, "not a temp file")
      leftover(dir, "a.txt")
      leftover(`${dir}/sub`, "b.txt")
      expect((yield* client.collect(dir)).sort()).toEqual([".hidden", "a.txt", "sub"])
      expect((yield* client.collect(dir, { recursive: true })).sort()).toEqual(
        [".hidden", "a.txt", "sub", "sub/b.txt", "sub/deeper"]
      )
      expect((yield* client.collect(dir, { includeTemp: true })).length).toBe(4)
      const entries = yield* client.collectEntries(dir, { recursive: true })
      expect(entries.sort((x, y) => x.name.localeCompare(y.name))).toEqual([
        { name: ".hidden", type: "File" },
        { name: "a.txt", type: "File" },
        { name: "sub", type: "Directory" },
        { name: "sub/b.txt", type: "File" },
        { name: "sub/deeper", type: "Directory" }
      ])
      yield* expectIdle(manager)
    }))

  it.scoped("a link reports its target's type; a dangling link is a SymbolicLink, not a failure", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.mkdirSync(`${dir}/target`)
      nodeFs.symlinkSync(`${dir}/target`, `${dir}/to-dir`)
      nodeFs.symlinkSync(`${dir}/gone`, `${dir}/dangling`)
      const entries = yield* client.collectEntries(dir)
      expect(entries.sort((x, y) => x.name.localeCompare(y.name))).toEqual([
        { name: "dangling", type: "SymbolicLink" },
        { name: "target", type: "Directory" },
        { name: "to-dir", type: "Directory" }
      ])
      yield* expectIdle(manager)
    }))

  it.scoped("the filesystem root can be listed", () =>
    Effect.gen(function*() {
      const { client, manager } = yield* makeClient()
      expect(yield* client.collect("/")).toContain("tmp")
      yield* expectIdle(manager)
    }))

  it.scoped("a missing directory and a file give typed errors", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/f`, "")
      expect(yield* Effect.flip(client.collect(`${dir}/missing`))).toMatchObject({ reason: "NotFound" })
      expect(yield* Effect.flip(client.collect(`${dir}/f`))).toMatchObject({ reason: "NotADirectory" })
      yield* expectIdle(manager)
    }))
})

describe("Client.delete", () => {
  it.scoped("removes files, directories with recursive, and tolerates missing paths with force", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.mkdirSync(`${dir}/d/e`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/d/e/f`, "f")
      nodeFs.writeFileSync(`${dir}/g`, "g")
      yield* client.delete(`${dir}/g`)
      expect(nodeFs.existsSync(`${dir}/g`)).toBe(false)
      const notRecursive = yield* Effect.flip(client.delete(`${dir}/d`))
      expect(notRecursive._tag).toBe("FileSystemError")
      expect(nodeFs.existsSync(`${dir}/d/e/f`)).toBe(true)
      yield* client.delete(`${dir}/d`, { recursive: true })
      expect(nodeFs.existsSync(`${dir}/d`)).toBe(false)
      expect(yield* Effect.flip(client.delete(`${dir}/missing`))).toMatchObject({ reason: "NotFound" })
      yield* client.delete(`${dir}/missing`, { force: true })
      yield* expectIdle(manager)
    }))

  it.live("an interrupted recursive delete has finished or not started once the interrupt returns", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      for (let round = 0; round < 8; round++) {
        for (let i = 0; i < 200; i++) {
          nodeFs.mkdirSync(`${dir}/big/d${i}`, { recursive: true })
          nodeFs.writeFileSync(`${dir}/big/d${i}/f`, "f")
        }
        const fiber = yield* Effect.fork(client.delete(`${dir}/big`, { recursive: true }))
        // Land the interrupt at different moments of the removal.
        yield* Effect.sleep(`${round} millis`)
        yield* Fiber.interrupt(fiber)
        // No rm may still be running: the tree is whole or gone, and stays so.
        const left = nodeFs.existsSync(`${dir}/big`) ? nodeFs.readdirSync(`${dir}/big`).length : 0
        expect([0, 200]).toContain(left)
        yield* client.write(`${dir}/big/d0/keep`, "kept")
        yield* client.read(`${dir}/big/d0/keep`)
        nodeFs.rmSync(`${dir}/big`, { recursive: true, force: true })
      }
      yield* expectIdle(manager)
    })))

  it.scoped("durable delete with force succeeds when the parent does not exist", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient({ durable: true })
      yield* client.delete(`${dir}/no/such/parent/file`, { force: true })
      nodeFs.writeFileSync(`${dir}/x`, "x")
      yield* client.delete(`${dir}/x`)
      expect(nodeFs.existsSync(`${dir}/x`)).toBe(false)
      yield* expectIdle(manager)
    }))
})

describe("Client.rename", () => {
  it.scoped("moves a file, creating missing parents of the target", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/from`, "content")
      yield* client.rename(`${dir}/from`, `${dir}/x/y/to`)
      expect(nodeFs.existsSync(`${dir}/from`)).toBe(false)
      expect(nodeFs.readFileSync(`${dir}/x/y/to`, "utf8")).toBe("content")
      nodeFs.writeFileSync(`${dir}/other`, "replaced")
      yield* client.rename(`${dir}/x/y/to`, `${dir}/other`)
      expect(nodeFs.readFileSync(`${dir}/other`, "utf8")).toBe("content")
      yield* expectIdle(manager)
    }))

  it.scoped("a missing source fails as NotFound without creating anything", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient({ durable: true })
      const before = snapshot(dir)
      const error = yield* Effect.flip(client.rename(`${dir}/missing`, `${dir}/new/parent/to`))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", path: `${dir}/missing` })
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))

  it.scoped("the same path (in any spelling) is a no-op; a missing one is NotFound, a dangling link is there", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/same`, "s")
      expect(yield* client.rename(`${dir}/same`, `${dir}/./same/`)).toBeUndefined()
      expect(nodeFs.readFileSync(`${dir}/same`, "utf8")).toBe("s")
      const missing = yield* Effect.flip(client.rename(`${dir}/missing`, `${dir}/missing`))
      expect(missing).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", path: `${dir}/missing` })
      nodeFs.symlinkSync(`${dir}/nowhere`, `${dir}/dangling`)
      yield* client.rename(`${dir}/dangling`, `${dir}/dangling`)
      nodeFs.symlinkSync("loop", `${dir}/loop`)
      yield* client.rename(`${dir}/loop`, `${dir}/loop`)
      expect(nodeFs.readdirSync(dir).sort()).toEqual(["dangling", "loop", "same"])
      yield* expectIdle(manager)
    }))
})

describe("Client.modify", () => {
  it.scoped("keeps the permissions of the file it edits; copy gives the source's; write and a given mode make new ones", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const modeOf = (name: string) => nodeFs.statSync(`${dir}/${name}`).mode & 0o777
      nodeFs.writeFileSync(`${dir}/secret`, "1", { mode: 0o600 })
      nodeFs.chmodSync(`${dir}/secret`, 0o600)
      yield* client.modify(`${dir}/secret`, () => "2")
      expect(modeOf("secret")).toBe(0o600)
      yield* client.modifyJson(`${dir}/secret`, Schema.Number, (n) => Option.getOrElse(n, () => 0) + 1)
      expect([nodeFs.readFileSync(`${dir}/secret`, "utf8"), modeOf("secret")]).toEqual(["3", 0o600])
      yield* client.copy(`${dir}/secret`, `${dir}/copy`)
      expect(modeOf("copy")).toBe(0o600)
      // A mode given wins; a file made by modify has the default ones.
      yield* client.modify(`${dir}/secret`, () => "4", { mode: 0o640 })
      expect(modeOf("secret")).toBe(0o640)
      yield* client.modify(`${dir}/fresh`, () => "new")
      expect(modeOf("fresh")).toBe(0o666 & ~process.umask())
      // write replaces the file with a new one, as it always has: its mode, or the default.
      yield* client.write(`${dir}/copy`, "w")
      expect(modeOf("copy")).toBe(0o666 & ~process.umask())
      yield* expectIdle(manager)
    }))

  it.scoped("passes the current content (None when missing) and writes the result", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const seen: Array<Option.Option<string>> = []
      const bump = (current: Option.Option<Uint8Array>) => {
        seen.push(Option.map(current, text))
        return String(Number(Option.getOrElse(Option.map(current, text), () => "0")) + 1)
      }
      expect(yield* client.modify(`${dir}/n/counter`, bump)).toBe("1")
      expect(yield* client.modify(`${dir}/n/counter`, (c) => Effect.succeed(bump(c)))).toBe("2")
      expect(seen).toEqual([Option.none(), Option.some("1")])
      expect(nodeFs.readFileSync(`${dir}/n/counter`, "utf8")).toBe("2")
      yield* expectIdle(manager)
    }))

  it.scoped("a failing update leaves the file untouched and no temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/doc`, "old")
      const error = yield* Effect.flip(client.modify(`${dir}/doc`, () => Effect.fail("no" as const)))
      expect(error).toBe("no")
      expect(nodeFs.readFileSync(`${dir}/doc`, "utf8")).toBe("old")
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))
})

describe("Client JSON documents", () => {
  const User = Schema.Struct({ name: Schema.String, visits: Schema.Number.pipe(Schema.nonNegative()) })

  it.scoped("writes, reads and modifies typed documents", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      yield* client.writeJson(`${dir}/u.json`, User, { name: "ada", visits: 1 })
      expect(JSON.parse(nodeFs.readFileSync(`${dir}/u.json`, "utf8"))).toEqual({ name: "ada", visits: 1 })
      expect(yield* client.readJson(`${dir}/u.json`, User)).toEqual({ name: "ada", visits: 1 })
      const next = yield* client.modifyJson(`${dir}/u.json`, User, (current) =>
        Option.match(current, {
          onNone: () => ({ name: "new", visits: 0 }),
          onSome: (u) => ({ ...u, visits: u.visits + 1 })
        }))
      expect(next).toEqual({ name: "ada", visits: 2 })
      const created = yield* client.modifyJson(`${dir}/v.json`, User, (c) =>
        Option.getOrElse(c, () => ({ name: "v", visits: 0 })))
      expect(created).toEqual({ name: "v", visits: 0 })
      yield* expectIdle(manager)
    }))

  it.scoped("decode and encode failures are typed and write nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/bad.json`, JSON.stringify({ name: 1 }))
      nodeFs.writeFileSync(`${dir}/notjson`, "{")
      const before = snapshot(dir)
      expect(yield* Effect.flip(client.readJson(`${dir}/bad.json`, User))).toMatchObject({
        _tag: "DecodeError",
        operation: "Client.readJson"
      })
      expect((yield* Effect.flip(client.readJson(`${dir}/notjson`, User)))._tag).toBe("DecodeError")
      expect((yield* Effect.flip(client.writeJson(`${dir}/new.json`, User, { name: "x", visits: -1 })))._tag).toBe(
        "DecodeError"
      )
      expect(
        (yield* Effect.flip(client.modifyJson(`${dir}/bad.json`, User, (c) => Option.getOrThrow(c))))._tag
      ).toBe("DecodeError")
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))

  it.scoped("a member named __proto__ is a DecodeError naming it, not the decoded object's prototype", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const Settings = Schema.Record({ key: Schema.String, value: Schema.Unknown })
      const documents: ReadonlyArray<readonly [string, string]> = [
        [`{"name":"x","__proto__":{"admin":true}}`, "$.__proto__"],
        // Spelled with an escape, deep in an array.
        [`{"list":[1,{"a b":{"\\u005f_proto__":1}}]}`, `$.list[1]["a b"].__proto__`]
      ]
      for (const [text, where] of documents) {
        nodeFs.writeFileSync(`${dir}/s.json`, text)
        const error = yield* Effect.flip(client.readJson(`${dir}/s.json`, Settings))
        expect(error).toMatchObject({ _tag: "DecodeError", reason: "Decode" })
        expect(error.message).toContain(`the member ${where} would be decoded as the object's prototype`)
        // An identity update would have dropped it: nothing is written.
        const modified = yield* Effect.flip(client.modifyJson(`${dir}/s.json`, Settings, (c) => Option.getOrThrow(c)))
        expect(modified._tag).toBe("DecodeError")
        expect(nodeFs.readFileSync(`${dir}/s.json`, "utf8")).toBe(text)
      }
      // Nor is one written: no read would take it back.
      const parsed = JSON.parse(`{"a":{"__proto__":{"admin":true}}}`)
      const written = yield* Effect.flip(client.writeJson(`${dir}/w.json`, Schema.Unknown, parsed))
      expect(written).toMatchObject({ _tag: "DecodeError", reason: "Encode" })
      expect(written.message).toContain("the member $.a.__proto__ would be decoded as the object's prototype")
      expect(nodeFs.existsSync(`${dir}/w.json`)).toBe(false)
      // The name as a value, or escaped text with no such member, decodes as ever.
      nodeFs.writeFileSync(`${dir}/s.json`, `{"k":"__proto__","\\u0061":"\\u00e9"}`)
      expect(yield* client.readJson(`${dir}/s.json`, Settings)).toEqual({ k: "__proto__", a: "\u00e9" })
      yield* expectIdle(manager)
    }))
})

describe("Client.recover", () => {
  it.scoped("removes leftover temp files (recursively on request) and returns their paths", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.mkdirSync(`${dir}/sub`)
      nodeFs.writeFileSync(`${dir}/keep.txt`, "k")
      nodeFs.writeFileSync(`${dir}/.keep.tmp`, "not ours: no random part")
      const top = leftover(dir, "keep.txt")
      const nested = leftover(`${dir}/sub`, "x")
      const other = leftover(dir, "y", "other")
      expect(yield* client.recover(dir)).toEqual([top])
      expect(yield* client.recover(dir, { recursive: true })).toEqual([nested])
      expect(nodeFs.existsSync(other)).toBe(true)
      expect(nodeFs.readdirSync(dir).sort()).toEqual([".keep.tmp", nodePath.basename(other), "keep.txt", "sub"])
      const custom = yield* makeClient({ tempSuffix: "other", durable: true })
      expect(yield* custom.client.recover(dir)).toEqual([other])
      yield* expectIdle(manager)
      yield* expectIdle(custom.manager)
    }))
})

describe("Client root confinement", () => {
  it.scoped("accepts paths inside the root and refuses lexical and symlink escapes without touching anything", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/root`)
      nodeFs.mkdirSync(`${dir}/outside`)
      nodeFs.symlinkSync(`${dir}/outside`, `${dir}/root/escape`)
      nodeFs.writeFileSync(`${dir}/outside/secret`, "secret")
      const { client, manager } = yield* makeClient({ root: `${dir}/root` })
      yield* client.write(`${dir}/root/inside/ok.txt`, "ok")
      expect(nodeFs.readFileSync(`${dir}/root/inside/ok.txt`, "utf8")).toBe("ok")
      // Links that resolve back inside, reached through a directory link that leads outside:
      // writing them would put the temp file (and the rename) in the outside directory.
      nodeFs.symlinkSync(`${dir}/root/inside/ok.txt`, `${dir}/outside/back-in`)
      nodeFs.symlinkSync("../root/inside/new.txt", `${dir}/outside/dangling-back-in`)
      const before = snapshot(dir)
      const attempts = [
        client.write(`${dir}/root/escape/back-in`, "x"),
        client.write(`${dir}/root/escape/dangling-back-in`, "x"),
        client.delete(`${dir}/root/escape/back-in`),
        client.write(`${dir}/root/../outside/x`, "x"),
        client.write(`${dir}/outside/x`, "x"),
        client.read(`${dir}/root/escape/secret`),
        client.write(`${dir}/root/escape/new/file`, "x"),
        client.delete(`${dir}/root/escape/secret`),
        client.rename(`${dir}/root/inside/ok.txt`, `${dir}/root/escape/stolen`),
        client.collect(`${dir}/root/escape`),
        client.write(`${dir}/root`, "x")
      ]
      for (const attempt of attempts) {
        const error = yield* Effect.flip(attempt)
        expect(error._tag).toBe("InvalidPathError")
        expect(["OutsideRoot", "Root"]).toContain((error as { reason: string }).reason)
      }
      expect(snapshot(dir)).toEqual(before)
      expect(yield* client.collect(`${dir}/root`)).toEqual(expect.arrayContaining(["inside", "escape"]))
      yield* expectIdle(manager)
    }))

  it.effect("a relative root, an empty or separator-laden tempSuffix are refused at construction", () =>
    Effect.gen(function*() {
      for (const options of [{ root: "data" }, { tempSuffix: "" }, { tempSuffix: "a/b" }]) {
        const error = yield* Effect.flip(makeClient(options))
        expect(error._tag).toBe("InvalidPathError")
      }
    }))
})

describe("Client bad input", () => {
  it.scoped("relative, empty, NUL-containing and root paths fail with InvalidPathError and change nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/f`, "f")
      const before = snapshot(dir)
      const cases: Array<[Effect.Effect<unknown, { _tag: string }>, string]> = [
        [client.write("relative.txt", "x"), "Relative"],
        [client.write("", "x"), "Empty"],
        [client.write(`${dir}/a\0b`, "x"), "NulByte"],
        [client.write("/", "x"), "Root"],
        [client.read("/"), "Root"],
        [client.readString("./f"), "Relative"],
        [client.delete("/", { recursive: true }), "Root"],
        [client.rename(`${dir}/f`, "/"), "Root"],
        [client.rename("/", `${dir}/g`), "Root"],
        [client.modify("/", () => "x"), "Root"],
        [client.collect("dir"), "Relative"],
        [client.recover(""), "Empty"],
        [Stream.runDrain(client.stream("rel")), "Relative"],
        [Stream.run(Stream.make(bytesOf("x")), client.sink("/")), "Root"],
        [client.write(42 as unknown as string, "x"), "NotAString"]
      ]
      for (const [attempt, reason] of cases) {
        const error = yield* Effect.flip(attempt)
        expect(error).toMatchObject({ _tag: "InvalidPathError", reason })
      }
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))
})

describe("Client layers and observability", () => {
  it.effect("layerConfig reads the options from Config", () =>
    Effect.gen(function*() {
      const client = yield* Client.Client
      expect(client.durable).toBe(true)
    }).pipe(
      Effect.provide(
        Client.layerConfig().pipe(
          Layer.provide(Layer.merge(LockManager.layer, NodeFileSystem.layer)),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["PERSISTENCE_DURABLE", "true"]]))))
        )
      )
    ))

  it.scoped("each operation runs in a span named after it with the path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient()
      const { spans } = yield* recordSpans(Effect.gen(function*() {
        yield* client.write(`${dir}/t`, "t")
        yield* client.read(`${dir}/t`)
        yield* client.collect(dir)
        yield* client.delete(`${dir}/t`)
      }))
      const names = spans.map((s) => s.name)
      expect(names).toEqual(["Client.write", "Client.read", "Client.collect", "Client.delete"])
      expect(spans[0].attributes.get("persistence.path")).toBe(`${dir}/t`)
    }))
})

describe("Client error reasons", () => {
  // The Node platform maps only some errno codes; the library reads the code.
  // The temp file is created by `open` (durable) or `writeFile` (not durable), both with flag "wx".
  const failingWrites = (code: string) =>
    Layer.effect(
      FileSystem.FileSystem,
      Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => {
        const injected = (method: string, path: string) =>
          Effect.fail(
            new SystemError({
              reason: code === "EACCES" ? "PermissionDenied" : "Unknown",
              module: "FileSystem",
              method,
              pathOrDescriptor: path,
              cause: Object.assign(new Error(`${code}: injected`), { code })
            })
          )
        return {
          ...fs,
          open: (path, options) => options?.flag === "wx" ? injected("open", path) : fs.open(path, options),
          writeFile: (path, data, options) =>
            options?.flag === "wx" ? injected("writeFile", path) : fs.writeFile(path, data, options)
        }
      })
    ).pipe(Layer.provide(NodeFileSystem.layer))

  const cases: Array<[string, string]> = [
    ["EACCES", "PermissionDenied"],
    ["EPERM", "PermissionDenied"],
    ["EEXIST", "AlreadyExists"],
    ["ENOSPC", "NoSpace"],
    ["EIO", "IoError"],
    ["EMFILE", "Unknown"]
  ]
  for (const [code, reason] of cases) {
    for (const durable of [false, true]) {
      it.scoped(`${code} is reported as ${reason}, the target is untouched (durable: ${durable})`, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const { client, manager } = yield* makeClient({ durable }, failingWrites(code))
          nodeFs.writeFileSync(`${dir}/t`, "old")
          const error = yield* Effect.flip(client.write(`${dir}/t`, "new"))
          expect(error).toMatchObject({
            _tag: "FileSystemError",
            reason,
            code,
            operation: "Client.write",
            path: `${dir}/t`
          })
          if (error._tag === "FileSystemError") expect(error.cause).toBeInstanceOf(SystemError)
          expect(nodeFs.readFileSync(`${dir}/t`, "utf8")).toBe("old")
          expect(tempFiles(dir)).toEqual([])
          yield* expectIdle(manager)
        }))
    }
  }
})

describe("Client under a lock that is lost", () => {
  // A manager whose locks report loss, as a remote manager does when its connection drops.
  const losingManager = Effect.map(LockManager.make, (real): LockManager.LockManagerService => {
    const lose = (lock: LockManager.Lock): LockManager.Lock => ({
      ...lock,
      lost: Effect.void,
      ensureHeld: (operation) => Effect.fail(new LockLostError({ operation, paths: lock.paths, lockId: lock.id }))
    })
    return {
      ...real,
      lock: (path, mode) => Effect.map(real.lock(path, mode), lose),
      lockAll: (paths) => Effect.map(real.lockAll(paths), lose),
      withLock: (path, mode) => (effect) =>
        real.withLock(path, mode)((lock) => Effect.isEffect(effect) ? effect : effect(lose(lock))),
      withLockAll: (paths) => (effect) =>
        real.withLockAll(paths)((lock) => Effect.isEffect(effect) ? effect : effect(lose(lock)))
    }
  })

  it.scoped("no mutation commits: each fails with LockLostError and the disk is unchanged", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const manager = yield* losingManager
      const client = yield* Client.make({ durable: true }).pipe(
        Effect.provideService(LockManager.LockManager, manager),
        Effect.provide(NodeFileSystem.layer)
      )
      nodeFs.writeFileSync(`${dir}/t`, "old")
      leftover(dir, "t")
      const before = snapshot(dir)
      const attempts: Array<Effect.Effect<unknown, { _tag: string }>> = [
        client.write(`${dir}/t`, "new"),
        client.modify(`${dir}/t`, () => "new"),
        Stream.run(Stream.make(bytesOf("new")), client.sink(`${dir}/t`)),
        client.delete(`${dir}/t`),
        client.rename(`${dir}/t`, `${dir}/u`),
        client.recover(dir)
      ]
      for (const attempt of attempts) {
        expect(yield* Effect.flip(attempt)).toMatchObject({ _tag: "LockLostError" })
      }
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))
})

describe("Client.recover on roots", () => {
  it.scoped("a confined client can recover its root; \"/\" cannot be recovered", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient({ root: dir })
      const temp = leftover(dir, "x")
      expect(yield* client.recover(dir)).toEqual([temp])
      const plain = yield* makeClient()
      expect(yield* Effect.flip(plain.client.recover("/"))).toMatchObject({ _tag: "InvalidPathError", reason: "Root" })
      yield* expectIdle(manager)
      yield* expectIdle(plain.manager)
    }))
})
