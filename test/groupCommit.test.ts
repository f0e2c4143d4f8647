import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as GroupCommit from "../src/internal/groupCommit.js"
import { waitUntil } from "./utils/locks.js"

/** A fake directory fsync: each call waits until the test ends it, with the outcome the test chooses. */
const controlledSync = Effect.gen(function*() {
  const calls: Array<{ dir: string; done: Deferred.Deferred<void, string> }> = []
  const sync = (dir: string) =>
    Effect.flatMap(Deferred.make<void, string>(), (done) => {
      calls.push({ dir, done })
      return Deferred.await(done)
    })
  return { calls, sync }
})

describe("group commit of directory fsyncs", () => {
  it.effect("writers that arrive during an fsync share the next one, never the one in flight", () =>
    Effect.gen(function*() {
      const { calls, sync } = yield* controlledSync
      const batched = GroupCommit.make(sync)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => calls.length === 1))
      const b = yield* Effect.fork(batched("/d"))
      const c = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(calls.length).toBe(1)
      yield* Deferred.succeed(calls[0].done, undefined)
      expect(Exit.isSuccess(yield* Fiber.await(a))).toBe(true)
      // b and c were not covered by the first fsync: they wait for a second one.
      yield* waitUntil(Effect.sync(() => calls.length === 2))
      expect(yield* Fiber.poll(b)).toEqual(expect.objectContaining({ _tag: "None" }))
      const d = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(calls.length).toBe(2)
      yield* Deferred.succeed(calls[1].done, undefined)
      yield* Fiber.join(b)
      yield* Fiber.join(c)
      yield* waitUntil(Effect.sync(() => calls.length === 3))
      yield* Deferred.succeed(calls[2].done, undefined)
      yield* Fiber.join(d)
      expect(calls.map((c) => c.dir)).toEqual(["/d", "/d", "/d"])
    }))

  it.effect("every writer of a batch learns that its fsync failed", () =>
    Effect.gen(function*() {
      const { calls, sync } = yield* controlledSync
      const batched = GroupCommit.make(sync)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => calls.length === 1))
      const b = yield* Effect.fork(Effect.flip(batched("/d")))
      const c = yield* Effect.fork(Effect.flip(batched("/d")))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(calls[0].done, undefined)
      yield* Fiber.join(a)
      yield* waitUntil(Effect.sync(() => calls.length === 2))
      yield* Deferred.fail(calls[1].done, "EIO")
      expect(yield* Fiber.join(b)).toBe("EIO")
      expect(yield* Fiber.join(c)).toBe("EIO")
      // The directory is idle again: the next writer starts its own fsync.
      const e = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => calls.length === 3))
      yield* Deferred.succeed(calls[2].done, undefined)
      yield* Fiber.join(e)
    }))

  it.effect("directories are batched independently", () =>
    Effect.gen(function*() {
      const { calls, sync } = yield* controlledSync
      const batched = GroupCommit.make(sync)
      const fibers = yield* Effect.all([batched("/x"), batched("/y")].map(Effect.fork))
      yield* waitUntil(Effect.sync(() => calls.length === 2))
      expect(calls.map((c) => c.dir).sort()).toEqual(["/x", "/y"])
      for (const call of calls) yield* Deferred.succeed(call.done, undefined)
      yield* Fiber.joinAll(fibers)
    }))
})
