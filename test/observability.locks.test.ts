/**
 * The lock metrics against the lock table, in every way a request can end:
 * granted at once, granted after a wait, withdrawn (timeout, interrupt),
 * refused (deadlock, bad input), or granted through a lock the fiber holds.
 * The gauges are process-wide, so each check is a difference from the values
 * at the start (this file runs alone in its worker, one test at a time).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Metric } from "effect"
import * as LockManager from "../src/LockManager.js"
import { expectIdle, hold, waitUntil } from "./utils/locks.js"

const gauges = Effect.all({
  held: Effect.map(Metric.value(LockManager.locksHeld), (s) => s.value),
  pending: Effect.map(Metric.value(LockManager.locksPending), (s) => s.value),
  grants: Effect.map(Metric.value(LockManager.lockWaitSeconds), (s) => s.count)
})

describe("lock metrics", () => {
  it.live("the gauges follow the table and the histogram counts each grant once, however a request ends", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const base = yield* gauges
      let grants = 0
      /** The gauges agree with the table, and the histogram has counted `grants` grants since the start. */
      const check = (what: string) =>
        Effect.gen(function*() {
          const stats = yield* m.stats
          const now = yield* gauges
          expect({
            what,
            held: now.held - base.held,
            pending: now.pending - base.pending,
            grants: now.grants - base.grants
          })
            .toEqual({ what, held: stats.held, pending: stats.pending, grants })
        })

      // Granted at once: withLock, lock, withLockAll, lockAll (each counted as it is granted).
      grants += 1
      yield* m.withLock("/a/b", "write")(check("inside withLock"))
      grants += 1
      yield* Effect.scoped(Effect.zipRight(m.lock("/a/b", "read"), Effect.suspend(() => check("inside lock"))))
      grants += 1
      yield* m.withLockAll(["/a/x", "/a/y"])(check("inside withLockAll"))
      grants += 1
      yield* Effect.scoped(
        Effect.zipRight(m.lockAll([["/a/x", "read"], "/a/z"]), Effect.suspend(() => check("lockAll")))
      )
      yield* check("after the immediate grants")

      // Refused: bad input changes nothing.
      expect(Exit.isFailure(yield* Effect.exit(m.withLock("relative", "write")(Effect.void)))).toBe(true)
      expect(Exit.isFailure(yield* Effect.exit(m.withLock("/", "write")(Effect.void)))).toBe(true)
      expect(Exit.isFailure(yield* Effect.exit(m.withLockAll([])(Effect.void)))).toBe(true)
      yield* check("after bad input")

      // A wait that is granted, one that times out, one interrupted, a scoped one interrupted in a larger scope.
      const holder = yield* hold(m, "/w", "write")
      grants += 1
      const waiter = yield* Effect.fork(m.withLock("/w/1", "read")(Effect.void))
      const timedOut = yield* Effect.fork(Effect.timeout(m.withLock("/w/2", "write")(Effect.void), "10 millis"))
      const interrupted = yield* Effect.fork(m.withLock("/w", "read")(Effect.void))
      const scoped = yield* Effect.fork(
        Effect.scoped(Effect.zipRight(Effect.timeout(m.lock("/w/3", "write"), "20 millis"), Effect.never))
      )
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 4), "four waiters")
      yield* check("four waiting")
      expect(Exit.isFailure(yield* Fiber.await(timedOut))).toBe(true)
      yield* Fiber.interrupt(interrupted)
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1), "timeouts")
      yield* check("two withdrawn, one timed out in a scope that stays open")
      yield* holder.release
      yield* Fiber.join(waiter)
      grants += 1
      yield* Fiber.interrupt(scoped)
      yield* check("after the waits")

      // Re-entrant: a request covered by the fiber's own lock is granted at once, without the table.
      grants += 2
      yield* m.withLock("/r", "write")(
        Effect.zipRight(m.withLock("/r/inner", "read")(check("covered")), check("covering"))
      )

      // Refused as a deadlock: an upgrade of one's own read lock (another reader holds it too) changes nothing.
      const other = yield* hold(m, "/u", "read")
      grants += 2
      yield* m.withLock("/u", "read")(
        Effect.gen(function*() {
          const upgrade = yield* Effect.exit(m.withLock("/u", "write")(Effect.void))
          expect(Exit.isFailure(upgrade) ? String(upgrade.cause) : "granted").toContain("Deadlock")
          yield* check("after a refused upgrade")
        })
      )
      yield* other.release
      yield* check("at the end")
      yield* expectIdle(m)
    }))
})
