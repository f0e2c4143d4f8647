import { NodeFileSystem } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Metric, Option, Stream, type Tracer } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import { expectIdle, makeClient, tempDir } from "./utils/client.js"
import { hold, waitUntil } from "./utils/locks.js"
import { recordSpans } from "./utils/tracing.js"

const count = (operation: string, outcome: string) =>
  Metric.value(Client.operations.pipe(Metric.tagged("operation", operation), Metric.tagged("outcome", outcome))).pipe(
    Effect.map((state) => state.count)
  )

describe("observability", () => {
  it.scoped("Client operations are counted by name and outcome", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const before = {
        write: yield* count("Client.write", "success"),
        readFailure: yield* count("Client.read", "failure"),
        stream: yield* count("Client.stream", "success")
      }
      yield* client.write(`${dir}/a`, "a")
      yield* client.write(`${dir}/b`, "b")
      yield* Effect.flip(client.read(`${dir}/missing`))
      yield* Stream.runDrain(client.stream(`${dir}/a`))
      expect((yield* count("Client.write", "success")) - before.write).toBe(2)
      expect((yield* count("Client.read", "failure")) - before.readFailure).toBe(1)
      expect((yield* count("Client.stream", "success")) - before.stream).toBe(1)
      yield* expectIdle(manager)
    }))

  it.scoped("lock waits are measured and visible as spans; the gauges follow held and pending locks", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const waitsBefore = (yield* Metric.value(LockManager.lockWaitSeconds)).count
      const heldBefore = (yield* Metric.value(LockManager.locksHeld)).value
      const pendingBefore = (yield* Metric.value(LockManager.locksPending)).value
      const holder = yield* hold(m, "/obs/a", "write")
      const { spans } = yield* recordSpans(
        Effect.gen(function*() {
          const waiter = yield* Effect.fork(m.withLock("/obs/a/b", "read")(Effect.void))
          yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1))
          expect((yield* Metric.value(LockManager.locksPending)).value - pendingBefore).toBe(1)
          expect((yield* Metric.value(LockManager.locksHeld)).value - heldBefore).toBe(1)
          yield* holder.release
          yield* Fiber.join(waiter)
        })
      )
      const wait = spans.find((s) => s.name === "LockManager.wait")
      expect(wait?.attributes.get("lock.paths")).toBe("/obs/a/b")
      expect(wait?.attributes.get("lock.mode")).toBe("read")
      expect((yield* Metric.value(LockManager.lockWaitSeconds)).count - waitsBefore).toBe(2)
      expect((yield* Metric.value(LockManager.locksHeld)).value).toBe(heldBefore)
      expect((yield* Metric.value(LockManager.locksPending)).value).toBe(pendingBefore)
      yield* expectIdle(m)
    }))

  it.scoped("an operation's span is the parent of what runs in it, ends with its outcome, and is counted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The file system records the span current at each call.
      const seen: Array<string> = []
      const spying = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
          ...fs,
          readFile: (path) =>
            Effect.zipRight(
              Effect.tap(Effect.option(Effect.currentSpan), (span) =>
                Effect.sync(() =>
                  seen.push(Option.match(span, { onNone: () => "none", onSome: (s) => s.name }))
                )),
              fs.readFile(path)
            )
        }))
      ).pipe(Layer.provide(NodeFileSystem.layer))
      const { client, manager } = yield* makeClient(undefined, spying)
      yield* client.write(`${dir}/a`, "a")
      const interruptedBefore = yield* count("Client.write", "interrupted")
      const holder = yield* hold(manager, `${dir}/b`, "write")
      const { spans } = yield* recordSpans(
        Effect.gen(function*() {
          yield* client.read(`${dir}/a`)
          yield* Effect.flip(client.read(`${dir}/missing`))
          // A write that waits for its lock, then one interrupted while waiting.
          const waiting = yield* Effect.fork(client.write(`${dir}/b`, "b"))
          yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1))
          yield* holder.release
          yield* Fiber.join(waiting)
          const again = yield* hold(manager, `${dir}/b`, "write")
          const interrupted = yield* Effect.fork(client.write(`${dir}/b`, "c"))
          yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1))
          yield* Fiber.interrupt(interrupted)
          yield* again.release
        })
      )
      expect(seen).toEqual(["Client.read", "Client.read"])
      const named = (name: string) => spans.filter((s) => s.name === name)
      const [ok, missing] = named("Client.read")
      const exitOf = (span: Tracer.Span) => span.status._tag === "Ended" ? span.status.exit : undefined
      expect(Exit.isSuccess(exitOf(ok)!)).toBe(true)
      expect(Exit.isFailure(exitOf(missing)!)).toBe(true)
      const [waited, interrupted] = named("Client.write")
      const [wait] = named("LockManager.wait")
      expect(Option.getOrUndefined(wait.parent)).toBe(waited)
      expect(Exit.isSuccess(exitOf(waited)!)).toBe(true)
      const cut = exitOf(interrupted)!
      expect(Exit.isInterrupted(cut)).toBe(true)
      expect((yield* count("Client.write", "interrupted")) - interruptedBefore).toBe(1)
      // The caller's context is back as it was: no span of the Client is left current.
      expect(Option.isNone(yield* Effect.option(Effect.currentSpan))).toBe(true)
      expect(nodeFs.readFileSync(`${dir}/b`, "utf8")).toBe("b")
      yield* expectIdle(manager)
    }))

  it.scoped("nothing is logged by default", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient({ durable: true })
      const logged: Array<unknown> = []
      const original = { log: console.log, error: console.error, warn: console.warn, info: console.info }
      for (const key of ["log", "error", "warn", "info"] as const) console[key] = (...args) => logged.push(args)
      yield* Effect.gen(function*() {
        yield* client.write(`${dir}/x/y`, "1")
        yield* Effect.flip(client.read(`${dir}/nope`))
        yield* client.delete(`${dir}/x`, { recursive: true })
      }).pipe(Effect.ensuring(Effect.sync(() => Object.assign(console, original))))
      expect(logged).toEqual([])
      expect(nodeFs.readdirSync(dir)).toEqual([])
    }))
})
