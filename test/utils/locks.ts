import { expect } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import type { Lock, LockManagerService, LockMode, LockRequest } from "../../src/LockManager.js"

/** Asserts no lock is held or pending and the path index is empty. */
export const expectIdle = (manager: LockManagerService<unknown>) =>
  Effect.map(manager.stats, (stats) => expect(stats).toEqual({ held: 0, pending: 0, nodes: 0 }))

/** A lock request running in its own fiber, held until `release`. */
export interface Holder {
  readonly granted: Deferred.Deferred<Lock>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
  /** Ends the hold and waits until the lock is released. */
  readonly release: Effect.Effect<void, unknown>
  readonly isGranted: Effect.Effect<boolean>
}

/**
 * Yields until `condition` holds: used to wait for a forked fiber to reach the
 * lock table, never to "let things settle" for an unknown time.
 */
export const waitUntil = (condition: Effect.Effect<boolean>, what = "condition"): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000; i++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`waitUntil: ${what} never held`)
  })

const enqueued = (manager: LockManagerService) => Effect.map(manager.stats, (s) => s.held + s.pending)

/**
 * Forks a fiber that takes the lock (a single path with a mode, or a combined
 * write set), reports the grant and holds until released. Returns once the
 * request is in the lock table.
 */
export const hold = (
  manager: LockManagerService,
  target: string | ReadonlyArray<string | LockRequest>,
  mode: LockMode = "write"
): Effect.Effect<Holder> =>
  Effect.gen(function*() {
    const granted = yield* Deferred.make<Lock>()
    const done = yield* Deferred.make<void>()
    const before = yield* enqueued(manager)
    const fiber = yield* Effect.scoped(
      Effect.gen(function*() {
        const lock = yield* (typeof target === "string" ? manager.lock(target, mode) : manager.lockAll(target))
        yield* Deferred.succeed(granted, lock)
        yield* Deferred.await(done)
      })
    ).pipe(Effect.forkDaemon)
    yield* waitUntil(Effect.map(enqueued(manager), (n) => n > before), "request enqueued")
    return {
      granted,
      fiber,
      release: Deferred.succeed(done, undefined).pipe(Effect.zipRight(Fiber.join(fiber))),
      isGranted: Deferred.isDone(granted)
    }
  })

/**
 * Asserts that among the live `holders` exactly those at `expected` are
 * granted: each expected holder reports its grant, and the table holds no
 * more locks than that.
 */
export const expectGranted = (
  manager: LockManagerService,
  holders: ReadonlyArray<Holder>,
  expected: ReadonlyArray<number>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (const i of expected) yield* Deferred.await(holders[i].granted)
    const stats = yield* manager.stats
    const reported: Array<number> = []
    for (let i = 0; i < holders.length; i++) if (yield* holders[i].isGranted) reported.push(i)
    if (stats.held !== expected.length || reported.join() !== [...expected].sort((a, b) => a - b).join()) {
      return yield* Effect.dieMessage(
        `expected granted [${expected}], table holds ${stats.held}, reported [${reported}]`
      )
    }
  })
