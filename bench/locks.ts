/**
 * LockManager benchmarks. The baselines are what a user could write instead
 * (one `Effect.makeSemaphore(1)`, or one `RWLock` of the npm package
 * `async-rwlock` driven by async/await), so a ratio says what the path-aware,
 * FIFO-fair manager costs or buys over the simplest locks at hand. Neither
 * baseline knows paths: each is one lock for everything.
 *
 * Every case uses its own manager and checks that it is idle (no lock held,
 * none pending, no node left in the index) after the warm-up and every round.
 */
import { RWLock, State } from "async-rwlock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as LockManager from "../src/LockManager.js"
import { mulberry32 } from "../test/utils/random.js"
import { type Case, effectRunner, type Prepared, type Runner, type Suite } from "./harness.js"

/** Fixed so that every run locks the same paths; `BENCH_SEED` picks others. */
const SEED = Number.parseInt(process.env.BENCH_SEED ?? "", 10) || 0x5eed

// The same seeded PRNG the randomised tests use.
const random = mulberry32

const NAMES_PER_LEVEL = 8

/** `count` paths of `depth` segments, each segment one of 8 names for its level. */
const randomPaths = (count: number, depth: number, seed: number): Array<string> => {
  const next = random(seed)
  const paths: Array<string> = []
  for (let i = 0; i < count; i++) {
    let path = ""
    for (let level = 0; level < depth; level++) {
      path += `/l${level}n${Math.floor(next() * NAMES_PER_LEVEL)}`
    }
    paths.push(path)
  }
  return paths
}

const expectIdle = (manager: LockManager.LockManagerService) => async (): Promise<void> => {
  const stats = await Effect.runPromise(manager.stats)
  if (stats.held !== 0 || stats.pending !== 0 || stats.nodes !== 0) {
    throw new Error(`lock manager not idle: ${JSON.stringify(stats)}`)
  }
}

/** A fresh manager, semaphore and RWLock per case, so one case cannot leave work for the next. */
const fresh = () => {
  const manager = Effect.runSync(LockManager.make)
  const semaphore = Effect.runSync(Effect.makeSemaphore(1))
  const rwlock = new RWLock()
  const idle = expectIdle(manager)
  const verify = async (): Promise<void> => {
    await idle()
    if (rwlock.getState() !== State.Idle) throw new Error(`RWLock not idle: state ${rwlock.getState()}`)
  }
  return { manager, semaphore, rwlock, verify }
}

/** What a Promise-based program would write: acquire, (no work), release, one path after another. */
const rwlockRunner = (rwlock: RWLock, paths: ReadonlyArray<string>): Runner => ({
  name: "async-rwlock writeLock/unlock",
  ops: paths.length,
  run: async () => {
    const started = performance.now()
    for (let i = 0; i < paths.length; i++) {
      await rwlock.writeLock()
      rwlock.unlock()
    }
    return performance.now() - started
  }
})

const semaphoreLoop = (semaphore: Effect.Semaphore, paths: ReadonlyArray<string>) =>
  Effect.forEach(paths, () => semaphore.withPermits(1)(Effect.void), { discard: true })

const withLockLoop = (manager: LockManager.LockManagerService, paths: ReadonlyArray<string>) =>
  Effect.forEach(paths, (path) => manager.withLock(path, "write")(Effect.void), { discard: true })

const withLockUncontended: Case = {
  name: "withLock uncontended, depth 4",
  description: "sequential write withLock on random depth-4 paths vs Semaphore(1).withPermits(1), " +
    "vs one async-rwlock RWLock (await writeLock(), unlock(), in a plain async loop), and a bare Effect loop",
  setup: ({ size }): Prepared => {
    const paths = randomPaths(size(50_000, 200), 4, SEED)
    const { manager, rwlock, semaphore, verify } = fresh()
    return {
      subject: effectRunner("LockManager.withLock", paths.length, withLockLoop(manager, paths)),
      baselines: [
        effectRunner("Semaphore.withPermits", paths.length, semaphoreLoop(semaphore, paths)),
        rwlockRunner(rwlock, paths),
        effectRunner("no lock (loop only)", paths.length, Effect.forEach(paths, () => Effect.void, { discard: true }))
      ],
      verify
    }
  }
}

const scopedLockUncontended: Case = {
  name: "scoped lock uncontended, depth 4",
  description: "sequential Effect.scoped(lock(path, \"write\")) on random depth-4 paths vs the same scoped shape " +
    "on a Semaphore(1) (Effect.scoped(Effect.acquireRelease(take(1), release(1))): the fair comparison, both pay " +
    "for a Scope), vs Semaphore(1).withPermits(1) (no Scope) and vs one async-rwlock RWLock (no Scope either)",
  setup: ({ size }): Prepared => {
    const paths = randomPaths(size(30_000, 200), 4, SEED + 1)
    const { manager, rwlock, semaphore, verify } = fresh()
    const scopedPermit = Effect.scoped(Effect.acquireRelease(semaphore.take(1), () => semaphore.release(1)))
    return {
      subject: effectRunner(
        "Effect.scoped(LockManager.lock)",
        paths.length,
        Effect.forEach(paths, (path) => Effect.scoped(manager.lock(path, "write")), { discard: true })
      ),
      baselines: [
        effectRunner(
          "Effect.scoped(Semaphore take/release)",
          paths.length,
          Effect.forEach(paths, () => scopedPermit, { discard: true })
        ),
        effectRunner("Semaphore.withPermits", paths.length, semaphoreLoop(semaphore, paths)),
        rwlockRunner(rwlock, paths)
      ],
      verify
    }
  }
}

const depth: Case = {
  name: "withLock depth 32 vs depth 4",
  description: "sequential write withLock on random depth-32 paths vs the same on depth-4 paths (cost of depth)",
  setup: ({ size }): Prepared => {
    const ops = size(30_000, 200)
    const deep = randomPaths(ops, 32, SEED + 2)
    const shallow = randomPaths(ops, 4, SEED + 3)
    const { manager, verify } = fresh()
    return {
      subject: effectRunner("withLock depth 32", ops, withLockLoop(manager, deep)),
      baselines: [effectRunner("withLock depth 4", ops, withLockLoop(manager, shallow))],
      verify
    }
  }
}

const FIBERS = 64
const CONTENDED_PATHS = Array.from({ length: 8 }, (_, i) => `/data/k${i}`)

const contended: Case = {
  name: "contended, 64 fibers on 8 paths",
  description: "64 fibers, 8 sibling paths, 25% writes / 75% reads, a yield inside each hold, " +
    "vs the same workload on one global Semaphore(1)",
  setup: ({ size }): Prepared => {
    const perFiber = size(600, 4)
    const next = random(SEED + 4)
    // One list of operations per fiber, drawn up front.
    const work = Array.from({ length: FIBERS }, () =>
      Array.from({ length: perFiber }, () => ({
        path: CONTENDED_PATHS[Math.floor(next() * CONTENDED_PATHS.length)],
        mode: next() < 0.25 ? "write" as const : "read" as const
      })))
    const ops = FIBERS * perFiber
    const { manager, semaphore, verify } = fresh()
    const fibers = <A>(op: (item: { path: string; mode: LockManager.LockMode }) => Effect.Effect<A, unknown>) =>
      Effect.forEach(work, (items) => Effect.forEach(items, op, { discard: true }), {
        concurrency: "unbounded",
        discard: true
      })
    return {
      subject: effectRunner(
        "LockManager.withLock",
        ops,
        fibers(({ mode, path }) => manager.withLock(path, mode)(Effect.yieldNow()))
      ),
      baselines: [effectRunner("global Semaphore(1)", ops, fibers(() => semaphore.withPermits(1)(Effect.yieldNow())))],
      verify
    }
  }
}

/**
 * Queues `waiters` write requests behind a held write lock on one path, then
 * times from the release of the holder until every waiter has had its grant.
 * Resolves with the milliseconds of that release phase only.
 */
const drainQueue = (manager: LockManager.LockManagerService, waiters: number): Effect.Effect<number, unknown> =>
  Effect.gen(function*() {
    const holding = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const drained = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(
      manager.withLock("/q", "write")(
        Deferred.succeed(holding, undefined).pipe(Effect.zipRight(Deferred.await(release)))
      )
    )
    yield* Deferred.await(holding)
    let done = 0
    const waiter = manager.withLock("/q", "write")(Effect.void).pipe(
      Effect.zipRight(Effect.suspend(() => ++done === waiters ? Deferred.succeed(drained, undefined) : Effect.void))
    )
    const forked = yield* Effect.forEach(Array.from({ length: waiters }), () => Effect.fork(waiter))
    while ((yield* manager.stats).pending < waiters) yield* Effect.yieldNow()
    const started = performance.now()
    yield* Deferred.succeed(release, undefined)
    yield* Deferred.await(drained)
    const elapsed = performance.now() - started
    yield* Fiber.join(holder)
    // One join at a time: `Fiber.joinAll` over 10,000 fibers takes seconds.
    yield* Effect.forEach(forked, Fiber.join, { discard: true })
    return elapsed
  })

const queueRunner = (
  manager: LockManager.LockManagerService,
  waiters: number,
  repeats: number
): Runner => {
  const program = Effect.reduce(
    Array.from({ length: repeats }),
    0,
    (total) => Effect.map(drainQueue(manager, waiters), (ms) => total + ms)
  )
  return {
    name: `${waiters.toLocaleString("en-US")} waiters x ${repeats}`,
    ops: waiters * repeats,
    run: () => Effect.runPromise(program)
  }
}

const queue: Case = {
  name: "queued waiters released, 10,000 vs 1,000",
  description: "write waiters queued on one held path, then the holder releases: grants/s while the queue drains, " +
    "10,000 waiters vs 1,000 (same grants per run; ~1 means the cost per grant does not grow with the queue)",
  setup: ({ size }): Prepared => {
    const big = size(10_000, 100)
    const small = size(1_000, 10)
    const grants = size(20_000, 100)
    const { manager, verify } = fresh()
    return {
      subject: queueRunner(manager, big, Math.max(1, Math.round(grants / big))),
      baselines: [queueRunner(manager, small, Math.max(1, Math.round(grants / small)))],
      verify
    }
  }
}

/**
 * `children` write locks held on `/w/c<i>` and, behind each, a pending read;
 * then a read on `/w` (blocked by the writes below it) that is withdrawn,
 * `ops` times. The withdrawn read never blocked the reads below it, so
 * withdrawing it must not cost a visit to each of them.
 */
const withdrawRunner = async (children: number, ops: number) => {
  const manager = Effect.runSync(LockManager.make)
  const scope = Effect.runSync(Scope.make())
  const paths = Array.from({ length: children }, (_, i) => `/w/c${i}`)
  const readers = await Effect.runPromise(Effect.gen(function*() {
    // Taken by a fiber of their own: readers forked by the holder would count as the holder (re-entrant).
    yield* Effect.forEach(paths, (path) => Scope.extend(manager.lock(path, "write"), scope), { discard: true }).pipe(
      Effect.fork,
      Effect.flatMap(Fiber.join)
    )
    // Daemons: they outlive this set-up fiber and wait until the teardown releases the writes.
    const forked = yield* Effect.forEach(
      paths,
      (path) => Effect.forkDaemon(manager.withLock(path, "read")(Effect.void))
    )
    while ((yield* manager.stats).pending < children) yield* Effect.yieldNow()
    return forked
  }))
  const withdraw = Effect.gen(function*() {
    const fiber = yield* Effect.fork(manager.withLock("/w", "read")(Effect.void))
    // Let it enqueue (it waits: the writes below block it), then take it back.
    yield* Effect.yieldNow()
    yield* Fiber.interrupt(fiber)
  })
  const runner = effectRunner(
    `${children.toLocaleString("en-US")} blocked children`,
    ops,
    Effect.forEach(Array.from({ length: ops }), () => withdraw, { discard: true })
  )
  const verify = async () => {
    const stats = await Effect.runPromise(manager.stats)
    if (stats.held !== children || stats.pending !== children) {
      throw new Error(`expected ${children} held and ${children} pending, got ${JSON.stringify(stats)}`)
    }
  }
  const teardown = async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Effect.runPromise(Effect.forEach(readers, Fiber.join, { discard: true }))
    const stats = await Effect.runPromise(manager.stats)
    if (stats.held + stats.pending + stats.nodes !== 0) throw new Error(`not idle: ${JSON.stringify(stats)}`)
  }
  return { runner, verify, teardown }
}

const withdraw: Case = {
  name: "withdrawn waiter over 10,000 vs 100 blocked children",
  description: "a read on /w, queued behind write locks held on its children /w/c<i> (each with a read waiting " +
    "behind it), is interrupted while it waits: withdrawals/s with 10,000 such children vs 100 (~1 means the " +
    "release does not visit the children it never blocked)",
  setup: async ({ size }): Promise<Prepared> => {
    const ops = size(2_000, 20)
    const big = await withdrawRunner(size(10_000, 100), ops)
    const small = await withdrawRunner(size(100, 10), ops)
    return {
      subject: big.runner,
      baselines: [small.runner],
      verify: async () => {
        await big.verify()
        await small.verify()
      },
      teardown: async () => {
        await big.teardown()
        await small.teardown()
      }
    }
  }
}

export const suite: Suite = {
  name: "locks",
  cases: [withLockUncontended, scopedLockUncontended, contended, depth, queue, withdraw]
}
