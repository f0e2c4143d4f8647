/**
 * Group commit of directory fsyncs, on a fake directory whose open and fsync
 * each wait until the test ends them. Latencies come from the TestClock.
 *
 * The randomised model replays a failure with GROUP_COMMIT_SEED=<seed>; run
 * more with GROUP_COMMIT_SEEDS / STEPS.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId, Option, type Scheduler, TestClock } from "effect"
import * as GroupCommit from "../src/internal/groupCommit.js"
import { waitUntil } from "./utils/locks.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

interface Call {
  readonly dir: string
  readonly done: Deferred.Deferred<void, string>
}

/**
 * A fake directory: `open` waits until the test ends it (unless `instantOpen`),
 * then hands back an fsync that waits until the test ends it. `syncs` lists
 * the fsyncs in the order they were issued.
 */
const fakeDirectory = (options: { readonly instantOpen: boolean }) =>
  Effect.sync(() => {
    const opens: Array<Call> = []
    const syncs: Array<Call> = []
    const sync = (dir: string) =>
      Effect.flatMap(Deferred.make<void, string>(), (done) => {
        syncs.push({ dir, done })
        return Deferred.await(done)
      })
    const open = (dir: string) =>
      options.instantOpen ? Effect.succeed(sync(dir)) : Effect.flatMap(Deferred.make<void, string>(), (done) => {
        opens.push({ dir, done })
        return Effect.as(Deferred.await(done), sync(dir))
      })
    return { opens, syncs, open }
  })

const isRunning = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isNone)

/** Joins a fiber that must end without anything else happening: fails fast (rather than hang) if it does not. */
const ended = <A, E>(fiber: Fiber.Fiber<A, E>, what: string) =>
  Effect.zipRight(waitUntil(Effect.map(isRunning(fiber), (running) => !running), what), Fiber.join(fiber))

const freshLatencies = (): GroupCommit.Latencies => ({ samples: [], next: 0, overlap: false })

/** Runs `count` fsyncs one after another, each taking `ms` of TestClock time. */
const measure = (
  batched: (dir: string) => Effect.Effect<void, string>,
  syncs: Array<Call>,
  latencies: ReadonlyArray<number>
) =>
  Effect.forEach(latencies, (ms) =>
    Effect.gen(function*() {
      const index = syncs.length
      const writer = yield* Effect.fork(batched("/m"))
      yield* waitUntil(Effect.sync(() => syncs.length === index + 1), "the fsync is issued")
      yield* TestClock.adjust(`${ms} millis`)
      yield* Deferred.succeed(syncs[index].done, undefined)
      yield* Fiber.join(writer)
    }), { discard: true })

describe("group commit of directory fsyncs", () => {
  it.effect("writers that arrive during an fsync share the next one, never the one in flight", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const batched = GroupCommit.make(open)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 1))
      const b = yield* Effect.fork(batched("/d"))
      const c = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(syncs.length).toBe(1)
      yield* Deferred.succeed(syncs[0].done, undefined)
      yield* ended(a, "a is acknowledged")
      // b and c were not covered by the first fsync: they wait for a second one.
      yield* waitUntil(Effect.sync(() => syncs.length === 2))
      expect(yield* isRunning(b)).toBe(true)
      const d = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(syncs.length).toBe(2)
      yield* Deferred.succeed(syncs[1].done, undefined)
      yield* ended(b, "b is acknowledged by the second fsync")
      yield* ended(c, "c is acknowledged by the second fsync")
      yield* waitUntil(Effect.sync(() => syncs.length === 3))
      yield* Deferred.succeed(syncs[2].done, undefined)
      yield* Fiber.join(d)
      expect(syncs.map((c) => c.dir)).toEqual(["/d", "/d", "/d"])
    }))

  it.effect("a writer that arrives while the directory is being opened joins that batch: its fsync is not issued yet", () =>
    Effect.gen(function*() {
      const { open, opens, syncs } = yield* fakeDirectory({ instantOpen: false })
      const batched = GroupCommit.make(open)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => opens.length === 1))
      const b = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      // b joined the batch being opened: no second open, no fsync yet.
      expect(opens.length).toBe(1)
      expect(syncs.length).toBe(0)
      yield* Deferred.succeed(opens[0].done, undefined)
      yield* waitUntil(Effect.sync(() => syncs.length === 1))
      // Issued: c comes too late for it.
      const c = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(syncs[0].done, undefined)
      yield* ended(a, "a is acknowledged")
      yield* ended(b, "b is acknowledged by a's fsync")
      expect(yield* isRunning(c)).toBe(true)
      yield* waitUntil(Effect.sync(() => opens.length === 2))
      yield* Deferred.succeed(opens[1].done, undefined)
      yield* waitUntil(Effect.sync(() => syncs.length === 2))
      yield* Deferred.succeed(syncs[1].done, undefined)
      yield* Fiber.join(c)
    }))

  it.effect("the writers of a batch and the next batch do not wait for the directory to be closed", () => {
    // Each directory's close waits until the test ends it.
    const closes: Array<Deferred.Deferred<void>> = []
    return Effect.gen(function*() {
      const { open: openSynced, syncs } = yield* fakeDirectory({ instantOpen: true })
      const open = (dir: string) =>
        Effect.zipLeft(
          openSynced(dir),
          Effect.flatMap(Deferred.make<void>(), (closed) =>
            Effect.zipRight(
              Effect.sync(() => closes.push(closed)),
              Effect.addFinalizer(() => Deferred.await(closed))
            ))
        )
      const batched = GroupCommit.make(open)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 1))
      const b = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(syncs[0].done, undefined)
      // b's batch starts at the end of a's fsync, while a's directory is still open.
      yield* waitUntil(Effect.sync(() => syncs.length === 2), "the next batch's fsync is issued before the close")
      const c = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(syncs[1].done, undefined)
      yield* ended(b, "b is acknowledged before its directory is closed")
      // The writer that ran the batch closes its directory before it returns.
      expect(yield* isRunning(a)).toBe(true)
      yield* Deferred.succeed(closes[0], undefined)
      yield* ended(a, "a returns once its directory is closed")
      yield* waitUntil(Effect.sync(() => syncs.length === 3))
      yield* Deferred.succeed(syncs[2].done, undefined)
      yield* ended(c, "c is acknowledged")
    }).pipe(
      // Whatever happened, the closes end (a failed check must not leave the batches hanging).
      Effect.ensuring(Effect.suspend(() => Effect.forEach(closes, (closed) => Deferred.succeed(closed, undefined))))
    )
  })

  it.effect("every writer of a batch learns that its fsync failed", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const batched = GroupCommit.make(open)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 1))
      const b = yield* Effect.fork(Effect.flip(batched("/d")))
      const c = yield* Effect.fork(Effect.flip(batched("/d")))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(syncs[0].done, undefined)
      yield* Fiber.join(a)
      yield* waitUntil(Effect.sync(() => syncs.length === 2))
      yield* Deferred.fail(syncs[1].done, "EIO")
      expect(yield* ended(b, "b learns the failure")).toBe("EIO")
      expect(yield* ended(c, "c learns the failure")).toBe("EIO")
      // The directory is idle again: the next writer starts its own fsync.
      const e = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 3))
      yield* Deferred.succeed(syncs[2].done, undefined)
      yield* Fiber.join(e)
    }))

  it.effect("every writer of a batch learns that opening its directory failed", () =>
    Effect.gen(function*() {
      const { open, opens, syncs } = yield* fakeDirectory({ instantOpen: false })
      const batched = GroupCommit.make(open)
      const a = yield* Effect.fork(Effect.flip(batched("/d")))
      yield* waitUntil(Effect.sync(() => opens.length === 1))
      const b = yield* Effect.fork(Effect.flip(batched("/d")))
      yield* Effect.yieldNow()
      yield* Deferred.fail(opens[0].done, "ENOENT")
      expect(yield* ended(a, "a learns the failure")).toBe("ENOENT")
      expect(yield* ended(b, "b learns the failure of the batch it joined")).toBe("ENOENT")
      expect(syncs.length).toBe(0)
    }))

  it.live("a writer interrupted at any step of its call leaves no batch behind: the next writer's fsync runs", () =>
    Effect.gen(function*() {
      /** A scheduler that interrupts the fiber it runs at its `step`-th yield. */
      const interruptAt = (step: number): Scheduler.Scheduler => {
        let steps = 0
        let armed = false
        return {
          shouldYield: () => {
            if (++steps !== step) return false
            armed = true
            return 0
          },
          scheduleTask: (task, _priority, fiber) => {
            if (armed && fiber !== undefined) {
              armed = false
              fiber.unsafeInterruptAsFork(FiberId.none)
            }
            setImmediate(task)
          }
        }
      }
      for (let step = 1; step <= 24; step++) {
        const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
        const batched = GroupCommit.make(open)
        const settle = Effect.forEach(syncs, (call) => Deferred.succeed(call.done, undefined), { discard: true })
        const first = yield* Effect.fork(batched("/d").pipe(Effect.withScheduler(interruptAt(step))))
        yield* waitUntil(Effect.zipRight(settle, Effect.map(isRunning(first), (running) => !running)), "first")
        const next = yield* Effect.fork(batched("/d"))
        yield* waitUntil(Effect.zipRight(settle, Effect.map(isRunning(next), (running) => !running)), `next (${step})`)
        expect(Exit.isSuccess(yield* Fiber.await(next))).toBe(true)
      }
    }))

  it.effect("directories are batched independently", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const batched = GroupCommit.make(open)
      const fibers = yield* Effect.all([batched("/x"), batched("/y")].map(Effect.fork))
      yield* waitUntil(Effect.sync(() => syncs.length === 2))
      expect(syncs.map((c) => c.dir).sort()).toEqual(["/x", "/y"])
      for (const call of syncs) yield* Deferred.succeed(call.done, undefined)
      yield* Fiber.joinAll(fibers)
    }))
})

describe("group commit adapts to what fsyncs measure", () => {
  it.effect("while fsync latencies stay flat, a new batch starts without waiting for the one in flight", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const latencies = freshLatencies()
      const batched = GroupCommit.make(open, latencies)
      // 7 measured: still one at a time.
      yield* measure(batched, syncs, [2, 2, 2, 2, 2, 2, 2])
      expect(latencies.overlap).toBe(false)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 8))
      const b = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(syncs.length).toBe(8)
      yield* TestClock.adjust("2 millis")
      yield* Deferred.succeed(syncs[7].done, undefined)
      yield* Fiber.join(a)
      // The 8th said fsyncs do not queue; b's batch starts now.
      expect(latencies.overlap).toBe(true)
      yield* waitUntil(Effect.sync(() => syncs.length === 9))
      // c and d arrive while b's fsync is in flight: each starts its own at once.
      const c = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 10), "c's fsync starts while b's is in flight")
      const d = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 11), "d's fsync starts while b's and c's are in flight")
      // Each is acknowledged by its own fsync, in any order.
      yield* Deferred.succeed(syncs[10].done, undefined)
      yield* ended(d, "d is acknowledged by its own fsync")
      expect(yield* isRunning(b)).toBe(true)
      expect(yield* isRunning(c)).toBe(true)
      yield* Deferred.succeed(syncs[9].done, undefined)
      yield* Fiber.join(c)
      yield* Deferred.succeed(syncs[8].done, undefined)
      yield* Fiber.join(b)
    }))

  it.effect("once fsyncs queue (median latency above 1.5x the minimum), one batch at a time again", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const latencies = freshLatencies()
      const batched = GroupCommit.make(open, latencies)
      yield* measure(batched, syncs, [2, 2, 2, 2, 2, 2, 2, 2])
      expect(latencies.overlap).toBe(true)
      // Queueing: each fsync waits behind others, the latencies grow.
      yield* measure(batched, syncs, [4, 5, 6, 7, 8, 9, 10, 11, 12])
      expect(latencies.overlap).toBe(false)
      const a = yield* Effect.fork(batched("/d"))
      yield* waitUntil(Effect.sync(() => syncs.length === 18))
      const b = yield* Effect.fork(batched("/d"))
      const c = yield* Effect.fork(batched("/d"))
      yield* Effect.yieldNow()
      expect(syncs.length).toBe(18)
      yield* TestClock.adjust("10 millis")
      yield* Deferred.succeed(syncs[17].done, undefined)
      yield* ended(a, "a is acknowledged")
      // b and c share the next one.
      yield* waitUntil(Effect.sync(() => syncs.length === 19))
      yield* Deferred.succeed(syncs[18].done, undefined)
      yield* ended(b, "b is acknowledged by the next fsync")
      yield* ended(c, "c is acknowledged by the next fsync")
      expect(syncs.length).toBe(19)
    }))

  it.effect("the window keeps the last 32 fsyncs: old fast ones are forgotten", () =>
    Effect.gen(function*() {
      const { open, syncs } = yield* fakeDirectory({ instantOpen: true })
      const latencies = freshLatencies()
      const batched = GroupCommit.make(open, latencies)
      // One fast fsync long ago, then a steady 10 ms: flat once the fast one leaves the window.
      yield* measure(batched, syncs, [1, ...Array.from({ length: 31 }, () => 10)])
      expect(latencies.overlap).toBe(false)
      yield* measure(batched, syncs, [10])
      expect(latencies.overlap).toBe(true)
    }))
})

const { seeds, steps } = seedsFromEnv({
  seeds: 6,
  steps: 400,
  seedVar: "GROUP_COMMIT_SEED",
  seedsVar: "GROUP_COMMIT_SEEDS"
})

describe("group commit, randomised: no writer is acknowledged by an fsync issued before it arrived", () => {
  for (const seed of seeds) {
    it.effect(`seed ${seed}`, () =>
      Effect.gen(function*() {
        const next = mulberry32(seed)
        const fail = (step: number, detail: string) =>
          `seed ${seed} step ${step}: ${detail} (replay with GROUP_COMMIT_SEED=${seed})`
        let clock = 0
        const opens: Array<Call & { settled: boolean; ok: boolean }> = []
        const syncs: Array<Call & { issued: number; settled: boolean; ok: boolean }> = []
        const open = (dir: string) =>
          Effect.flatMap(Deferred.make<void, string>(), (done) => {
            const call = { dir, done, settled: false, ok: false }
            opens.push(call)
            return Effect.as(
              Deferred.await(done),
              Effect.flatMap(Deferred.make<void, string>(), (done) => {
                syncs.push({ dir, done, issued: ++clock, settled: false, ok: false })
                return Deferred.await(done)
              })
            )
          })
        const latencies = freshLatencies()
        const batched = GroupCommit.make(open, latencies)
        const regimes = new Set<boolean>()
        const dirs = ["/a", "/a", "/a", "/b"]
        const writers: Array<{ dir: string; arrived: number; fiber: Fiber.RuntimeFiber<void, string>; seen: boolean }> =
          []
        const check = (step: number) =>
          Effect.gen(function*() {
            for (const w of writers) {
              if (w.seen) continue
              const exit = yield* Fiber.poll(w.fiber)
              if (Option.isNone(exit)) continue
              w.seen = true
              // Covered only by an fsync of its directory that was issued after it arrived.
              const covering = syncs.filter((s) => s.dir === w.dir && s.issued > w.arrived && s.settled)
              if (Exit.isSuccess(exit.value)) {
                expect(covering.some((s) => s.ok), fail(step, `writer on ${w.dir} acknowledged too early`)).toBe(true)
              } else {
                const failed = covering.some((s) => !s.ok) || opens.some((o) => o.dir === w.dir && o.settled && !o.ok)
                expect(failed, fail(step, `writer on ${w.dir} failed without a failed fsync`)).toBe(true)
              }
            }
          })
        for (let step = 0; step < steps; step++) {
          const roll = next()
          if (roll < 0.35) {
            const dir = dirs[Math.floor(next() * dirs.length)]
            const arrived = ++clock
            writers.push({ dir, arrived, fiber: yield* Effect.fork(batched(dir)), seen: false })
          } else if (roll < 0.6) {
            const pending = opens.filter((o) => !o.settled)
            if (pending.length > 0) {
              const o = pending[Math.floor(next() * pending.length)]
              o.settled = true
              o.ok = next() >= 0.05
              if (o.ok) yield* Deferred.succeed(o.done, undefined)
              else yield* Deferred.fail(o.done, "ENOENT")
            }
          } else {
            const pending = syncs.filter((s) => !s.settled)
            if (pending.length > 0) {
              const s = pending[Math.floor(next() * pending.length)]
              // Stretches of flat latencies and stretches of scattered ones, so both regimes run.
              const flat = Math.floor(step / 60) % 2 === 0
              yield* TestClock.adjust(`${flat ? 2 : 1 + Math.floor(next() * 20)} millis`)
              s.settled = true
              s.ok = next() >= 0.05
              if (s.ok) yield* Deferred.succeed(s.done, undefined)
              else yield* Deferred.fail(s.done, "EIO")
            }
          }
          for (let i = 0; i < 3; i++) yield* Effect.yieldNow()
          yield* check(step)
          regimes.add(latencies.overlap)
        }
        // Drain: every writer ends once the pending opens and fsyncs end (a few rounds: a batch may wait for one).
        for (let round = 0; round < 100 && writers.some((w) => !w.seen); round++) {
          for (const o of opens) {
            if (!o.settled) {
              o.settled = true
              o.ok = true
              yield* Deferred.succeed(o.done, undefined)
            }
          }
          for (const s of syncs) {
            if (!s.settled) {
              s.settled = true
              s.ok = true
              yield* Deferred.succeed(s.done, undefined)
            }
          }
          yield* Effect.yieldNow()
          yield* check(steps)
        }
        expect(writers.every((w) => w.seen), fail(steps, "a writer never ended")).toBe(true)
        expect(writers.length).toBeGreaterThan(steps / 5)
        // Not vacuous: both regimes (one batch at a time, several at once) ran.
        expect([...regimes].sort()).toEqual([false, true])
      }))
  }
})
