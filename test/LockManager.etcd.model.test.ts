/**
 * The service-level model test of test/LockManager.model.test.ts through
 * `LockManager.makeEtcd`, against a single-member and a 3-member etcd cluster
 * started for the test (loopback, temp data): after every step (acquire,
 * release, interrupt a waiting request) the manager grants exactly what the
 * reference model of the fairness rule grants. Release and interruption wait
 * until etcd confirmed the deletion, so every grant the step makes possible is
 * awaited, and every request the model keeps waiting must not be granted.
 * Lock ids are etcd revisions: they follow arrival order.
 *
 * Replay a failure with ETCD_MODEL_SEED=<seed>; ETCD_MODEL_SEEDS and STEPS
 * run more.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as LockManager from "../src/LockManager.js"
import type * as PersistenceError from "../src/PersistenceError.js"
import { type EtcdCluster, startCluster } from "./fixtures/etcd-cluster.js"
import { killAll } from "./fixtures/lock-processes.js"
import { Model, nextStep } from "./utils/lockModel.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

const { seeds, steps } = seedsFromEnv({
  seeds: 4,
  steps: 150,
  seedVar: "ETCD_MODEL_SEED",
  seedsVar: "ETCD_MODEL_SEEDS"
})

let single: EtcdCluster | undefined
let three: EtcdCluster | undefined

beforeAll(async () => {
  ;[single, three] = await Promise.all([
    startCluster({ size: 1, name: "etcd-model-1" }),
    startCluster({ size: 3, name: "etcd-model-3" })
  ])
}, 60_000)

afterAll(async () => {
  await Promise.all([single?.stop(), three?.stop()])
  await killAll()
})

const describeFailure = (cluster: string, seed: number, step: number, detail: string) =>
  `${cluster}, seed ${seed} step ${step}: ${detail} (replay with ETCD_MODEL_SEED=${seed})`

interface Live {
  readonly granted: Deferred.Deferred<LockManager.Lock>
  readonly done: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
}

/**
 * Bounded: a request that never reaches etcd or a grant that never arrives
 * fails the test. Shorter than the managers' ttl, after which a waiter scans
 * again without news: a missed wake-up fails the test instead of slowing it.
 */
const within = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
  Effect.timeoutFail(effect, { duration: "5 seconds", onTimeout: () => new Error(`timed out: ${what}`) })

const TTL = "15 seconds"

const runModel = (
  cluster: string,
  manager: LockManager.LockManagerService<PersistenceError.RemoteLockError>,
  seed: number
) =>
  Effect.gen(function*() {
    const rand = mulberry32(seed)
    const model = new Model()
    const fibers = new Map<number, Live>()
    const ids = new Map<number, number>()
    const fail = (step: number, detail: string) => expect.fail(describeFailure(cluster, seed, step, detail))
    for (let step = 0; step < steps; step++) {
      const s = nextStep(rand, model, step + 1)
      if (s.kind === "acquire") {
        const granted = yield* Deferred.make<LockManager.Lock>()
        const done = yield* Deferred.make<void>()
        const before = yield* manager.stats
        const { mode, paths } = s.request
        const acquire = paths.length === 1 ? manager.lock(paths[0], mode) : manager.lockAll(paths)
        const fiber = yield* Effect.scoped(
          Effect.flatMap(acquire, (lock) => Effect.zipRight(Deferred.succeed(granted, lock), Deferred.await(done)))
        ).pipe(Effect.forkDaemon)
        // Enqueued once the manager counts it: its keys are in etcd, at a revision after every earlier step's.
        yield* within(
          "request enqueued",
          Effect.iterate(before, {
            while: (now) => now.held + now.pending <= before.held + before.pending,
            body: () => Effect.zipRight(Effect.yieldNow(), manager.stats)
          })
        )
        fibers.set(s.request.seq, { granted, done, fiber })
        model.arrive(s.request)
      } else if (s.kind === "release") {
        const live = fibers.get(s.seq)!
        yield* Deferred.succeed(live.done, void 0)
        yield* within("release", Fiber.join(live.fiber))
        fibers.delete(s.seq)
        model.leave(s.seq)
      } else {
        yield* within("interrupt", Fiber.interrupt(fibers.get(s.seq)!.fiber))
        fibers.delete(s.seq)
        model.leave(s.seq)
      }
      // Every request the model grants reports its grant; ids follow arrival order.
      for (const seq of model.held) {
        const lock = yield* within(`grant of request ${seq}`, Deferred.await(fibers.get(seq)!.granted))
        if (ids.has(seq)) continue
        for (const [other, id] of ids) {
          if ((other < seq) !== (id < lock.id)) {
            fail(step, `request ${seq} got id ${lock.id}, request ${other} id ${id}`)
          }
        }
        ids.set(seq, lock.id)
      }
      // ... and no other request is granted.
      for (const [seq, live] of fibers) {
        if (!model.held.has(seq) && (yield* Deferred.isDone(live.granted))) {
          fail(step, `request ${seq} was granted, the model keeps it waiting`)
        }
      }
      const stats = yield* manager.stats
      if (stats.held !== model.held.size || stats.pending !== model.live.length - model.held.size) {
        fail(step, `stats ${JSON.stringify(stats)}, model holds [${[...model.held]}] of ${model.live.length}`)
      }
    }
    for (const live of fibers.values()) yield* within("interrupt at the end", Fiber.interrupt(live.fiber))
    expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
  })

describe("etcd LockManager against the reference model", () => {
  it.live("matches the model through a single-member cluster", () =>
    Effect.scoped(Effect.gen(function*() {
      const manager = yield* LockManager.makeEtcd({ endpoints: single!.endpoints, prefix: "/model/single", ttl: TTL })
      const started = performance.now()
      for (const seed of seeds) yield* runModel("1 member", manager, seed)
      console.log(
        `etcd model, 1 member: ${seeds.length} x ${steps} steps in ${(performance.now() - started).toFixed(0)} ms`
      )
    })), 120_000)

  it.live("matches the model through a 3-member cluster", () =>
    Effect.scoped(Effect.gen(function*() {
      const manager = yield* LockManager.makeEtcd({ endpoints: three!.endpoints, prefix: "/model/three", ttl: TTL })
      const started = performance.now()
      yield* runModel("3 members", manager, seeds[0] + 1000)
      console.log(`etcd model, 3 members: ${steps} steps in ${(performance.now() - started).toFixed(0)} ms`)
    })), 120_000)
})
