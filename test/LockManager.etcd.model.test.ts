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
import { afterAll, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as LockManager from "../src/LockManager.js"
import type * as PersistenceError from "../src/PersistenceError.js"
import { type EtcdCluster, startCluster } from "./fixtures/etcd-cluster.js"
import { killAll } from "./fixtures/lock-processes.js"
import { seedsFromEnv } from "./utils/random.js"
import { runRemoteModel } from "./utils/remoteModel.js"

const SEED_VAR = "ETCD_MODEL_SEED"
const { seeds, steps } = seedsFromEnv({
  seeds: 4,
  steps: 150,
  seedVar: SEED_VAR,
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

const TTL = "15 seconds"

/**
 * Lock ids are etcd revisions: they follow arrival order. Each wait is
 * shorter than the managers' ttl, after which a waiter scans again without
 * news: a missed wake-up fails the test instead of slowing it.
 */
const runModel = (
  name: string,
  manager: LockManager.LockManagerService<PersistenceError.RemoteLockError>,
  seed: number
) => runRemoteModel(manager, { name, seed, steps, seedVar: SEED_VAR, within: "5 seconds", ids: "arrival" })

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
