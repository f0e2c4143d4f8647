/**
 * Randomised model test: random sequences of acquire (read, write, lockAll),
 * release and interrupt-a-pending-request over a small universe of nested
 * paths. After every step the set of granted requests must equal the reference
 * model of the fairness rule (README, "The locking model") exactly.
 *
 * Replay a failure with MODEL_SEED=<seed>; run more with MODEL_SEEDS / STEPS.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { LockTable, type Request } from "../src/internal/lockTable.js"
import { topMost } from "../src/internal/path.js"
import * as LockManager from "../src/LockManager.js"
import { Model, nextStep } from "./utils/lockModel.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

const { seeds, steps } = seedsFromEnv({ seeds: 20, steps: 2000, seedVar: "MODEL_SEED", seedsVar: "MODEL_SEEDS" })

const describeFailure = (seed: number, step: number, detail: string) =>
  `seed ${seed} step ${step}: ${detail} (replay with MODEL_SEED=${seed})`

describe("lock table against the reference model", () => {
  it("matches the model exactly after every step", () => {
    for (const seed of seeds) {
      const rand = mulberry32(seed)
      const table = new LockTable()
      const model = new Model()
      const requests = new Map<number, Request>()
      for (let step = 0; step < steps; step++) {
        const s = nextStep(rand, model, step + 1)
        if (s.kind === "acquire") {
          const r = table.enqueue(s.request.mode, topMost(s.request.paths))
          requests.set(s.request.seq, r)
          model.arrive(s.request)
        } else {
          table.leave(requests.get(s.seq)!)
          requests.delete(s.seq)
          model.leave(s.seq)
        }
        const actual = [...requests].filter(([, r]) => r.state === "held").map(([k]) => k).sort((a, b) => a - b)
        const expected = [...model.held].sort((a, b) => a - b)
        if (actual.join() !== expected.join()) {
          expect.fail(describeFailure(seed, step, `granted [${actual}] but the model grants [${expected}]`))
        }
        const stats = table.stats
        if (stats.held !== expected.length || stats.pending !== model.live.length - expected.length) {
          expect.fail(describeFailure(seed, step, `stats ${JSON.stringify(stats)} disagree with the model`))
        }
      }
      for (const r of requests.values()) table.leave(r)
      expect(table.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    }
  })
})

interface Live {
  readonly granted: Deferred.Deferred<void>
  readonly done: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
}

const serviceSteps = Math.min(steps, Number(process.env.MODEL_SERVICE_STEPS ?? 2000))

describe("LockManager service against the reference model", () => {
  it.effect("matches the model through lock, lockAll, release and interruption", () =>
    Effect.gen(function*() {
      for (const seed of seeds) {
        const rand = mulberry32(seed)
        const manager = yield* LockManager.make
        const model = new Model()
        const fibers = new Map<number, Live>()
        for (let step = 0; step < serviceSteps; step++) {
          const s = nextStep(rand, model, step + 1)
          if (s.kind === "acquire") {
            const granted = yield* Deferred.make<void>()
            const done = yield* Deferred.make<void>()
            const before = yield* manager.stats
            const { mode, paths } = s.request
            const acquire = paths.length === 1 ? manager.lock(paths[0], mode) : manager.lockAll(paths)
            const fiber = yield* Effect.scoped(
              Effect.zipRight(acquire, Effect.zipRight(Deferred.succeed(granted, void 0), Deferred.await(done)))
            ).pipe(Effect.forkDaemon)
            // Wait for the request to reach the table (it never waits on I/O).
            while (true) {
              const now = yield* manager.stats
              if (now.held + now.pending > before.held + before.pending) break
              yield* Effect.yieldNow()
            }
            fibers.set(s.request.seq, { granted, done, fiber })
            model.arrive(s.request)
          } else if (s.kind === "release") {
            const live = fibers.get(s.seq)!
            yield* Deferred.succeed(live.done, void 0)
            yield* Fiber.join(live.fiber)
            fibers.delete(s.seq)
            model.leave(s.seq)
          } else {
            yield* Fiber.interrupt(fibers.get(s.seq)!.fiber)
            fibers.delete(s.seq)
            model.leave(s.seq)
          }
          // Every request the model grants reports its grant, and the table holds no other.
          for (const seq of model.held) yield* Deferred.await(fibers.get(seq)!.granted)
          const stats = yield* manager.stats
          if (stats.held !== model.held.size || stats.pending !== model.live.length - model.held.size) {
            expect.fail(describeFailure(seed, step, `stats ${JSON.stringify(stats)}, model holds [${[...model.held]}]`))
          }
        }
        for (const live of fibers.values()) yield* Fiber.interrupt(live.fiber)
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      }
    }))
})
