import { FileSystem } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Layer, Option, Queue, Stream, Take } from "effect"
import * as nodeFs from "node:fs"
import type * as Client from "../src/Client.js"
import type * as LockManager from "../src/LockManager.js"
import { makeClient, tempDir } from "./utils/client.js"
import { expectIdle, waitUntil } from "./utils/locks.js"
import * as Recording from "./utils/recordingFileSystem.js"

const bytesOf = (s: string) => new TextEncoder().encode(s)
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** A Client over a recording Node file system with `hooks`, a fresh manager, and the log. */
const setup = (hooks?: Recording.Hooks) =>
  Effect.gen(function*() {
    const { fs, log } = yield* Recording.makeNode(hooks)
    const { client, manager } = yield* makeClient({}, Layer.succeed(FileSystem.FileSystem, fs))
    return { client, manager, log }
  })

/** Waits until the manager's table has exactly `held` granted and `pending` waiting requests. */
const waitForStats = (manager: LockManager.LockManagerService, held: number, pending: number) =>
  waitUntil(
    Effect.map(manager.stats, (stats) => stats.held === held && stats.pending === pending),
    `held ${held}, pending ${pending}`
  )

/** Temp files left in `dir` (the Client's default suffix). */
const tempsIn = (dir: string) => nodeFs.readdirSync(dir).filter((name) => /\.tmp$/.test(name))

const isRunning = (fiber: Fiber.Fiber<unknown, unknown>) => Effect.map(Fiber.poll(fiber), Option.isNone)

describe("Client concurrency: whole values", () => {
  it.live("readers only ever see one whole 10 MB value while two writers replace it in turn", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      const path = `${dir}/big.bin`
      const SIZE = 10 * 1024 * 1024
      const ROUNDS = 8
      const values = [Buffer.alloc(SIZE, "A"), Buffer.alloc(SIZE, "B")]
      nodeFs.writeFileSync(path, values[0])

      const seen = { A: 0, B: 0 }
      const torn: Array<string> = []
      const check = (bytes: Uint8Array) => {
        const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
        if (buffer.equals(values[0])) seen.A++
        else if (buffer.equals(values[1])) seen.B++
        else torn.push(`length ${buffer.length}, first ${buffer[0]}, last ${buffer[buffer.length - 1]}`)
      }

      const writersDone = yield* Deferred.make<void>()
      const writer = (value: Uint8Array) => Effect.repeatN(client.write(path, value), ROUNDS - 1)
      const writers = Effect.all([writer(values[0]), writer(values[1])], { concurrency: 2, discard: true }).pipe(
        Effect.ensuring(Deferred.succeed(writersDone, undefined))
      )
      // Readers keep going until the writers are done, by `read` and by `stream`.
      const reader = (readOnce: Effect.Effect<Uint8Array, Client.ReadError>) =>
        Effect.gen(function*() {
          let reads = 0
          while (!(yield* Deferred.isDone(writersDone))) {
            check(yield* readOnce)
            reads++
          }
          return reads
        })
      const streamed = Effect.map(
        Stream.runCollect(client.stream(path)),
        (chunks) => Buffer.concat(Chunk.toArray(chunks))
      )
      const [, reads, streams] = yield* Effect.all([writers, reader(client.read(path)), reader(streamed)], {
        concurrency: "unbounded"
      })

      expect(torn).toEqual([])
      expect(reads).toBeGreaterThan(0)
      expect(streams).toBeGreaterThan(0)
      expect(seen.A + seen.B).toBe(reads + streams)
      check(nodeFs.readFileSync(path))
      expect(torn).toEqual([])
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    })))

  it.live("modify from 100 concurrent fibers on one counter loses no update", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      const path = `${dir}/counter`
      const increment = (current: Option.Option<Uint8Array>) =>
        String(Number(Option.getOrElse(Option.map(current, text), () => "0")) + 1)
      const results = yield* Effect.all(
        Array.from({ length: 100 }, () => client.modify(path, increment)),
        { concurrency: "unbounded" }
      )
      expect(nodeFs.readFileSync(path, "utf8")).toBe("100")
      // Each update saw the previous one: the returned values are exactly 1..100.
      expect(results.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    })))
})

/** Opens a stream in small chunks and holds it after its first chunk until `release`. */
const openStream = (client: Client.ClientService, path: string, chunkSize = 10) =>
  Effect.gen(function*() {
    const firstChunk = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const chunks: Array<string> = []
    const fiber = yield* client.stream(path, { chunkSize }).pipe(
      Stream.runForEach((chunk) =>
        Effect.sync(() => chunks.push(text(chunk))).pipe(
          Effect.zipRight(Deferred.succeed(firstChunk, undefined)),
          Effect.zipRight(Deferred.await(gate))
        )
      ),
      Effect.fork
    )
    yield* Deferred.await(firstChunk)
    return { fiber, chunks, release: Deferred.succeed(gate, undefined) }
  })

describe("Client concurrency: readers share", () => {
  it.live("two reads of one file are inside their read locks at the same time", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const path = `${dir}/shared`
      nodeFs.writeFileSync(path, "shared")
      const gate = yield* Deferred.make<void>()
      let inside = 0
      const { client, manager } = yield* setup({
        readFile: (p) => p === path ? Effect.zipRight(Effect.sync(() => inside++), Deferred.await(gate)) : Effect.void
      })
      const first = yield* Effect.fork(client.readString(path))
      const second = yield* Effect.fork(client.read(path))
      // Both are in the file system call, each holding its lock: neither waits for the other.
      yield* waitUntil(Effect.sync(() => inside === 2), "both reads inside")
      expect(yield* manager.stats).toMatchObject({ held: 2, pending: 0 })
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(first)).toBe("shared")
      expect(text(yield* Fiber.join(second))).toBe("shared")
      yield* expectIdle(manager)
    })))

  it.live("a read runs to completion while a stream of the same file is open", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const path = `${dir}/shared`
      const content = "abcdefghijklmnopqrstuvwxyz"
      nodeFs.writeFileSync(path, content)
      const readGate = yield* Deferred.make<void>()
      const { client, manager } = yield* setup({
        readFile: (p) => p === path ? Deferred.await(readGate) : Effect.void
      })
      const { chunks, fiber: streaming, release } = yield* openStream(client, path, 4)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })

      const reading = yield* Effect.fork(client.read(path))
      // The read is granted alongside the open stream and sits in the file system call.
      yield* waitForStats(manager, 2, 0)
      yield* Deferred.succeed(readGate, undefined)
      expect(text(yield* Fiber.join(reading))).toBe(content)
      // The stream is still open, holding its lock.
      expect(yield* isRunning(streaming)).toBe(true)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })

      yield* release
      yield* Fiber.join(streaming)
      expect(chunks.join("")).toBe(content)
      expect(chunks[0]).toBe("abcd")
      yield* expectIdle(manager)
    })))
})

describe("Client concurrency: writers wait for open streams", () => {
  const old = "0123456789".repeat(10)

  /** Starts a write behind the open stream and checks it is held back. */
  const writeBehind = (client: Client.ClientService, manager: LockManager.LockManagerService, dir: string) =>
    Effect.gen(function*() {
      const writing = yield* Effect.fork(client.write(`${dir}/file`, "new"))
      yield* waitForStats(manager, 1, 1)
      expect(yield* isRunning(writing)).toBe(true)
      expect(nodeFs.readFileSync(`${dir}/file`, "utf8")).toBe(old)
      // It has not even begun: no temp file yet.
      expect(tempsIn(dir)).toEqual([])
      return writing
    })

  it.live("a write waits while a stream is open and proceeds when the stream ends", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/file`, old)
      const stream = yield* openStream(client, `${dir}/file`)
      expect(stream.chunks).toEqual(["0123456789"])
      const writing = yield* writeBehind(client, manager, dir)

      yield* stream.release
      yield* Fiber.join(stream.fiber)
      // The stream read the old content whole, although the write was waiting.
      expect(stream.chunks.join("")).toBe(old)
      expect(stream.chunks.length).toBe(10)
      yield* Fiber.join(writing)
      expect(nodeFs.readFileSync(`${dir}/file`, "utf8")).toBe("new")
      yield* expectIdle(manager)
    })))

  it.live("a write waits while a stream is open and proceeds when the stream's fiber is interrupted", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/file`, old)
      const stream = yield* openStream(client, `${dir}/file`)
      const writing = yield* writeBehind(client, manager, dir)

      yield* Fiber.interrupt(stream.fiber)
      yield* Fiber.join(writing)
      expect(stream.chunks).toEqual(["0123456789"])
      expect(nodeFs.readFileSync(`${dir}/file`, "utf8")).toBe("new")
      yield* expectIdle(manager)
    })))

  it.live("a write interrupted while waiting behind a stream leaves the queue and changes nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/file`, old)
      const stream = yield* openStream(client, `${dir}/file`)
      const writing = yield* writeBehind(client, manager, dir)

      yield* Fiber.interrupt(writing)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })
      yield* stream.release
      yield* Fiber.join(stream.fiber)
      expect(nodeFs.readFileSync(`${dir}/file`, "utf8")).toBe(old)
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    })))
})

describe("Client concurrency: rename", () => {
  it.live("rename blocks operations on both paths until done; they then see the renamed state", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const from = `${dir}/from`
      const to = `${dir}/to`
      nodeFs.writeFileSync(from, "moved")
      nodeFs.writeFileSync(to, "replaced")
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const { client, manager } = yield* setup({
        // Only the Client's rename of `from` is held; writes rename their temp files freely.
        rename: (source) =>
          source === from ? Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)) : Effect.void
      })

      const renaming = yield* Effect.fork(client.rename(from, to))
      yield* Deferred.await(entered)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })

      const readFrom = yield* Effect.fork(client.readString(from))
      yield* waitForStats(manager, 1, 1)
      const readTo = yield* Effect.fork(client.readString(to))
      yield* waitForStats(manager, 1, 2)
      const writeTo = yield* Effect.fork(client.write(to, "new"))
      yield* waitForStats(manager, 1, 3)

      for (const fiber of [renaming, readFrom, readTo, writeTo]) expect(yield* isRunning(fiber)).toBe(true)
      // Nothing has moved yet and the write has not begun.
      expect(nodeFs.readFileSync(from, "utf8")).toBe("moved")
      expect(nodeFs.readFileSync(to, "utf8")).toBe("replaced")
      expect(tempsIn(dir)).toEqual([])

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(renaming)
      // Queued while `from` still existed, it runs after the move.
      expect(yield* Effect.flip(Fiber.join(readFrom))).toMatchObject({ _tag: "FileSystemError", reason: "NotFound" })
      // Queued before the write (FIFO): sees the moved content, not the write's.
      expect(yield* Fiber.join(readTo)).toBe("moved")
      yield* Fiber.join(writeTo)
      expect(nodeFs.readFileSync(to, "utf8")).toBe("new")
      expect(nodeFs.existsSync(from)).toBe(false)
      expect(nodeFs.readdirSync(dir)).toEqual(["to"])
      yield* expectIdle(manager)
    })))
})

describe("Client concurrency: sink", () => {
  /** A sink run in a fiber, fed from a queue the test controls. */
  const runSink = (client: Client.ClientService, path: string) =>
    Effect.gen(function*() {
      const queue = yield* Queue.unbounded<Take.Take<Uint8Array, string>>()
      const fiber = yield* Stream.fromQueue(queue).pipe(
        Stream.flattenTake,
        Stream.run(client.sink(path)),
        Effect.fork
      )
      return {
        fiber,
        offer: (s: string) => Queue.offer(queue, Take.of(bytesOf(s))),
        end: Queue.offer(queue, Take.end),
        fail: (error: string) => Queue.offer(queue, Take.fail(error))
      }
    })

  const writesSeen = (n: number) => (events: ReadonlyArray<string>) =>
    events.filter((event) => event.startsWith("writeAll ") && !event.includes(" !")).length >= n

  it.live("nothing is visible at the target until the input ends", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, log, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/existing`, "old")

      const replacing = yield* runSink(client, `${dir}/existing`)
      const creating = yield* runSink(client, `${dir}/fresh`)
      yield* replacing.offer("new ")
      yield* creating.offer("first ")
      yield* replacing.offer("content")
      yield* creating.offer("file")
      yield* log.waitFor(writesSeen(4))

      // The chunks are on disk, in temp files only.
      expect(tempsIn(dir).length).toBe(2)
      expect(nodeFs.readFileSync(`${dir}/existing`, "utf8")).toBe("old")
      expect(nodeFs.existsSync(`${dir}/fresh`)).toBe(false)
      expect(yield* isRunning(replacing.fiber)).toBe(true)
      expect(yield* manager.stats).toMatchObject({ held: 2, pending: 0 })

      yield* replacing.end
      yield* Fiber.join(replacing.fiber)
      expect(nodeFs.readFileSync(`${dir}/existing`, "utf8")).toBe("new content")
      expect(nodeFs.existsSync(`${dir}/fresh`)).toBe(false)

      yield* creating.end
      yield* Fiber.join(creating.fiber)
      expect(nodeFs.readFileSync(`${dir}/fresh`, "utf8")).toBe("first file")
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    })))

  /**
   * Two sinks that have written a partial chunk to their temp files, one
   * replacing `existing` ("old") and one creating `fresh`; `stop` ends them
   * abnormally, after which neither target may have changed.
   */
  const abandonedSinks = (
    stop: (sink: Effect.Effect.Success<ReturnType<typeof runSink>>) => Effect.Effect<void, unknown>
  ) =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, log, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/existing`, "old")

      const replacing = yield* runSink(client, `${dir}/existing`)
      const creating = yield* runSink(client, `${dir}/fresh`)
      yield* replacing.offer("partial")
      yield* creating.offer("partial")
      yield* log.waitFor(writesSeen(2))
      expect(tempsIn(dir).length).toBe(2)

      yield* stop(replacing)
      yield* stop(creating)
      expect(nodeFs.readFileSync(`${dir}/existing`, "utf8")).toBe("old")
      expect(nodeFs.existsSync(`${dir}/fresh`)).toBe(false)
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.live("an upstream failure leaves the target untouched and no temp file behind", () =>
    abandonedSinks((sink) =>
      sink.fail("upstream broke").pipe(
        Effect.zipRight(Effect.flip(Fiber.join(sink.fiber))),
        Effect.map((error) => expect(error).toBe("upstream broke"))
      )
    ))

  it.live("interrupting the fiber running the sink leaves the target untouched and no temp file behind", () =>
    abandonedSinks((sink) => Fiber.interrupt(sink.fiber).pipe(Effect.asVoid)))

  it.live("a sink interrupted while waiting for its lock leaves the queue and creates nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* setup()
      nodeFs.writeFileSync(`${dir}/existing`, "old")
      const firstChunk = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const streaming = yield* client.stream(`${dir}/existing`).pipe(
        Stream.runForEach(() => Effect.zipRight(Deferred.succeed(firstChunk, undefined), Deferred.await(gate))),
        Effect.fork
      )
      yield* Deferred.await(firstChunk)

      const replacing = yield* runSink(client, `${dir}/existing`)
      yield* replacing.offer("new")
      yield* waitForStats(manager, 1, 1)
      expect(tempsIn(dir)).toEqual([])
      yield* Fiber.interrupt(replacing.fiber)
      expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })

      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(streaming)
      expect(nodeFs.readFileSync(`${dir}/existing`, "utf8")).toBe("old")
      expect(tempsIn(dir)).toEqual([])
      yield* expectIdle(manager)
    })))
})
