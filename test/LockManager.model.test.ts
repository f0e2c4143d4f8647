/**
 * Randomised model tests against test/utils/lockModel.ts, the reference model
 * written from the README with its own path normalisation and relation.
 *
 * - Without owners (every request a fiber of its own): random acquire (read,
 *   write, lockAll), release and interrupt-a-waiting-request; after every step
 *   the granted requests equal the model's (the fairness rule).
 * - With owners (fibers holding several locks, re-entrancy, combined requests
 *   with modes, paths in other spellings): the table decides each cycle as the
 *   model's deadlock rule does, and the service (one fiber per owner) grants,
 *   grants at once (re-entrant) and refuses exactly what the model does.
 *
 * Replay a failure with MODEL_SEED=<seed>; run more with MODEL_SEEDS / STEPS.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, type Either, ExecutionStrategy, Exit, Fiber, Queue, Scope } from "effect"
import { LockTable, type Request } from "../src/internal/lockTable.js"
import * as LockManager from "../src/LockManager.js"
import {
  effectiveItems,
  Model,
  type ModelRequest,
  nextOwnedStep,
  nextStep,
  type Outcome,
  Owners
} from "./utils/lockModel.js"
import { waitUntil } from "./utils/locks.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

const { seeds, steps } = seedsFromEnv({ seeds: 20, steps: 2000, seedVar: "MODEL_SEED", seedsVar: "MODEL_SEEDS" })

const describeFailure = (seed: number, step: number, detail: string) =>
  `seed ${seed} step ${step}: ${detail} (replay with MODEL_SEED=${seed})`

/** The table is given what the model says a request locks (its own normalisation and nesting rule). */
const enqueue = (table: LockTable, request: ModelRequest) => {
  const items = effectiveItems(request)
  return table.enqueue(items.map((i) => i.mode), items.map((i) => i.path))
}

describe("lock table against the reference model", () => {
  it("without owners: matches the model exactly after every step", () => {
    for (const seed of seeds) {
      const rand = mulberry32(seed)
      const table = new LockTable()
      const model = new Model()
      const requests = new Map<number, Request>()
      for (let step = 0; step < steps; step++) {
        const s = nextStep(rand, model, step + 1)
        if (s.kind === "acquire") {
          requests.set(s.request.seq, enqueue(table, s.request))
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

  it("with owners: every wait that closes a cycle is found, and no other", () => {
    let refusals = 0
    for (const seed of seeds) {
      const rand = mulberry32(seed)
      const table = new LockTable()
      const model = new Model()
      const owners = new Owners(6)
      const requests = new Map<number, Request>()
      for (let step = 0; step < steps; step++) {
        const s = nextOwnedStep(rand, model, owners, step + 1)
        if (s.kind === "acquire") {
          const owner = model.ownerOf(s.request)
          const holds = model.holdsOf(owner).map((l) => requests.get(l.seq)!)
          const outcome = model.arrive(s.request)
          if (outcome.kind === "reentrant") {
            owners.reentrant.set(s.request.seq, owner)
            continue
          }
          // What is left after re-entrancy, as the model decided it.
          const request = table.enqueue(outcome.items.map((i) => i.mode), outcome.items.map((i) => i.path))
          const cycle = table.waitFor(request, holds)
          if ((cycle !== undefined) !== (outcome.kind === "refused")) {
            expect.fail(
              describeFailure(
                seed,
                step,
                `table ${cycle ? "refused" : "queued"} request ${s.request.seq}, model ${outcome.kind}`
              )
            )
          }
          if (cycle !== undefined) {
            refusals++
            table.leave(request)
          } else {
            requests.set(s.request.seq, request)
          }
        } else if (s.kind === "release") {
          if (owners.reentrant.delete(s.seq)) continue
          table.leave(requests.get(s.seq)!)
          requests.delete(s.seq)
          model.leave(s.seq)
        } else {
          for (const l of model.live.filter((l) => l.owner === s.owner)) {
            table.leave(requests.get(l.seq)!)
            requests.delete(l.seq)
          }
          model.leaveOwner(s.owner)
          owners.retire(s.owner)
        }
        const actual = [...requests].filter(([, r]) => r.state === "held").map(([k]) => k).sort((a, b) => a - b)
        const expected = [...model.held].sort((a, b) => a - b)
        if (actual.join() !== expected.join()) {
          expect.fail(describeFailure(seed, step, `granted [${actual}] but the model grants [${expected}]`))
        }
      }
      for (const r of requests.values()) table.leave(r)
      expect(table.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    }
    // Not vacuous: cycles did happen.
    expect(refusals).toBeGreaterThan(0)
  })
})

interface Live {
  readonly granted: Deferred.Deferred<void>
  readonly done: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
}

const serviceSteps = Math.min(steps, Number(process.env.MODEL_SERVICE_STEPS ?? 2000))

describe("LockManager service against the reference model", () => {
  it.effect("without owners: matches the model through lock, lockAll, release and interruption", () =>
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

  it.live("with owners: re-entrant grants, refusals and the queue match the model, one fiber per owner", () =>
    Effect.gen(function*() {
      const ownedSteps = Math.min(serviceSteps, Number(process.env.MODEL_OWNED_STEPS ?? 600))
      const counts = { reentrant: 0, refused: 0, queued: 0 }
      for (const seed of seeds.slice(0, Number(process.env.MODEL_OWNED_SEEDS ?? 8))) {
        const rand = mulberry32(seed)
        const manager = yield* LockManager.make
        const model = new Model()
        const owners = new Owners(5)
        const replies = new Map<number, Deferred.Deferred<Either.Either<LockManager.Lock, unknown>>>()
        const ids = new Map<number, number>()
        const fibers = new Map<number, OwnerFiber>()
        const spawn = (owner: number) =>
          Effect.map(ownerFiber(manager), (f) => {
            fibers.set(owner, f)
          })
        for (const owner of owners.active) yield* spawn(owner)
        const fail = (step: number, detail: string) => expect.fail(describeFailure(seed, step, detail))

        for (let step = 0; step < ownedSteps; step++) {
          const s = nextOwnedStep(rand, model, owners, step + 1)
          if (s.kind === "acquire") {
            const owner = model.ownerOf(s.request)
            const reply = yield* Deferred.make<Either.Either<LockManager.Lock, unknown>>()
            replies.set(s.request.seq, reply)
            const before = yield* manager.stats
            yield* Queue.offer(fibers.get(owner)!.commands, { kind: "acquire", request: s.request, reply })
            const outcome: Outcome = model.arrive(s.request)
            counts[outcome.kind]++
            // Decided: answered (granted, re-entrant or refused), or queued.
            yield* waitUntil(
              Effect.zipWith(
                Deferred.isDone(reply),
                manager.stats,
                (done, now) => done || now.pending > before.pending
              ),
              `step ${step}: request ${s.request.seq} decided`
            )
            if (outcome.kind === "refused") {
              const result = yield* Deferred.await(reply)
              if (result._tag !== "Left" || (result.left as { _tag?: string })._tag !== "DeadlockError") {
                fail(step, `request ${s.request.seq}: the model refuses it, the service answered ${result._tag}`)
              }
            } else if (outcome.kind === "reentrant") {
              owners.reentrant.set(s.request.seq, owner)
              const result = yield* Deferred.await(reply)
              if (result._tag !== "Right") fail(step, `request ${s.request.seq}: re-entrant, but ${String(result)}`)
              else if (!outcome.covering.some((c) => ids.get(c) === result.right.id)) {
                fail(step, `re-entrant grant ${s.request.seq} has id ${result.right.id}, not a covering lock's`)
              }
            }
          } else if (s.kind === "release") {
            const done = yield* Deferred.make<void>()
            yield* Queue.offer(fibers.get(s.owner)!.commands, { kind: "release", seq: s.seq, done })
            yield* Deferred.await(done)
            if (!owners.reentrant.delete(s.seq)) model.leave(s.seq)
          } else {
            yield* Fiber.interrupt(fibers.get(s.owner)!.fiber)
            fibers.delete(s.owner)
            model.leaveOwner(s.owner)
            yield* spawn(owners.retire(s.owner))
          }
          // Every request the model grants reports its grant; the table holds and queues what the model does.
          for (const seq of model.held) {
            const result = yield* Deferred.await(replies.get(seq)!)
            if (result._tag !== "Right") fail(step, `request ${seq}: granted by the model, ${String(result)} here`)
            else ids.set(seq, result.right.id)
          }
          const stats = yield* manager.stats
          if (stats.held !== model.held.size || stats.pending !== model.live.length - model.held.size) {
            fail(step, `stats ${JSON.stringify(stats)}, model holds [${[...model.held]}] of ${model.live.length}`)
          }
        }
        for (const f of fibers.values()) yield* Fiber.interrupt(f.fiber)
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      }
      console.log(`owned model steps: ${JSON.stringify(counts)}`)
      // Not vacuous: every outcome happened.
      expect(counts.reentrant).toBeGreaterThan(0)
      expect(counts.refused).toBeGreaterThan(0)
      expect(counts.queued).toBeGreaterThan(0)
    }))
})

type Command =
  | {
    readonly kind: "acquire"
    readonly request: ModelRequest
    readonly reply: Deferred.Deferred<Either.Either<LockManager.Lock, unknown>>
  }
  | { readonly kind: "release"; readonly seq: number; readonly done: Deferred.Deferred<void> }

interface OwnerFiber {
  readonly commands: Queue.Queue<Command>
  readonly fiber: Fiber.RuntimeFiber<never, unknown>
}

/**
 * One owner: a fiber that takes its locks itself (each in a scope of its
 * own, so it can release them in any order) and waits while a request waits.
 * Interrupting it ends its waiting request and closes every scope.
 */
const ownerFiber = (manager: LockManager.LockManagerService): Effect.Effect<OwnerFiber> =>
  Effect.gen(function*() {
    const commands = yield* Queue.unbounded<Command>()
    const fiber = yield* Effect.scoped(Effect.gen(function*() {
      const outer = yield* Effect.scope
      const scopes = new Map<number, Scope.CloseableScope>()
      while (true) {
        const command = yield* Queue.take(commands)
        if (command.kind === "release") {
          const scope = scopes.get(command.seq)!
          scopes.delete(command.seq)
          yield* Scope.close(scope, Exit.void)
          yield* Deferred.succeed(command.done, undefined)
          continue
        }
        const { modes, paths, seq } = command.request
        const acquire = modes !== undefined ?
          manager.lockAll(paths.map((p, i) => [p, modes[i]] as const)) :
          paths.length === 1 ?
          manager.lock(paths[0], command.request.mode) :
          manager.lockAll(paths)
        const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        const result = yield* Effect.either(Scope.extend(acquire, scope))
        if (result._tag === "Left") yield* Scope.close(scope, Exit.void)
        else scopes.set(seq, scope)
        yield* Deferred.succeed(command.reply, result)
      }
    })).pipe(Effect.forkDaemon)
    return { commands, fiber }
  })
