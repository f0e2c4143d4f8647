/**
 * The service-level model test of test/LockManager.model.test.ts, run against
 * a lock server process (`lockd`) through `LockManager.layerRemote`, over a Unix
 * socket and over TCP: after every step (acquire, release, interrupt a waiting
 * request) the server grants exactly what the reference model of the fairness
 * rule grants. Release and interruption are confirmed by the server before they
 * return, so the check after each step is exact. Grant ids must increase.
 *
 * Replay a failure with REMOTE_MODEL_SEED=<seed>; REMOTE_MODEL_SEEDS and STEPS
 * run more.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer } from "effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as LockManager from "../src/LockManager.js"
import type * as PersistenceError from "../src/PersistenceError.js"
import { type Child, killAll, remoteOptions, startLockd } from "./fixtures/lock-processes.js"
import { Model, nextStep } from "./utils/lockModel.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

const { seeds, steps } = seedsFromEnv({
  seeds: 5,
  steps: 300,
  seedVar: "REMOTE_MODEL_SEED",
  seedsVar: "REMOTE_MODEL_SEEDS"
})

afterAll(killAll)

const describeFailure = (transport: string, seed: number, step: number, detail: string) =>
  `${transport}, seed ${seed} step ${step}: ${detail} (replay with REMOTE_MODEL_SEED=${seed})`

interface Live {
  readonly granted: Deferred.Deferred<LockManager.Lock>
  readonly done: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
}

/** Bounded: a request that never reaches the server or a grant that never arrives fails the test. */
const within = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
  Effect.timeoutFail(effect, { duration: "10 seconds", onTimeout: () => new Error(`timed out: ${what}`) })

const runModel = (
  transport: string,
  manager: LockManager.LockManagerService<PersistenceError.RemoteLockError>,
  seed: number
) =>
  Effect.gen(function*() {
    const rand = mulberry32(seed)
    const model = new Model()
    const fibers = new Map<number, Live>()
    const reported = new Set<number>()
    let lastId = 0
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
        // Wait for the request to reach the server's table.
        yield* within(
          "request enqueued",
          Effect.iterate(before, {
            while: (now) => now.held + now.pending <= before.held + before.pending,
            body: () => manager.stats
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
      // Every request the model grants reports its grant, new grants carry
      // larger ids than any before, and the server holds no other lock.
      let stepMax = lastId
      for (const seq of model.held) {
        const lock = yield* within(`grant of request ${seq}`, Deferred.await(fibers.get(seq)!.granted))
        if (reported.has(seq)) continue
        reported.add(seq)
        if (lock.id <= lastId) {
          expect.fail(describeFailure(transport, seed, step, `grant id ${lock.id} after id ${lastId}`))
        }
        stepMax = Math.max(stepMax, lock.id)
      }
      lastId = stepMax
      const stats = yield* manager.stats
      if (stats.held !== model.held.size || stats.pending !== model.live.length - model.held.size) {
        expect.fail(
          describeFailure(
            transport,
            seed,
            step,
            `server stats ${JSON.stringify(stats)}, model holds [${[...model.held]}]`
          )
        )
      }
    }
    for (const live of fibers.values()) yield* Fiber.interrupt(live.fiber)
    expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
  })

const lockd = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.promise(() => startLockd(args)),
    (server: Child & { readonly address: string }) => Effect.promise(() => (server.signal("SIGTERM"), server.closed))
  )

/** The service `LockManager.layerRemote` provides, for the current scope. */
const remoteManager = (address: string) =>
  Effect.map(Layer.build(LockManager.layerRemote(remoteOptions(address))), Context.get(LockManager.LockManager))

describe("remote LockManager against the reference model", () => {
  it.live("matches the model over a Unix socket", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "lockserver-model-"))),
        (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
      )
      const server = yield* lockd(["--socket", nodePath.join(dir, "lockd.sock")])
      const manager = yield* remoteManager(server.address)
      for (const seed of seeds) yield* runModel("unix", manager, seed)
    })), 60_000)

  it.live("matches the model over TCP", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* lockd(["--port", "0"])
      const manager = yield* remoteManager(server.address)
      yield* runModel("tcp", manager, seeds[0] + 1000)
    })), 60_000)
})
