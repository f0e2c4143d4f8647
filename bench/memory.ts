/**
 * Memory: a lock manager that has served a million lock operations holds no
 * more memory than before. The timed rounds do 1,000,000 operations in all
 * (1,000,000 / rounds each) on one manager: `withLock` on random paths (read
 * and write), scoped `lock`s, contended pairs (two writers on one path, the
 * second queued behind the first) and queued waiters that are interrupted.
 * The heap is measured after a full collection once the warm-up has run
 * (code compiled, caches filled) and again after every round; growth above
 * 10% fails the suite, so the smoke run (fewer operations) catches a leak too.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as LockManager from "../src/LockManager.js"
import { mulberry32 } from "../test/utils/random.js"
import { collectGarbage, type Extra, type Prepared, type Suite } from "./harness.js"

const SEED = Number.parseInt(process.env.BENCH_SEED ?? "", 10) || 0x5eed

/** At most this much heap growth (after / before) passes. */
const MAX_GROWTH = 1.1

/** Lock operations between the two measurements (the smoke run does fewer). */
const TOTAL_OPS = 1_000_000

const heapUsed = (): number => {
  // Twice: the first collection may leave work for finalizers.
  collectGarbage?.()
  collectGarbage?.()
  return process.memoryUsage().heapUsed
}

const fmtMiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`

/**
 * A write holder on `path`, a second writer queued behind it; then either
 * the holder lets go (the pair is served in order) or the queued writer is
 * interrupted first. Two lock operations.
 */
const pair = (manager: LockManager.LockManagerService, path: string, interrupt: boolean) =>
  Effect.gen(function*() {
    const holding = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(
      manager.withLock(path, "write")(Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release)))
    )
    yield* Deferred.await(holding)
    const waiter = yield* Effect.fork(manager.withLock(path, "write")(Effect.void))
    while ((yield* manager.stats).pending === 0) yield* Effect.yieldNow()
    if (interrupt) yield* Fiber.interrupt(waiter)
    yield* Deferred.succeed(release, undefined)
    yield* Fiber.join(holder)
    if (!interrupt) yield* Fiber.join(waiter)
  })

/** `ops` lock operations, drawn from `next`. */
const workload = (manager: LockManager.LockManagerService, ops: number, next: () => number) =>
  Effect.gen(function*() {
    const path = () => {
      let p = ""
      for (let level = 0; level < 4; level++) p += `/m${level}n${Math.floor(next() * 8)}`
      return p
    }
    for (let done = 0; done < ops;) {
      const r = next()
      if (r < 0.8) {
        yield* manager.withLock(path(), next() < 0.5 ? "read" : "write")(Effect.void)
        done += 1
      } else if (r < 0.95) {
        yield* Effect.scoped(manager.lock(path(), next() < 0.5 ? "read" : "write"))
        done += 1
      } else {
        yield* pair(manager, path(), r >= 0.99)
        done += 2
      }
    }
  })

const expectIdle = async (manager: LockManager.LockManagerService): Promise<void> => {
  const stats = await Effect.runPromise(manager.stats)
  if (stats.held !== 0 || stats.pending !== 0 || stats.nodes !== 0) {
    throw new Error(`lock manager not idle: ${JSON.stringify(stats)}`)
  }
}

export const suite: Suite = {
  name: "memory",
  cases: [{
    name: "heap after 1,000,000 lock ops",
    description: `one LockManager, ${TOTAL_OPS.toLocaleString("en-US")} lock operations over the timed rounds ` +
      "(80% withLock on random depth-4 paths, 15% scoped lock, 5% contended pairs of writers, a fifth of them with " +
      "the queued writer interrupted); heap used after a full GC, after the warm-up vs after the last round; " +
      `fails above ${MAX_GROWTH}x`,
    setup: ({ rounds, size }): Prepared => {
      const ops = Math.ceil(size(TOTAL_OPS, 10_000) / rounds)
      const manager = Effect.runSync(LockManager.make)
      // Drawn while running, so no list of a million operations sits in the heap being measured.
      const next = mulberry32(SEED + 5)
      const atSetup = heapUsed()
      let before: number | undefined
      let after = 0
      let runs = 0
      const growth = () => before === undefined ? 1 : after / before
      return {
        subject: {
          name: "LockManager mixed ops",
          ops,
          run: async () => {
            const started = performance.now()
            await Effect.runPromise(workload(manager, ops, next))
            const elapsed = performance.now() - started
            if (before !== undefined) runs++
            return elapsed
          }
        },
        baselines: [],
        verify: async () => {
          await expectIdle(manager)
          if (collectGarbage === undefined) return
          if (before === undefined) {
            before = heapUsed()
            return
          }
          after = heapUsed()
          if (growth() > MAX_GROWTH) {
            throw new Error(
              `heap grew ${growth().toFixed(3)}x (${fmtMiB(before)} -> ${fmtMiB(after)}) over ` +
                `${runs * ops} lock operations, limit ${MAX_GROWTH}x`
            )
          }
        },
        extra: (): Extra => {
          if (collectGarbage === undefined || before === undefined) {
            return { lines: ["heap not measured: no way to force a garbage collection"], data: { measured: false } }
          }
          const opsMeasured = runs * ops
          return {
            lines: [
              `heap used: ${fmtMiB(atSetup)} at setup, ${fmtMiB(before)} after the warm-up, ${fmtMiB(after)} after ` +
              `${opsMeasured.toLocaleString("en-US")} more lock operations: ${growth().toFixed(3)}x ` +
              `(limit ${MAX_GROWTH}x: ${growth() <= MAX_GROWTH ? "within" : "EXCEEDED"})`
            ],
            data: {
              measured: true,
              heapUsedAtSetup: atSetup,
              heapUsedBefore: before,
              heapUsedAfter: after,
              opsBetween: opsMeasured,
              growth: growth(),
              maxGrowth: MAX_GROWTH
            }
          }
        }
      }
    }
  }]
}
