import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Metric, Stream } from "effect"
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
