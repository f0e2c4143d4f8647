/**
 * The reference-model run shared by the remote managers' model tests (the
 * lock server's and etcd's): after every step (acquire, release, interrupt a
 * waiting request) the manager grants exactly what the model of the fairness
 * rule grants. A release or an interruption returns only once the remote
 * authority confirmed it, so every grant a step makes possible is awaited,
 * and a request the model keeps waiting must not have been granted.
 */
import { expect } from "@effect/vitest"
import { Deferred, type Duration, Effect, Fiber } from "effect"
import type * as LockManager from "../../src/LockManager.js"
import type * as PersistenceError from "../../src/PersistenceError.js"
import { Model, nextStep } from "./lockModel.js"
import { mulberry32 } from "./random.js"

export interface RemoteModelRun {
  /** Names the transport or cluster in failures. */
  readonly name: string
  readonly seed: number
  readonly steps: number
  /** The variable that replays one seed. */
  readonly seedVar: string
  /** Bounds every wait: a request that never arrives or a grant that never comes fails the test. */
  readonly within: Duration.DurationInput
  /**
   * What ids say: "arrival" (etcd revisions: request order), or "grant" (the
   * lock server numbers grants: each new grant's id exceeds every earlier one).
   */
  readonly ids: "arrival" | "grant"
}

interface Live {
  readonly granted: Deferred.Deferred<LockManager.Lock>
  readonly done: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
}

export const runRemoteModel = (
  manager: LockManager.LockManagerService<PersistenceError.RemoteLockError>,
  run: RemoteModelRun
) =>
  Effect.gen(function*() {
    const within = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
      Effect.timeoutFail(effect, { duration: run.within, onTimeout: () => new Error(`timed out: ${what}`) })
    const fail = (step: number, detail: string) =>
      expect.fail(`${run.name}, seed ${run.seed} step ${step}: ${detail} (replay with ${run.seedVar}=${run.seed})`)
    const rand = mulberry32(run.seed)
    const model = new Model()
    const fibers = new Map<number, Live>()
    const ids = new Map<number, number>()
    let lastId = -Infinity
    for (let step = 0; step < run.steps; step++) {
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
        // Arrived once the manager counts it: then it is in the remote table, after every earlier step's request.
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
      // Every request the model grants reports its grant, with an id that obeys the manager's rule ...
      let stepMax = lastId
      for (const seq of model.held) {
        const lock = yield* within(`grant of request ${seq}`, Deferred.await(fibers.get(seq)!.granted))
        if (ids.has(seq)) continue
        if (run.ids === "arrival") {
          for (const [other, id] of ids) {
            if ((other < seq) !== (id < lock.id)) {
              fail(step, `request ${seq} got id ${lock.id}, request ${other} id ${id}`)
            }
          }
        } else if (lock.id <= lastId) {
          fail(step, `grant id ${lock.id} after id ${lastId}`)
        }
        ids.set(seq, lock.id)
        stepMax = Math.max(stepMax, lock.id)
      }
      lastId = stepMax
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
