/**
 * The Promise facade's Client: the seed's usage section as written, each
 * method and option, Node-style errors, and an Effect writer coordinating with
 * a Promise reader on one lock manager.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { once } from "node:events"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Readable, Writable } from "node:stream"
import { describe, expect, it } from "vitest"
import * as EffectClient from "../src/Client.js"
import { toNodeError } from "../src/internal/promise/errors.js"
import {
  CommitError,
  DecodeError,
  FileSystemError,
  type FileSystemReason,
  InvalidPathError
} from "../src/PersistenceError.js"
import { Client, LockManager } from "../src/promise.js"
import { leftoverName, tempFiles } from "./utils/client.js"
import { expectIdle, type NodeError, perTestDirectory, rejection, setup, stats } from "./utils/promise.js"

const { at, dir: currentDir } = perTestDirectory("persistence-promise-")

/** A Writable that keeps what it receives (stands in for process.stdout). */
const collector = () => {
  const chunks: Array<Buffer> = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk)
      callback()
    }
  })
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") }
}

describe("the seed's usage section", () => {
  it("runs as written (import changed; a temp currentDir() instead of /tmp/example.json)", async () => {
    // Setup
    const manager = new LockManager()
    const client = new Client({ manager, durable: true })
    const file = at("example.json")

    // Write to a file
    await client.write(file, JSON.stringify({ message: "Hello, World!" }))

    // Read from a file
    const data = await client.read(file, "utf8")
    expect(JSON.parse(data)).toEqual({ message: "Hello, World!" })

    // Collect directory contents
    const entries = await client.collect(currentDir(), { encoding: "utf8", withFileTypes: false })
    expect(entries).toEqual(["example.json"])

    // Delete a file or directory
    await client.delete(file)
    expect(fs.existsSync(file)).toBe(false)

    // Create a write stream and write to a file
    const ws = await client.createWriteStream(file)
    ws.write(JSON.stringify({ message: "Streaming Hello, World!" }) + `\n`)
    ws.end()
    await once(ws, "finish")

    // Create a read stream and read from a file
    const rs = await client.createReadStream(file)
    const stdout = collector()
    rs.pipe(stdout.stream)
    await once(rs, "close")
    expect(stdout.text()).toBe(`{"message":"Streaming Hello, World!"}\n`)

    expect(client.durable).toBe(true)
    expectIdle(manager)
  })
})

describe("promise Client: construction", () => {
  it("takes the seed's options; durable defaults to false; the Effect client is exposed", async () => {
    const manager = new LockManager()
    const client = new Client({ manager, tempSuffix: "part", errorHandler: () => {} })
    expect(client.durable).toBe(false)
    expect(client.manager).toBe(manager)
    expect(client.service.durable).toBe(false)
    // The Effect client shares the manager: its locks show in the same stats.
    const held = await manager.acquire(at("f"), "write")
    const reading = Effect.runPromise(client.service.readString(at("f")))
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    fs.writeFileSync(at("f"), "x")
    manager.release(held)
    expect(await reading).toBe("x")
    expectIdle(manager)
  })

  it("refuses a missing manager and a bad tempSuffix synchronously, as Node refuses bad arguments", () => {
    expect(() => new Client({} as { manager: LockManager })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" })
    )
    const manager = new LockManager()
    expect(() => new Client({ manager, tempSuffix: "a/b" })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_VALUE" })
    )
    expect(() => new Client({ manager, errorHandler: 1 as unknown as typeof console.error })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" })
    )
    // The original kept a durable that is no boolean and failed every write on it
    // (fs's `flush` must be a boolean); a string "false" would otherwise mean true.
    for (const durable of ["false", 1, {}]) {
      expect(() => new Client({ manager, durable: durable as boolean })).toThrow(
        expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE", message: expect.stringContaining("options.durable") })
      )
    }
    // The facade offers no confinement: a root would be ignored, and writes would go outside it.
    for (const root of ["/srv/data", ""]) {
      expect(() => new Client({ manager, root } as { manager: LockManager })).toThrow(
        expect.objectContaining({ code: "ERR_INVALID_ARG_VALUE", message: expect.stringContaining("options.root") })
      )
    }
    // As durable: null, a null root is no root.
    expect(new Client({ manager, root: null } as { manager: LockManager }).durable).toBe(false)
    // A service that is none was a TypeError (a WeakMap key) or failed on first use.
    for (const service of ["x", {}]) {
      expect(() => new LockManager({ service: service as never })).toThrow(
        expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE", message: expect.stringContaining("options.service") })
      )
    }
    // As the original, a null errorHandler is the default.
    expect(() => new LockManager({ errorHandler: null as never })).not.toThrow()
    expect(new LockManager({ service: null as never }).service).toBeDefined()
    expect(new Client({ manager, durable: null as never, errorHandler: null as never }).durable).toBe(false)
  })
})

describe("promise Client: read", () => {
  it("a Buffer by default, a string with an encoding (string or object form, Node's encodings)", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f.txt"), "héllo")
    const buffer = await client.read(at("f.txt"))
    expect(Buffer.isBuffer(buffer)).toBe(true)
    expect(buffer.toString("utf8")).toBe("héllo")
    expect(await client.read(at("f.txt"), "utf8")).toBe("héllo")
    expect(await client.read(at("f.txt"), { encoding: "utf8" })).toBe("héllo")
    expect(await client.read(at("f.txt"), { encoding: null })).toEqual(Buffer.from("héllo"))
    expect(await client.read(at("f.txt"), null)).toEqual(Buffer.from("héllo"))
    expect(await client.read(at("f.txt"), "hex")).toBe(Buffer.from("héllo").toString("hex"))
    expect(await client.read(at("f.txt"), { encoding: "latin1", flag: "r" })).toBe(
      Buffer.from("héllo").toString("latin1")
    )
    expect(await client.read(at("./", "f.txt"), "base64")).toBe(Buffer.from("héllo").toString("base64"))
    expectIdle(manager)
  })

  it("waits for a write lock on the path or an ancestor", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f.txt"), "old")
    const held = await manager.acquire(currentDir(), "write")
    const reading = client.read(at("f.txt"), "utf8")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    fs.writeFileSync(at("f.txt"), "new")
    manager.release(held)
    expect(await reading).toBe("new")
    expectIdle(manager)
  })

  it("an abort while waiting rejects with AbortError and leaves the queue", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f.txt"), "x")
    const held = await manager.acquire(at("f.txt"), "write")
    const controller = new AbortController()
    const reading = client.read(at("f.txt"), { encoding: "utf8", signal: controller.signal })
    expect(stats(manager)).toMatchObject({ pending: 1 })
    controller.abort()
    const error = await rejection(reading)
    expect(error.name).toBe("AbortError")
    expect(error.code).toBe("ABORT_ERR")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 0 })
    manager.release(held)
    expect((await rejection(client.read(at("f.txt"), { signal: AbortSignal.abort() }))).code).toBe("ABORT_ERR")
    expectIdle(manager)
  })

  it("Node's errors for I/O (with Node's message), the original's for paths, Node's for options", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("file"), "x")
    const missing = await rejection(client.read(at("missing")))
    expect(missing).toBeInstanceOf(Error)
    expect(missing.code).toBe("ENOENT")
    expect(missing.path).toBe(at("missing"))
    expect(missing.syscall).toBe("open")
    expect(missing.message).toBe(`ENOENT: no such file or directory, open '${at("missing")}'`)
    expect(missing.cause).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", operation: "Client.read" })
    expect((await rejection(client.read(currentDir()))).code).toBe("EISDIR")
    expect((await rejection(client.read(at("file", "below")))).code).toBe("ENOTDIR")
    const relative = await rejection(client.read("relative/path"))
    expect(relative.constructor).toBe(Error)
    expect(relative.message).toBe("Path must be absolute.")
    expect(relative.code).toBeUndefined()
    expect((await rejection(client.read("/"))).message).toBe("Operations on root are not supported.")
    const nul = await rejection(client.read(at("a\0b")))
    expect(nul).toBeInstanceOf(TypeError)
    expect(nul.code).toBe("ERR_INVALID_ARG_VALUE")
    expect((await rejection(client.read(at("file"), "klingon" as BufferEncoding))).code).toBe(
      "ERR_INVALID_ARG_VALUE"
    )
    expect((await rejection(client.read(at("file"), { flag: "w" as "r" }))).code).toBe("ERR_INVALID_ARG_VALUE")
    expectIdle(manager)
  })
})

describe("promise Client: write", () => {
  it("strings (with encodings), Buffers, TypedArrays and DataViews; parents are created, no temp file left", async () => {
    const { client, manager } = setup()
    await client.write(at("a", "b", "s.txt"), "héllo")
    expect(fs.readFileSync(at("a", "b", "s.txt"), "utf8")).toBe("héllo")
    await client.write(at("hex"), "68656c6c6f", "hex")
    expect(fs.readFileSync(at("hex"), "utf8")).toBe("hello")
    await client.write(at("b64"), Buffer.from("hi").toString("base64"), { encoding: "base64" })
    expect(fs.readFileSync(at("b64"), "utf8")).toBe("hi")
    await client.write(at("buffer"), Buffer.from("buffer"))
    expect(fs.readFileSync(at("buffer"), "utf8")).toBe("buffer")
    const words = new Uint16Array([0x6968, 0x2121]) // "hi!!" little-endian
    await client.write(at("u16"), words)
    expect(fs.readFileSync(at("u16"))).toEqual(Buffer.from(words.buffer))
    const backing = new Uint8Array([0, 1, 2, 3, 4, 5])
    await client.write(at("view"), new DataView(backing.buffer, 2, 3))
    expect([...fs.readFileSync(at("view"))]).toEqual([2, 3, 4])
    await client.write(at("empty"), "")
    expect(fs.readFileSync(at("empty"), "utf8")).toBe("")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("iterables, async iterables and Readable streams, chunk by chunk under the write lock", async () => {
    const { client, manager } = setup()
    await client.write(at("iter"), ["a", Buffer.from("b"), new Uint8Array([99])])
    expect(fs.readFileSync(at("iter"), "utf8")).toBe("abc")
    function* generate() {
      yield "x"
      yield "é"
    }
    await client.write(at("gen"), generate(), "latin1")
    expect(fs.readFileSync(at("gen"), "latin1")).toBe("xé")
    async function* produce() {
      for (let i = 0; i < 100; i++) yield `${i},`
    }
    await client.write(at("async"), produce())
    expect(fs.readFileSync(at("async"), "utf8")).toBe(Array.from({ length: 100 }, (_, i) => `${i},`).join(""))
    const big = Buffer.alloc(1024 * 1024, "z")
    await client.write(at("stream"), Readable.from([big.subarray(0, 300_000), big.subarray(300_000)]))
    expect(fs.readFileSync(at("stream")).equals(big)).toBe(true)
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("a failing source rejects with its error, keeps the old content and removes the temp file", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const boom = new Error("source failed")
    async function* failing() {
      yield "partial"
      throw boom
    }
    expect(await rejection(client.write(at("f"), failing()))).toBe(boom)
    const broken = new Readable({
      read() {
        this.push("partial")
        this.destroy(boom)
      }
    })
    expect(await rejection(client.write(at("f"), broken))).toBe(boom)
    const badItem = await rejection(client.write(at("f"), [1, 2] as unknown as Iterable<string>))
    expect(badItem.code).toBe("ERR_INVALID_ARG_TYPE")
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    const badData = await rejection(client.write(at("f"), 42 as unknown as string))
    expect(badData.code).toBe("ERR_INVALID_ARG_TYPE")
    expectIdle(manager)
  })

  it("a generator is read one item at a time, as it is written, and closed when the write ends before it", async () => {
    const { client, manager } = setup()
    const item = Buffer.alloc(1024, "g")
    // Bytes in the temp file when each item is asked for: all the items before it.
    const written: Array<number> = []
    function* paced() {
      for (let i = 0; i < 20; i++) {
        const [temp] = tempFiles(currentDir())
        written.push(temp === undefined ? 0 : fs.statSync(at(temp)).size)
        yield item
      }
    }
    await client.write(at("paced"), paced())
    expect(written).toEqual(Array.from({ length: 20 }, (_, i) => i * item.length))
    expect(fs.statSync(at("paced")).size).toBe(20 * item.length)

    fs.writeFileSync(at("f"), "old")
    const log: Array<string> = []
    function* badEleventh() {
      try {
        for (let i = 0; i < 10_000; i++) {
          log.push("item")
          yield i === 10 ? { bad: i } : "a"
        }
      } finally {
        log.push("closed")
      }
    }
    expect((await rejection(client.write(at("f"), badEleventh() as Iterable<string>))).code).toBe(
      "ERR_INVALID_ARG_TYPE"
    )
    expect(log).toEqual([...Array(11).fill("item"), "closed"])

    log.length = 0
    const abort = new AbortController()
    function* endless() {
      try {
        for (let i = 0;; i++) {
          if (i === 100) abort.abort()
          yield "a"
        }
      } finally {
        log.push("closed")
      }
    }
    expect((await rejection(client.write(at("f"), endless(), { signal: abort.signal }))).code).toBe("ABORT_ERR")
    expect(log).toEqual(["closed"])
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("iterables and their items as Node's writeFile takes them, side by side with it", async () => {
    const { client, manager } = setup()
    const sources: Array<readonly [string, () => unknown]> = [
      ["byte values, an ArrayBuffer, text", () => [[104, 105], new Uint8Array([33]).buffer, "é"]],
      ["items awaited", () => [Promise.resolve("a"), "b"]],
      ["an async iterator key that is not a method", () => ({
        [Symbol.asyncIterator]: undefined,
        *[Symbol.iterator]() {
          yield "sync"
        }
      })],
      ["a bad item", () => [{ bad: 1 }]],
      ["a number", () => [1]],
      ["an iterator key that is not a method", () => ({ [Symbol.iterator]: undefined })]
    ]
    for (const [name, source] of sources) {
      const outcome = (promise: Promise<void>, file: string) =>
        promise.then(
          () => fs.readFileSync(file, "latin1"),
          (error) => `rejected ${(error as NodeJS.ErrnoException).code}`
        )
      const theirs = await outcome(fs.promises.writeFile(at("node"), source() as Iterable<string>), at("node"))
      const ours = await outcome(client.write(at("facade"), source() as Iterable<string>), at("facade"))
      expect(ours, name).toBe(theirs)
    }
    expect(tempFiles(currentDir())).toEqual([])

    // An async iterator that has ended, or thrown, is not closed again (as `for await` does not).
    for (const end of ["done", "throw"]) {
      const log: Array<string> = []
      const iterable: AsyncIterable<string> = {
        [Symbol.asyncIterator]: () => ({
          next: async () => {
            if (log.push("next") === 1) return { done: false, value: "x" }
            if (end === "throw") throw new Error("source failed")
            return { done: true, value: undefined }
          },
          return: async () => {
            log.push("return")
            return { done: true, value: undefined }
          }
        })
      }
      await client.write(at("closed"), iterable).catch(() => {})
      expect(log, end).toEqual(["next", "next"])
    }
    expectIdle(manager)
  })

  it("mode sets the permission bits of the new file", async () => {
    const { client, manager } = setup()
    await client.write(at("private"), "secret", { mode: 0o600 })
    expect(fs.statSync(at("private")).mode & 0o777).toBe(0o600)
    await client.write(at("octal"), "x", { mode: "640" })
    expect(fs.statSync(at("octal")).mode & 0o777).toBe(0o640)
    expect((await rejection(client.write(at("bad"), "x", { mode: -1 }))).code).toBe("ERR_OUT_OF_RANGE")
    expect((await rejection(client.write(at("bad"), "x", { flag: "a" as "w" }))).code).toBe("ERR_INVALID_ARG_VALUE")
    expectIdle(manager)
  })

  it("flush: true writes durably on a non-durable client (and shares its manager)", async () => {
    const { client, manager } = setup()
    const held = await manager.acquire(at("f"), "read")
    const writing = client.write(at("f"), "flushed", { flush: true })
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    manager.release(held)
    await writing
    expect(fs.readFileSync(at("f"), "utf8")).toBe("flushed")
    const durable = setup({ durable: true })
    await durable.client.write(at("g"), "durable", { flush: false })
    expect(fs.readFileSync(at("g"), "utf8")).toBe("durable")
    expectIdle(manager)
    expectIdle(durable.manager)
  })

  it("an abort while waiting for the lock, or while the source is being written, changes nothing", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const held = await manager.acquire(at("f"), "read")
    const early = new AbortController()
    const waiting = client.write(at("f"), "new", { signal: early.signal })
    early.abort()
    expect((await rejection(waiting)).code).toBe("ABORT_ERR")
    manager.release(held)

    // The source stalls after its first chunk: abort then.
    const late = new AbortController()
    let firstChunkPulled!: () => void
    const pulled = new Promise<void>((resolve) => firstChunkPulled = resolve)
    async function* stalled() {
      yield "partial"
      firstChunkPulled()
      await new Promise(() => {})
    }
    const writing = client.write(at("f"), stalled(), { signal: late.signal })
    await pulled
    expect(tempFiles(currentDir())).toHaveLength(1)
    late.abort()
    expect((await rejection(writing)).code).toBe("ABORT_ERR")
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("Node-style errors: ENOTDIR under a file, EISDIR over a directory, EACCES (not as root)", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("file"), "x")
    expect((await rejection(client.write(at("file", "child"), "x"))).code).toBe("ENOTDIR")
    fs.mkdirSync(at("dir"))
    fs.writeFileSync(at("dir", "inside"), "x")
    const overDir = await rejection(client.write(at("dir"), "x"))
    expect(["EISDIR", "ENOTEMPTY", "EEXIST"]).toContain(overDir.code)
    if (process.getuid?.() !== 0) {
      fs.mkdirSync(at("locked"), { mode: 0o500 })
      expect((await rejection(client.write(at("locked", "f"), "x"))).code).toBe("EACCES")
    }
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })
})

describe("promise Client: collect", () => {
  const tree = () => {
    fs.mkdirSync(at("sub", "deep"), { recursive: true })
    fs.writeFileSync(at("a.txt"), "a")
    fs.writeFileSync(at("sub", "b.txt"), "b")
    fs.writeFileSync(at("sub", "deep", "c.txt"), "c")
    // A leftover temp file of a crashed writer is not listed.
    fs.writeFileSync(at(leftoverName("a.txt")), "partial")
  }

  it("names as strings (any encoding), Buffers, recursively", async () => {
    const { client, manager } = setup()
    tree()
    expect((await client.collect(currentDir())).sort()).toEqual(["a.txt", "sub"])
    expect((await client.collect(currentDir(), "utf8")).sort()).toEqual(["a.txt", "sub"])
    expect((await client.collect(currentDir(), null)).sort()).toEqual(["a.txt", "sub"])
    expect((await client.collect(currentDir(), { recursive: true })).sort()).toEqual(
      ["a.txt", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt"]
    )
    const buffers = await client.collect(currentDir(), { encoding: "buffer" })
    expect(buffers.every((name) => Buffer.isBuffer(name))).toBe(true)
    expect(buffers.map((name) => name.toString()).sort()).toEqual(["a.txt", "sub"])
    expect((await client.collect(currentDir(), "buffer")).map(String).sort()).toEqual(["a.txt", "sub"])
    expect((await client.collect(currentDir(), "hex")).sort()).toEqual(
      [Buffer.from("a.txt").toString("hex"), Buffer.from("sub").toString("hex")].sort()
    )
    expectIdle(manager)
  })

  it("withFileTypes: Dirent-like entries with name, parentPath/path and type checks, also recursive and as Buffers", async () => {
    const { client, manager } = setup()
    tree()
    const entries = await client.collect(currentDir(), { withFileTypes: true })
    const byName = new Map(entries.map((entry) => [entry.name, entry]))
    expect([...byName.keys()].sort()).toEqual(["a.txt", "sub"])
    const file = byName.get("a.txt")!
    expect(file.isFile()).toBe(true)
    expect(file.isDirectory()).toBe(false)
    expect(file.isSymbolicLink()).toBe(false)
    expect(file.isFIFO() || file.isSocket() || file.isBlockDevice() || file.isCharacterDevice()).toBe(false)
    expect(file.parentPath).toBe(currentDir())
    expect(file.path).toBe(currentDir())
    expect(byName.get("sub")!.isDirectory()).toBe(true)

    // Recursive: as Node, `name` is the base name and `parentPath` its directory.
    const all = await client.collect(currentDir(), { withFileTypes: true, recursive: true })
    const shown = all.map((e) =>
      `${nodePath.relative(currentDir(), nodePath.join(e.parentPath, e.name))}:${e.isDirectory()}`
    )
    expect(shown.sort()).toEqual([
      "a.txt:false",
      "sub/b.txt:false",
      "sub/deep/c.txt:false",
      "sub/deep:true",
      "sub:true"
    ])
    const deep = all.find((e) => e.name === "c.txt")!
    expect(deep.parentPath).toBe(at("sub", "deep"))

    const buffers = await client.collect(currentDir(), { encoding: "buffer", withFileTypes: true })
    expect(buffers.every((entry) => Buffer.isBuffer(entry.name))).toBe(true)
    expect(buffers.map((entry) => entry.name.toString()).sort()).toEqual(["a.txt", "sub"])
    expectIdle(manager)
  })

  it("the root can be listed; errors are ENOENT / ENOTDIR; an abort while waiting rejects", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("file"), "x")
    expect(await client.collect("/")).toContain(nodePath.relative("/", os.tmpdir()).split("/")[0])
    expect((await rejection(client.collect(at("missing")))).code).toBe("ENOENT")
    expect((await rejection(client.collect(at("file")))).code).toBe("ENOTDIR")
    const held = await manager.acquire(currentDir(), "delete")
    const controller = new AbortController()
    const listing = client.collect(currentDir(), { signal: controller.signal })
    expect(stats(manager)).toMatchObject({ pending: 1 })
    controller.abort()
    expect((await rejection(listing)).code).toBe("ABORT_ERR")
    manager.release(held)
    expectIdle(manager)
  })
})

describe("promise Client: delete and rename", () => {
  it("delete removes files, directories with recursive, and is quiet with force", async () => {
    const { client, manager } = setup()
    fs.mkdirSync(at("d", "e"), { recursive: true })
    fs.writeFileSync(at("d", "e", "f"), "x")
    fs.writeFileSync(at("file"), "x")
    await client.delete(at("file"))
    expect(fs.existsSync(at("file"))).toBe(false)
    const notRecursive = await rejection(client.delete(at("d")))
    expect(notRecursive.code).toBe("ERR_FS_EISDIR")
    expect(fs.existsSync(at("d", "e", "f"))).toBe(true)
    await client.delete(at("d"), { recursive: true, maxRetries: 2, retryDelay: 5 })
    expect(fs.existsSync(at("d"))).toBe(false)
    expect((await rejection(client.delete(at("missing")))).code).toBe("ENOENT")
    await client.delete(at("missing"), { force: true })
    await client.delete(at("missing", "deeper"), { force: true, recursive: true })
    expect((await rejection(client.delete(at("x"), { maxRetries: -1 }))).code).toBe("ERR_OUT_OF_RANGE")
    expect((await rejection(client.delete("/"))).message).toBe("Operations on root are not supported.")
    expectIdle(manager)
  })

  it("delete of a directory waits for a read lock anywhere below it, and can be aborted", async () => {
    const { client, manager } = setup()
    fs.mkdirSync(at("d"))
    fs.writeFileSync(at("d", "f"), "x")
    const reader = await manager.acquire(at("d", "f"), "read")
    const controller = new AbortController()
    const aborted = client.delete(at("d"), { recursive: true, signal: controller.signal })
    controller.abort()
    expect((await rejection(aborted)).code).toBe("ABORT_ERR")
    const deleting = client.delete(at("d"), { recursive: true })
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    expect(fs.existsSync(at("d", "f"))).toBe(true)
    manager.release(reader)
    await deleting
    expect(fs.existsSync(at("d"))).toBe(false)
    expectIdle(manager)
  })

  it("rename moves under one lock on both paths, creates parents, fails ENOENT for a missing source", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("from"), "content")
    const reader = await manager.acquire(at("to", "nested"), "read")
    const renaming = client.rename(at("from"), at("to", "nested", "file"))
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    manager.release(reader)
    await renaming
    expect(fs.readFileSync(at("to", "nested", "file"), "utf8")).toBe("content")
    expect(fs.existsSync(at("from"))).toBe(false)
    await client.rename(at("to", "nested", "file"), at("to", "nested", "file"))
    const missing = await rejection(client.rename(at("nope"), at("elsewhere", "x")))
    expect(missing.code).toBe("ENOENT")
    expect(fs.existsSync(at("elsewhere"))).toBe(false)
    expect((await rejection(client.rename(at("x"), at("y"), { signal: AbortSignal.abort() }))).code).toBe(
      "ABORT_ERR"
    )
    expectIdle(manager)
  })
})

describe("promise errors: Node codes, the tagged error as cause", () => {
  const reasons: Array<[FileSystemReason, string | undefined]> = [
    ["NotFound", "ENOENT"],
    ["PermissionDenied", "EACCES"],
    ["AlreadyExists", "EEXIST"],
    ["NoSpace", "ENOSPC"],
    ["Busy", "EBUSY"],
    ["NotADirectory", "ENOTDIR"],
    ["IsADirectory", "EISDIR"],
    ["NotEmpty", "ENOTEMPTY"],
    ["CrossDevice", "EXDEV"],
    ["NameTooLong", "ENAMETOOLONG"],
    ["TimedOut", "ETIMEDOUT"],
    ["IoError", "EIO"],
    ["Unknown", undefined]
  ]

  it.each(reasons)("FileSystemError %s without an errno code becomes code %s", (reason, code) => {
    const tagged = new FileSystemError({ operation: "Client.write", path: "/data/f", reason })
    const error = toNodeError(tagged) as NodeError
    expect(error).toBeInstanceOf(Error)
    expect(error.code).toBe(code)
    expect(error.path).toBe("/data/f")
    expect(error.message).toBe(tagged.message)
    expect(error.cause).toBe(tagged)
  })

  it("the errno code of the platform wins (EPERM stays EPERM, ERR_FS_EISDIR stays, as Node's rm gives it)", () => {
    const eperm = new FileSystemError({
      operation: "Client.delete",
      path: "/f",
      reason: "PermissionDenied",
      code: "EPERM"
    })
    expect((toNodeError(eperm) as NodeError).code).toBe("EPERM")
    const rmDir = new FileSystemError({
      operation: "Client.delete",
      path: "/d",
      reason: "IsADirectory",
      code: "ERR_FS_EISDIR"
    })
    expect((toNodeError(rmDir) as NodeError).code).toBe("ERR_FS_EISDIR")
  })

  it("a CommitError says committed: true and keeps the fsync's code", () => {
    const fsync = new FileSystemError({ operation: "Client.write", path: "/d", reason: "IoError", code: "EIO" })
    const error = toNodeError(new CommitError({ operation: "Client.write", path: "/d/f", cause: fsync })) as NodeError
    expect(error.committed).toBe(true)
    expect(error.code).toBe("EIO")
    expect(error.message).toContain("committed")
  })

  it("InvalidPathError is a TypeError with ERR_INVALID_ARG_VALUE; other errors keep their message", () => {
    const invalid = toNodeError(new InvalidPathError({ operation: "Client.read", path: "x", reason: "Relative" }))
    expect(invalid).toBeInstanceOf(TypeError)
    expect((invalid as NodeError).code).toBe("ERR_INVALID_ARG_VALUE")
    const decode = toNodeError(new DecodeError({ operation: "Client.readJson", path: "/f" }))
    expect(decode.message).toContain("does not match its schema")
    const plain = new Error("plain")
    expect(toNodeError(plain)).toBe(plain)
  })
})

describe("promise Client with Effect code on one manager", () => {
  const effectClient = (manager: LockManager) =>
    Effect.runPromise(EffectClient.make().pipe(Effect.provide(manager.layer), Effect.provide(NodeFileSystem.layer)))

  it("a Promise reader queued behind an Effect writer gets the whole new content, never a partial one", async () => {
    const manager = new LockManager()
    const client = new Client({ manager })
    const writer = await effectClient(manager)
    const file = at("doc.txt")
    fs.writeFileSync(file, "old")
    const started = Effect.runSync(Deferred.make<void>())
    const proceed = Effect.runSync(Deferred.make<void>())
    // The Effect writer holds its lock from its first chunk and pauses mid-write.
    const chunks = Stream.concat(
      Stream.make("new-1 "),
      Stream.fromEffect(
        Deferred.succeed(started, undefined).pipe(
          Effect.zipRight(Deferred.await(proceed)),
          Effect.as("new-2 ")
        )
      )
    ).pipe(Stream.concat(Stream.make("new-3")), Stream.encodeText)
    const writing = Effect.runFork(Stream.run(chunks, writer.sink(file)))
    await Effect.runPromise(Deferred.await(started))

    const read = client.read(file, "utf8")
    const streamed = client.createReadStream(file, "utf8")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    expect(fs.readFileSync(file, "utf8")).toBe("old")
    await Effect.runPromise(Deferred.succeed(proceed, undefined))
    await Effect.runPromise(Fiber.join(writing))

    expect(await read).toBe("new-1 new-2 new-3")
    let text = ""
    const rs = await streamed
    for await (const chunk of rs) text += chunk
    expect(text).toBe("new-1 new-2 new-3")
    expectIdle(manager)
  })

  it("an Effect write waits for a Promise read stream to close; the stream sees only the old content", async () => {
    const manager = new LockManager()
    const client = new Client({ manager })
    const writer = await effectClient(manager)
    const file = at("doc.txt")
    fs.writeFileSync(file, "A".repeat(200_000))
    const rs = await client.createReadStream(file, { highWaterMark: 1024 })
    const writing = Effect.runFork(writer.write(file, "B".repeat(200_000)))
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    let text = ""
    for await (const chunk of rs) text += chunk
    expect(text).toBe("A".repeat(200_000))
    await Effect.runPromise(Fiber.join(writing))
    expect(await client.read(file, "latin1")).toBe("B".repeat(200_000))
    expectIdle(manager)
  })

  it("concurrent Effect writers and Promise readers: every read is one whole version", async () => {
    const manager = new LockManager()
    const client = new Client({ manager })
    const writer = await effectClient(manager)
    const file = at("doc.txt")
    const versions = ["A", "B", "C", "D"].map((c) => c.repeat(64 * 1024 + 17))
    fs.writeFileSync(file, versions[0])
    const writes = Effect.runFork(
      Effect.forEach(
        Array.from({ length: 40 }, (_, i) => versions[i % versions.length]),
        (version) =>
          Stream.run(
            Stream.fromIterable([version.slice(0, 1000), version.slice(1000)]).pipe(Stream.encodeText),
            writer.sink(file)
          ),
        { discard: true }
      )
    )
    const reads: Array<Promise<string>> = []
    for (let i = 0; i < 40; i++) {
      reads.push(client.read(file, "utf8"))
      reads.push(
        client.createReadStream(file, { encoding: "utf8", highWaterMark: 4096 }).then(async (rs) => {
          let text = ""
          for await (const chunk of rs) text += chunk
          return text
        })
      )
      await new Promise((resolve) => setImmediate(resolve))
    }
    for (const text of await Promise.all(reads)) expect(versions).toContain(text)
    await Effect.runPromise(Fiber.join(writes))
    expectIdle(manager)
  })
})
