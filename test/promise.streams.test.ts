/**
 * The Promise facade's streams: a Readable that holds the read lock until it
 * closes, and a Writable that writes to a temp file under the write lock and
 * emits `finish` only once the file is committed.
 */
import { FileSystem } from "@effect/platform"
import { SystemError } from "@effect/platform/Error"
import { Deferred, Effect, Layer, Stream } from "effect"
import { once } from "node:events"
import * as fs from "node:fs"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { describe, expect, it } from "vitest"
import type { ClientService } from "../src/Client.js"
import { READ_CHUNK_MAX } from "../src/internal/promise/readStream.js"
import { runReplacement } from "../src/internal/promise/run.js"
import { openWriteStream } from "../src/internal/promise/writeStream.js"
import { makeClient, tempFiles } from "./utils/client.js"
import { expectIdle, type NodeError, perTestDirectory, rejection, setup, stats } from "./utils/promise.js"
import * as Recording from "./utils/recordingFileSystem.js"

const { at, dir: currentDir } = perTestDirectory("persistence-promise-streams-")

/** Everything a Readable gives, with the size of each chunk. */
const drain = async (readable: Readable) => {
  const chunks: Array<Buffer | string> = []
  for await (const chunk of readable) chunks.push(chunk)
  const text = chunks.map((chunk) => typeof chunk === "string" ? chunk : chunk.toString("latin1")).join("")
  return { text, sizes: chunks.map((chunk) => chunk.length) }
}

/** Resolves when the stream emits `close`, with the error it emitted before, if any. */
const closed = (stream: Readable | Writable) =>
  new Promise<Error | undefined>((resolve) => {
    let error: Error | undefined
    stream.on("error", (e) => error = e)
    stream.once("close", () => resolve(error))
  })

/** `write` as a Promise: resolves when the chunk is in the temp file. */
const write = (stream: Writable, chunk: string | Buffer) =>
  new Promise<void>((resolve, reject) => stream.write(chunk, (error) => error ? reject(error) : resolve()))

describe("promise Client.createReadStream", () => {
  it("holds the read lock until the stream closes after its end", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "content")
    const rs = await client.createReadStream(at("f"))
    expect(rs).toBeInstanceOf(Readable)
    expect(stats(manager)).toMatchObject({ held: 1, pending: 0 })
    const writing = client.write(at("f"), "new")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    const done = closed(rs)
    expect((await drain(rs)).text).toBe("content")
    expect(await done).toBeUndefined()
    await writing
    expect(fs.readFileSync(at("f"), "utf8")).toBe("new")
    expectIdle(manager)
  })

  it("start and end (inclusive), encoding, highWaterMark, path and bytesRead", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "0123456789")
    expect((await drain(await client.createReadStream(at("f"), { start: 2, end: 5 }))).text).toBe("2345")
    expect((await drain(await client.createReadStream(at("f"), { start: 7 }))).text).toBe("789")
    expect((await drain(await client.createReadStream(at("f"), { end: 0 }))).text).toBe("0")
    expect((await drain(await client.createReadStream(at("f"), { end: Infinity }))).text).toBe("0123456789")
    expect((await drain(await client.createReadStream(at("f"), { start: 20 }))).text).toBe("")
    const small = await drain(await client.createReadStream(at("f"), { highWaterMark: 3 }))
    expect(small.sizes).toEqual([3, 3, 3, 1])
    expect((await drain(await client.createReadStream(at("f"), "hex"))).text).toBe(
      Buffer.from("0123456789").toString("hex")
    )
    const rs = await client.createReadStream(at("f"), { encoding: "utf8", start: 1, end: 3 })
    expect((rs as Readable & { path: string }).path).toBe(at("f"))
    const text = await drain(rs)
    expect(text).toEqual({ text: "123", sizes: [3] })
    expect((rs as Readable & { bytesRead: number }).bytesRead).toBe(3)
    expectIdle(manager)
  })

  it("an empty file ends at once, and a large one streams whole", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("empty"), "")
    expect((await drain(await client.createReadStream(at("empty")))).text).toBe("")
    const big = Buffer.alloc(3 * 1024 * 1024 + 5)
    for (let i = 0; i < big.length; i++) big[i] = i % 251
    fs.writeFileSync(at("big"), big)
    const received: Array<Buffer> = []
    await pipeline(
      await client.createReadStream(at("big"), { highWaterMark: 16 * 1024 }),
      new Writable({
        highWaterMark: 1024,
        write(chunk: Buffer, _encoding, callback) {
          received.push(chunk)
          setImmediate(callback)
        }
      })
    )
    expect(Buffer.concat(received).equals(big)).toBe(true)
    expectIdle(manager)
  })

  // A stream chunk holds several Readable chunks; a 'data' handler may call
  // read() (and so _read) while the rest of that chunk is being pushed.
  it("a 'data' handler that calls read() or read(0) still gets every byte, then 'end'", async () => {
    const { client, manager } = setup()
    const content = Buffer.alloc(1024 * 1024 + 3)
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) % 253
    fs.writeFileSync(at("f"), content)
    for (const read of [(rs: Readable) => rs.read(), (rs: Readable) => rs.read(0)]) {
      const rs = await client.createReadStream(at("f"), { highWaterMark: 65536 })
      const received: Array<Buffer> = []
      // Typed as fs.ReadStream, as the original's: no encoding, so Buffers.
      rs.on("data", (chunk: Buffer | string) => {
        received.push(chunk as Buffer)
        read(rs)
      })
      await once(rs, "end")
      expect(Buffer.concat(received).equals(content)).toBe(true)
      await once(rs, "close")
    }
    // highWaterMark 1: one byte per chunk, in order.
    const small = content.subarray(0, 5000)
    fs.writeFileSync(at("g"), small)
    const bytes = await drain(await client.createReadStream(at("g"), { highWaterMark: 1 }))
    expect(bytes.sizes.every((size) => size === 1)).toBe(true)
    expect(Buffer.from(bytes.text, "latin1").equals(small)).toBe(true)
    expectIdle(manager)
  }, 30_000) // a stream that stalls never ends: fail in 30 s rather than at the suite's timeout

  it("destroy() releases the lock before close; so does destroy(error)", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "content".repeat(100_000))
    const rs = await client.createReadStream(at("f"), { highWaterMark: 1024 })
    rs.once("data", () => rs.pause())
    await once(rs, "data")
    const done = closed(rs)
    rs.destroy()
    expect(await done).toBeUndefined()
    expectIdle(manager)

    const failing = await client.createReadStream(at("f"))
    const failed = closed(failing)
    const boom = new Error("consumer failed")
    failing.destroy(boom)
    expect(await failed).toBe(boom)
    expectIdle(manager)
  })

  it("a missing file or a directory: the call resolves, the stream emits ENOENT / EISDIR, nothing is held", async () => {
    const { client, manager } = setup()
    const missing = await client.createReadStream(at("missing"))
    const missingError = (await closed(missing)) as NodeError
    expect(missingError.code).toBe("ENOENT")
    expect(missingError.cause).toMatchObject({ _tag: "FileSystemError", operation: "Client.stream" })
    expectIdle(manager)
    const directory = await client.createReadStream(currentDir())
    expect(((await closed(directory)) as NodeError).code).toBe("EISDIR")
    expectIdle(manager)
  })

  it("a large highWaterMark does not size the reads: each allocates 1 MiB at most", async () => {
    const { client, manager } = setup()
    const content = Buffer.alloc(5 * 1024 * 1024 + 7, "z")
    fs.writeFileSync(at("f"), content)
    const chunks: Array<Buffer> = []
    for await (const chunk of await client.createReadStream(at("f"), { highWaterMark: 8 * 1024 * 1024 })) {
      chunks.push(chunk as Buffer)
    }
    expect(Buffer.concat(chunks).equals(content)).toBe(true)
    // A chunk is a view of the block its read allocated.
    for (const chunk of chunks) expect(chunk.buffer.byteLength).toBeLessThanOrEqual(READ_CHUNK_MAX)
    // A huge one on a small file reads it (Node's fs stream would allocate all of it first).
    fs.writeFileSync(at("small"), "hello")
    expect((await drain(await client.createReadStream(at("small"), { highWaterMark: 1e9 }))).text).toBe("hello")
    expectIdle(manager)
  })

  it("bad arguments reject and take nothing", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "x")
    expect((await rejection(client.createReadStream("relative"))).message).toBe("Path must be absolute.")
    expect((await rejection(client.createReadStream(at("f"), { start: 5, end: 2 }))).code).toBe("ERR_OUT_OF_RANGE")
    expect((await rejection(client.createReadStream(at("f"), { start: -1 }))).code).toBe("ERR_OUT_OF_RANGE")
    expect((await rejection(client.createReadStream(at("f"), { flags: "r+" as "r" }))).code).toBe(
      "ERR_INVALID_ARG_VALUE"
    )
    expectIdle(manager)
  })

  it("an abort while waiting for the lock leaves the queue, the stream emits AbortError; so does one after", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "content".repeat(100_000))
    const writer = await manager.acquire(at("f"), "write")
    const early = new AbortController()
    const waiting = client.createReadStream(at("f"), { signal: early.signal })
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    early.abort()
    const aborted = await waiting
    // Out of the queue at once, without waiting for the writer.
    expect(stats(manager)).toMatchObject({ held: 1, pending: 0 })
    expect(((await closed(aborted)) as NodeError).code).toBe("ABORT_ERR")
    manager.release(writer)

    const late = new AbortController()
    const rs = await client.createReadStream(at("f"), { signal: late.signal, highWaterMark: 1024 })
    const done = closed(rs)
    late.abort()
    const error = (await done) as NodeError
    expect(error.name).toBe("AbortError")
    expect(error.code).toBe("ABORT_ERR")
    expectIdle(manager)

    const already = await client.createReadStream(at("f"), { signal: AbortSignal.abort() })
    expect(((await closed(already)) as NodeError).code).toBe("ABORT_ERR")
    expectIdle(manager)
  })
})

describe("promise Client.createWriteStream", () => {
  it("emits finish only once the file is committed: old content before, new content when finish fires", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const ws = await client.createWriteStream(at("f"))
    expect(ws).toBeInstanceOf(Writable)
    // The lock is held and the temp file open when the Promise resolves.
    expect(stats(manager)).toMatchObject({ held: 1 })
    expect(tempFiles(currentDir())).toHaveLength(1)
    await write(ws, "new ")
    await write(ws, "content")
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    const seenAtFinish: Array<string> = []
    ws.on("finish", () => seenAtFinish.push(fs.readFileSync(at("f"), "utf8")))
    const done = closed(ws)
    ws.end()
    expect(await done).toBeUndefined()
    expect(seenAtFinish).toEqual(["new content"])
    expect((ws as Writable & { bytesWritten: number }).bytesWritten).toBe(11)
    expect((ws as Writable & { path: string }).path).toBe(at("f"))
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("holds the write lock for its lifetime: a reader waits and then sees the whole new content", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const ws = await client.createWriteStream(at("f"))
    const reading = client.read(at("f"), "utf8")
    const listing = client.collect(currentDir())
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    await write(ws, "new")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    ws.end()
    expect(await reading).toBe("new")
    expect(await listing).toEqual(["f"])
    expectIdle(manager)
  })

  it("waits for a conflicting lock before resolving; two write streams on one path run in order", async () => {
    const { client, manager } = setup()
    const reader = await manager.acquire(currentDir(), "read")
    let opened = false
    const opening = client.createWriteStream(at("f")).then((ws) => {
      opened = true
      return ws
    })
    const second = client.createWriteStream(at("f"))
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    expect(opened).toBe(false)
    manager.release(reader)
    const first = await opening
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    first.end("first")
    const ws2 = await second
    expect(fs.readFileSync(at("f"), "utf8")).toBe("first")
    const done = closed(ws2)
    ws2.end("second")
    await done
    expect(fs.readFileSync(at("f"), "utf8")).toBe("second")
    expectIdle(manager)
  })

  it("requests arrive in call order: a read called right after createWriteStream waits behind it", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const reader = await manager.acquire(at("f"), "read")
    const opening = client.createWriteStream(at("f"))
    const reading = client.read(at("f"), "utf8")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    manager.release(reader)
    const ws = await opening
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    ws.end("new")
    expect(await reading).toBe("new")
    expectIdle(manager)
  })

  it("destroy() before end discards the temp file, keeps the old content and releases the lock", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const ws = await client.createWriteStream(at("f"))
    let finished = false
    ws.on("finish", () => finished = true)
    await write(ws, "partial")
    const done = closed(ws)
    ws.destroy()
    expect(await done).toBeUndefined()
    expect(finished).toBe(false)
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("destroy(error) emits the error, discards, releases", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const ws = await client.createWriteStream(at("f"))
    ws.write("partial")
    const done = closed(ws)
    const boom = new Error("producer failed")
    ws.destroy(boom)
    expect(await done).toBe(boom)
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)

    // A failing pipeline source destroys the stream the same way.
    const ws2 = await client.createWriteStream(at("f"))
    const source = new Readable({
      read() {
        this.push("partial")
        this.destroy(boom)
      }
    })
    await expect(pipeline(source, ws2)).rejects.toBe(boom)
    await new Promise((resolve) => ws2.closed ? resolve(undefined) : ws2.once("close", resolve))
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("an abort after opening destroys with AbortError and discards; before it, the call rejects", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "old")
    const controller = new AbortController()
    const ws = await client.createWriteStream(at("f"), { signal: controller.signal })
    await write(ws, "partial")
    const done = closed(ws)
    controller.abort()
    const error = (await done) as NodeError
    expect(error.name).toBe("AbortError")
    expect(error.code).toBe("ABORT_ERR")
    expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)

    const reader = await manager.acquire(at("f"), "read")
    const early = new AbortController()
    const waiting = client.createWriteStream(at("f"), { signal: early.signal })
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    early.abort()
    expect((await rejection(waiting)).code).toBe("ABORT_ERR")
    expect(tempFiles(currentDir())).toEqual([])
    manager.release(reader)
    // An already aborted signal: rejected with its reason, as the original's `throwIfAborted` did.
    const reason = new Error("stop")
    expect(await rejection(client.createWriteStream(at("f"), { signal: AbortSignal.abort(reason) }))).toBe(reason)
    expectIdle(manager)
  })

  it("a commit failure is an error event, never finish, and the lock is released", async () => {
    const { client, manager } = setup()
    const ws = await client.createWriteStream(at("d", "f"))
    await write(ws, "data")
    // Behind the library's back: the directory (and the temp file in it) disappears.
    fs.rmSync(at("d"), { recursive: true })
    let finished = false
    ws.on("finish", () => finished = true)
    const done = closed(ws)
    ws.end()
    const error = (await done) as NodeError
    expect(error.code).toBe("ENOENT")
    expect(error.cause).toMatchObject({ _tag: "FileSystemError", operation: "Client.sink" })
    expect(finished).toBe(false)
    expectIdle(manager)
  })

  it("parents are created; open failures reject and take nothing", async () => {
    const { client, manager } = setup()
    const ws = await client.createWriteStream(at("new", "dir", "f"))
    const done = closed(ws)
    ws.end("x")
    await done
    expect(fs.readFileSync(at("new", "dir", "f"), "utf8")).toBe("x")
    fs.writeFileSync(at("file"), "x")
    expect((await rejection(client.createWriteStream(at("file", "child")))).code).toBe("ENOTDIR")
    expect((await rejection(client.createWriteStream("/"))).message).toBe("Operations on root are not supported.")
    expect((await rejection(client.createWriteStream(at("f"), { flags: "a" as "w" }))).code).toBe(
      "ERR_INVALID_ARG_VALUE"
    )
    expect((await rejection(client.createWriteStream(at("f"), { start: 3 as 0 }))).code).toBe(
      "ERR_INVALID_ARG_VALUE"
    )
    expect(tempFiles(currentDir())).toEqual([])
    expectIdle(manager)
  })

  it("encoding, mode, highWaterMark; pipeline resolves after the commit; end(callback) too", async () => {
    const { client, manager } = setup()
    const latin = await client.createWriteStream(at("latin"), { encoding: "latin1", mode: 0o600 })
    latin.write("é")
    latin.write("41", "hex")
    await new Promise<void>((resolve) => latin.end(resolve))
    expect([...fs.readFileSync(at("latin"))]).toEqual([0xe9, 0x41])
    expect(fs.statSync(at("latin")).mode & 0o777).toBe(0o600)

    const parts = Array.from({ length: 500 }, (_, i) => `line ${i}\n`)
    const ws = await client.createWriteStream(at("lines"), { highWaterMark: 64 })
    await pipeline(Readable.from(parts), ws)
    expect(fs.readFileSync(at("lines"), "utf8")).toBe(parts.join(""))
    expect((ws as Writable & { bytesWritten: number }).bytesWritten).toBe(Buffer.byteLength(parts.join("")))
    await new Promise((resolve) => ws.closed ? resolve(undefined) : ws.once("close", resolve))
    expectIdle(manager)
  })

  it("durable clients and flush: true commit the same way", async () => {
    const durable = setup({ durable: true })
    fs.writeFileSync(at("f"), "old")
    const ws = await durable.client.createWriteStream(at("f"))
    const done = closed(ws)
    ws.end("durable")
    await done
    expect(fs.readFileSync(at("f"), "utf8")).toBe("durable")
    expectIdle(durable.manager)

    const plain = setup()
    const flushed = await plain.client.createWriteStream(at("g"), { flush: true })
    expect(stats(plain.manager)).toMatchObject({ held: 1 })
    const flushedDone = closed(flushed)
    flushed.end("flushed")
    await flushedDone
    expect(fs.readFileSync(at("g"), "utf8")).toBe("flushed")
    expectIdle(plain.manager)
  })
})

describe("an abort that arrives during the rename: it cannot stop it, so the commit's outcome counts", () => {
  /**
   * A Client (durable or not) over a file system whose renames into `at()`
   * wait until `release` is called (`renaming` resolves when one has
   * started); with `failDirectorySync`, the directory's fsync after it fails
   * with EIO (the commit is made, not durable).
   */
  const withSlowRename = async (durable: boolean, failDirectorySync = false) => {
    let started!: () => void
    const renaming = new Promise<void>((resolve) => started = resolve)
    const gate = Effect.runSync(Deferred.make<void>())
    const { client } = await Effect.runPromise(Effect.gen(function*() {
      const { fs: recording } = yield* Recording.makeNode({
        rename: (_from, to) =>
          to === at("f") ? Effect.zipRight(Effect.sync(started), Deferred.await(gate)) : Effect.void,
        sync: (path) =>
          failDirectorySync && path === `${currentDir()}/.` ?
            Effect.fail(
              new SystemError({
                reason: "Unknown",
                module: "FileSystem",
                method: "sync",
                pathOrDescriptor: path,
                cause: Object.assign(new Error("EIO: injected"), { code: "EIO" })
              })
            ) :
            Effect.void
      })
      return yield* makeClient({ durable }, Layer.succeed(FileSystem.FileSystem, recording))
    }))
    return { client, renaming, release: () => Effect.runSync(Deferred.succeed(gate, undefined)) }
  }

  /** `write` through the facade's path for its data: bytes (`client.write`) or an iterable (a sink). */
  const writers = {
    bytes: (client: ClientService, signal: AbortSignal) => runReplacement(client.write(at("f"), "new"), signal),
    iterable: (client: ClientService, signal: AbortSignal) =>
      runReplacement(Stream.run(Stream.make(Buffer.from("new")), client.sink(at("f"))), signal)
  }

  /** A write stream with `signal`, ended with "new": resolves with `finish` or the error it emitted. */
  const streamed = async (client: ClientService, signal: AbortSignal) => {
    const ws = await openWriteStream(client, at("f"), {
      encoding: "utf8",
      mode: undefined,
      highWaterMark: undefined,
      signal,
      onError: () => {}
    })
    const outcome = new Promise<string>((resolve) => {
      ws.once("finish", () => resolve("finish"))
      ws.once("error", (error: NodeError) => resolve(`error ${error.code} committed ${error.committed}`))
    })
    ws.end("new")
    return outcome
  }

  for (const durable of [false, true]) {
    for (const [name, writer] of Object.entries(writers)) {
      it(`write (${name}) with a signal resolves, and the file is replaced${durable ? " (durable)" : ""}`, async () => {
        fs.writeFileSync(at("f"), "old")
        const { client, release, renaming } = await withSlowRename(durable)
        const controller = new AbortController()
        const written = writer(client, controller.signal)
        await renaming
        controller.abort()
        release()
        await written
        expect(fs.readFileSync(at("f"), "utf8")).toBe("new")
        expect(tempFiles(currentDir())).toEqual([])
      })
    }

    it(`a write stream ended, then aborted, emits finish, and the file is replaced${durable ? " (durable)" : ""}`, async () => {
      fs.writeFileSync(at("f"), "old")
      const { client, release, renaming } = await withSlowRename(durable)
      const controller = new AbortController()
      const outcome = streamed(client, controller.signal)
      await renaming
      controller.abort()
      release()
      expect(await outcome).toBe("finish")
      expect(fs.readFileSync(at("f"), "utf8")).toBe("new")
      expect(tempFiles(currentDir())).toEqual([])
    })
  }

  // Durable, the directory's fsync after the rename fails: committed, not durable, which must not read as done.
  for (const [name, writer] of Object.entries(writers)) {
    it(`write (${name}): the fsync after the rename fails; aborted during the rename, it rejects, committed`, async () => {
      fs.writeFileSync(at("f"), "old")
      const { client, release, renaming } = await withSlowRename(true, true)
      const controller = new AbortController()
      const written = rejection(writer(client, controller.signal))
      await renaming
      controller.abort()
      release()
      expect(await written).toMatchObject({ code: "EIO", committed: true })
      expect(fs.readFileSync(at("f"), "utf8")).toBe("new")
    })
  }

  it("a write stream: the fsync after the rename fails; aborted during the rename, it emits the error, committed", async () => {
    fs.writeFileSync(at("f"), "old")
    const { client, release, renaming } = await withSlowRename(true, true)
    const controller = new AbortController()
    const outcome = streamed(client, controller.signal)
    await renaming
    controller.abort()
    release()
    expect(await outcome).toBe("error EIO committed true")
  })

  it("a write stream aborted once its commit is done, before finish is emitted, still finishes", async () => {
    fs.writeFileSync(at("f"), "old")
    const { client } = setup()
    const controller = new AbortController()
    const ws = await client.createWriteStream(at("f"), { signal: controller.signal })
    const events: Array<string> = []
    ws.on("prefinish", () => {
      events.push("prefinish")
      controller.abort()
    })
    ws.on("finish", () => events.push("finish"))
    ws.on("error", (error) => events.push(`error ${error.name}`))
    const closedNow = once(ws, "close")
    ws.end("new")
    await closedNow
    expect(events).toEqual(["prefinish", "finish"])
    expect(fs.readFileSync(at("f"), "utf8")).toBe("new")
  })
})
