/**
 * Locks belong to fibers: re-entrancy (a request covered by a lock the fiber,
 * or the region it was forked in, holds is granted at once) and deadlock
 * detection (a request that would wait for a lock its own fiber holds, directly
 * or through others, fails at once with a DeadlockError and changes nothing).
 *
 * Every test here would hang without the rule it checks: a deadline turns such
 * a hang into a failure with a message.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, ManagedRuntime, Option, Runtime } from "effect"
import * as LockManager from "../src/LockManager.js"
import type { DeadlockError } from "../src/PersistenceError.js"
import { expectGranted, expectIdle, hold, waitUntil } from "./utils/locks.js"
import { mulberry32, seedsFromEnv } from "./utils/random.js"

/** A generous deadline: only a hang reaches it. */
const noHang = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => new Error("hung: the request never ended") })

const deadlockOf = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<DeadlockError, unknown> =>
  Effect.flatMap(
    Effect.flip(noHang(effect)),
    (error) =>
      typeof error === "object" && error !== null && "_tag" in error && error._tag === "DeadlockError" ?
        Effect.succeed(error as unknown as DeadlockError) :
        Effect.dieMessage(`expected a DeadlockError, got ${String(error)}`)
  )

describe("re-entrant locks", () => {
  it.live("a fiber that holds a write takes a read and a write of the same path at once, with the same id", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const ids = yield* noHang(
        m.withLock("/a", "write")((outer) =>
          Effect.gen(function*() {
            const read = yield* m.withLock("/a", "read")((lock) => Effect.succeed(lock))
            const write = yield* Effect.scoped(m.lock("/a/", "write"))
            expect(read.paths).toEqual(["/a"])
            expect(read.mode).toBe("read")
            // The re-entrant grants use the holder's table entry: nothing more is held.
            expect(yield* m.stats).toEqual({ held: 1, pending: 0, nodes: 2 })
            return [outer.id, read.id, write.id]
          })
        )
      )
      expect(ids[1]).toBe(ids[0])
      expect(ids[2]).toBe(ids[0])
      yield* expectIdle(m)
    }))

  it.live("a held ancestor covers a descendant, even with writers queued behind the holder", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const inside = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        m.withLock("/a", "write")(
          Effect.zipRight(
            Deferred.succeed(inside, undefined),
            Effect.zipRight(Deferred.await(finish), m.withLockAll(["/a/b/c", "/a/x"])(Effect.succeed("nested")))
          )
        )
      )
      yield* Deferred.await(inside)
      const queued = yield* hold(m, "/a/b", "write")
      yield* Deferred.succeed(finish, undefined)
      expect(yield* noHang(Fiber.join(holder))).toBe("nested")
      yield* expectGranted(m, [queued], [0])
      yield* queued.release
      yield* expectIdle(m)
    }))

  it.live("a read covers a read: granted at once although a writer queued behind the holder", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const inside = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const reader = yield* Effect.fork(
        m.withLock("/a", "read")(
          Effect.zipRight(
            Deferred.succeed(inside, undefined),
            Effect.zipRight(Deferred.await(finish), m.withLock("/a/b", "read")(Effect.succeed("read again")))
          )
        )
      )
      yield* Deferred.await(inside)
      // Without re-entrancy the nested read would queue behind this writer, which waits for the outer read.
      const writer = yield* hold(m, "/a", "write")
      yield* Deferred.succeed(finish, undefined)
      expect(yield* noHang(Fiber.join(reader))).toBe("read again")
      yield* expectGranted(m, [writer], [0])
      yield* writer.release
      yield* expectIdle(m)
    }))

  it.live("fibers forked inside the holder's region count as the holder", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const results = yield* noHang(
        m.withLock("/data", "write")(
          Effect.all(
            [
              m.withLock("/data/a", "write")(Effect.succeed("a")),
              m.withLock("/data/b", "read")(Effect.succeed("b")),
              Effect.scoped(Effect.as(m.lock("/data", "read"), "c")),
              // A grandchild, forked by a child.
              Effect.fork(m.withLock("/data/d", "write")(Effect.succeed("d"))).pipe(Effect.flatMap(Fiber.join))
            ],
            { concurrency: "unbounded" }
          )
        )
      )
      expect(results).toEqual(["a", "b", "c", "d"])
      yield* expectIdle(m)
    }))

  it.live("a fiber that outlives the region queues like anyone, and its grant from inside the region is lost", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const grantedInside = yield* Deferred.make<LockManager.Lock>()
      const regionOver = yield* Deferred.make<void>()
      const afterwards = yield* Deferred.make<Option.Option<LockManager.Lock>>()
      // The daemon takes a re-entrant lock while the region holds /a, then outlives it.
      yield* m.withLock("/a", "write")(
        Effect.forkDaemon(
          Effect.scoped(Effect.gen(function*() {
            const lock = yield* m.lock("/a/f", "write")
            yield* Deferred.succeed(grantedInside, lock)
            yield* Deferred.await(regionOver)
            // After the release nothing covers it: a new request queues.
            const later = yield* m.withLock("/a/f", "write")((l) => Effect.succeed(l)).pipe(Effect.option)
            yield* Deferred.succeed(afterwards, later)
          }))
        ).pipe(Effect.zipLeft(Deferred.await(grantedInside)))
      )
      const inside = yield* Deferred.await(grantedInside)
      // The covering lock is gone: the re-entrant lock reports it.
      yield* noHang(inside.lost)
      const lost = yield* Effect.flip(inside.ensureHeld("test"))
      expect(lost._tag).toBe("LockLostError")
      // Someone else takes /a now; the daemon's new request must wait for them.
      const other = yield* hold(m, "/a", "write")
      yield* Deferred.await(other.granted)
      yield* Deferred.succeed(regionOver, undefined)
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1), "the daemon's request queued")
      expect(yield* Deferred.isDone(afterwards)).toBe(false)
      yield* other.release
      const later = yield* noHang(Deferred.await(afterwards))
      assert(Option.isSome(later))
      expect(later.value.id).toBeGreaterThan(inside.id)
      yield* waitUntil(Effect.map(m.stats, (s) => s.held === 0), "the daemon released")
      yield* expectIdle(m)
    }))

  it.live("a fiber forked before the lock was taken is not covered", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const go = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      const child = yield* Effect.fork(
        Deferred.await(go).pipe(Effect.zipRight(m.withLock("/a", "write")(Deferred.succeed(done, undefined))))
      )
      const holder = yield* hold(m, "/a", "write")
      yield* Deferred.succeed(go, undefined)
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1), "the child queued")
      yield* holder.release
      yield* noHang(Fiber.join(child))
      yield* expectIdle(m)
    }))

  it.live("another manager's lock covers nothing here", () =>
    Effect.gen(function*() {
      const a = yield* LockManager.make
      const b = yield* LockManager.make
      const holder = yield* hold(b, "/x", "write")
      const fiber = yield* Effect.fork(a.withLock("/x", "write")(b.withLock("/x", "read")(Effect.void)))
      yield* waitUntil(Effect.map(b.stats, (s) => s.pending === 1), "the request queued on b")
      yield* holder.release
      yield* noHang(Fiber.join(fiber))
      yield* expectIdle(a)
      yield* expectIdle(b)
    }))
})

describe("fibers started from a Runtime", () => {
  it.live("one started by a callback, from a runtime captured before its capturer locked, queues behind that lock", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      // The capturing fiber has locked before (it has a cell of its own), then captures its runtime.
      yield* m.withLock("/warm-up", "read")(Effect.void)
      const runtime = yield* Effect.runtime<never>()
      let holding = false
      let enteredWhileHeld = false
      const handled = yield* Deferred.make<void>()
      const handler = m.withLock("/data/x", "write")(Effect.sync(() => {
        enteredWhileHeld = holding
      }))
      // In this fiber itself: a timeout would run it in a child, whose locks the runtime does not see.
      const queued = yield* m.withLock("/data", "write")(Effect.gen(function*() {
        holding = true
        // A handler run through the runtime from a timer (an HTTP handler, an event listener).
        setTimeout(() => Runtime.runFork(runtime)(Effect.zipRight(handler, Deferred.succeed(handled, undefined))), 0)
        // Until it queues behind this fiber's lock, as any unrelated fiber does, or gets in.
        let waiting = false
        for (let i = 0; i < 5_000 && !waiting && !(yield* Deferred.isDone(handled)); i++) {
          yield* Effect.sleep("1 millis")
          waiting = (yield* m.stats).pending === 1
        }
        holding = false
        return waiting
      }))
      yield* noHang(Deferred.await(handled))
      expect({ queued, enteredWhileHeld }).toEqual({ queued: true, enteredWhileHeld: false })
      yield* expectIdle(m)
    }))

  it.live("the fibers of a runtime whose layers took a lock still count as its holder", () =>
    Effect.gen(function*() {
      // A lock taken while the layers were built outlives the fiber that built them (see the README).
      const guard = Layer.scopedDiscard(Effect.flatMap(LockManager.LockManager, (m) => m.lock("/data", "write")))
      const runtime = ManagedRuntime.make(guard.pipe(Layer.provideMerge(LockManager.layer)))
      const ids = yield* noHang(Effect.promise(() =>
        runtime.runPromise(Effect.flatMap(LockManager.LockManager, (m) =>
          Effect.all([
            m.withLock("/data/a", "write")((lock) => Effect.succeed(lock.id)),
            m.withLock("/data/b", "write")((lock) => Effect.succeed(lock.id))
          ], { concurrency: 2 })))
      ))
      expect(ids[0]).toBe(ids[1])
      yield* Effect.promise(() =>
        runtime.dispose()
      )
    }))
})

describe("deadlock detection", () => {
  it.live("an upgrade of one's own read fails at once, typed, and keeps the read", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const error = yield* m.withLock("/a", "read")(
        deadlockOf(m.withLock("/a", "write")(Effect.void)).pipe(
          Effect.tap(() => Effect.map(m.stats, (s) => expect(s).toEqual({ held: 1, pending: 0, nodes: 2 })))
        )
      )
      expect(error.reason).toBe("Upgrade")
      expect(error.operation).toBe("LockManager.withLock")
      expect(error.paths).toEqual(["/a"])
      expect(error.cycle).toEqual([
        { path: "/a", mode: "write", held: false },
        { path: "/a", mode: "read", held: true }
      ])
      expect(error.message).toBe(
        "LockManager.withLock \"/a\": refused, it would wait forever: write \"/a\" waits for read \"/a\" " +
          "(held by the requester). Nothing was queued; the locks already held are kept"
      )
      yield* expectIdle(m)
    }))

  it.live("a lock above or below one's own that the held one does not cover is refused (Upgrade)", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const above = yield* m.withLock("/a/b", "write")(deadlockOf(Effect.scoped(m.lock("/a", "read"))))
      expect(above.cycle).toEqual([{ path: "/a", mode: "read", held: false }, {
        path: "/a/b",
        mode: "write",
        held: true
      }])
      const below = yield* m.withLock("/a", "read")(deadlockOf(m.withLockAll(["/z", "/a/b"])(Effect.void)))
      expect(below.reason).toBe("Upgrade")
      expect(below.paths).toEqual(["/z", "/a/b"])
      yield* expectIdle(m)
    }))

  it.live("two fibers locking in opposite orders: one gets the error at once, the other completes", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const bothHold = yield* Deferred.make<void>()
      const holding = yield* Effect.makeLatch(false)
      let count = 0
      const arrived = Effect.sync(() => ++count).pipe(
        Effect.flatMap((n) => n === 2 ? Deferred.succeed(bothHold, undefined) : Effect.void)
      )
      const side = (first: string, second: string) =>
        m.withLock(first, "write")(
          arrived.pipe(
            Effect.zipRight(Deferred.await(bothHold)),
            Effect.zipRight(holding.await),
            Effect.zipRight(m.withLock(second, "write")(Effect.succeed(`${first} then ${second}`)))
          )
        ).pipe(Effect.either)
      const fibers = yield* Effect.all([Effect.fork(side("/a", "/b")), Effect.fork(side("/b", "/a"))])
      yield* Deferred.await(bothHold)
      yield* holding.open
      const results = yield* noHang(Effect.all(fibers.map(Fiber.join)))
      const failed = results.filter((r) => r._tag === "Left")
      const done = results.filter((r) => r._tag === "Right")
      expect(failed.length).toBe(1)
      expect(done.length).toBe(1)
      assert(failed[0]._tag === "Left")
      expect(failed[0].left).toMatchObject({ _tag: "DeadlockError", reason: "Cycle" })
      // The refused side asked second: it waits for what the other holds, whose holder waits for its first lock.
      const cycle = (failed[0].left as DeadlockError).cycle
      expect(cycle.length).toBe(4)
      expect(cycle[0].held).toBe(false)
      expect(cycle[1].held).toBe(true)
      expect(cycle[2].held).toBe(false)
      expect(cycle[3]).toEqual({ path: cycle[0].path === "/a" ? "/b" : "/a", mode: "write", held: true })
      expect(failed[0].left.message).toContain("whose holder waits for")
      yield* expectIdle(m)
    }))

  it.live("a cycle through a queued request: waiting behind a writer that waits for one's own read", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const inside = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const reader = yield* Effect.fork(
        m.withLock("/a/x", "read")(
          Effect.zipRight(
            Deferred.succeed(inside, undefined),
            Effect.zipRight(Deferred.await(finish), deadlockOf(m.withLock("/a", "read")(Effect.void)))
          )
        )
      )
      yield* Deferred.await(inside)
      // Queued: waits for the reader's /a/x. A read of /a arriving after it waits behind it.
      const writer = yield* hold(m, "/a", "write")
      yield* Deferred.succeed(finish, undefined)
      const error = yield* noHang(Fiber.join(reader))
      expect(error.reason).toBe("Cycle")
      expect(error.cycle).toEqual([
        { path: "/a", mode: "read", held: false },
        { path: "/a", mode: "write", held: false },
        { path: "/a/x", mode: "read", held: true }
      ])
      expect(error.message).toContain("which waits for read \"/a/x\" (held by the requester)")
      yield* expectGranted(m, [writer], [0])
      yield* writer.release
      yield* expectIdle(m)
    }))

  it.live("a cycle through a forked child: the child's wait counts as its region's", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const otherHolds = yield* Deferred.make<void>()
      const ask = yield* Deferred.make<void>()
      // `other` holds /b, then asks for /a.
      const other = yield* Effect.fork(
        m.withLock("/b", "write")(
          Deferred.succeed(otherHolds, undefined).pipe(
            Effect.zipRight(Deferred.await(ask)),
            Effect.zipRight(deadlockOf(m.withLock("/a", "write")(Effect.void)))
          )
        )
      )
      yield* Deferred.await(otherHolds)
      // The region holds /a and waits for its child, which waits for /b.
      const region = yield* Effect.fork(
        m.withLock("/a", "write")(
          Effect.fork(m.withLock("/b", "write")(Effect.succeed("child done"))).pipe(Effect.flatMap(Fiber.join))
        )
      )
      yield* waitUntil(Effect.map(m.stats, (s) => s.held === 2 && s.pending === 1), "the child queued")
      yield* Deferred.succeed(ask, undefined)
      const error = yield* noHang(Fiber.join(other))
      expect(error.reason).toBe("Cycle")
      expect(error.cycle).toEqual([
        { path: "/a", mode: "write", held: false },
        { path: "/a", mode: "write", held: true },
        { path: "/b", mode: "write", held: false },
        { path: "/b", mode: "write", held: true }
      ])
      expect(yield* noHang(Fiber.join(region))).toBe("child done")
      yield* expectIdle(m)
    }))
})

const { seeds } = seedsFromEnv({ seeds: 3, steps: 0, seedVar: "OWNERSHIP_SEED", seedsVar: "OWNERSHIP_SEEDS" })
const FIBERS = Number(process.env.OWNERSHIP_FIBERS ?? 1000)
const PATHS = ["/a", "/a/b", "/a/b/c", "/a/x", "/b", "/b/a", "/c", "/c/d"]

describe("deadlock detection under load", () => {
  for (const seed of seeds) {
    it.live(`${FIBERS} fibers taking random pairs of locks in random order all end (seed ${seed})`, () =>
      Effect.gen(function*() {
        const rand = mulberry32(seed)
        const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(rand() * xs.length)]
        const m = yield* LockManager.make
        const fibers = []
        for (let i = 0; i < FIBERS; i++) {
          const first = pick(PATHS)
          const second = pick(PATHS)
          const modes = [pick(["read", "write"] as const), pick(["read", "write"] as const)]
          const pause = Math.floor(rand() * 4)
          const scoped = rand() < 0.5
          const inner = m.withLock(second, modes[1])(Effect.yieldNow())
          const between = Effect.zipRight(Effect.forEach(Array.from({ length: pause }), () => Effect.yieldNow()), inner)
          const outer = scoped ?
            Effect.scoped(Effect.zipRight(m.lock(first, modes[0]), between)) :
            m.withLock(first, modes[0])(between)
          fibers.push(yield* Effect.fork(Effect.either(outer)))
        }
        const outcomes = yield* Effect.timeoutFail(Effect.all(fibers.map(Fiber.join)), {
          duration: "120 seconds",
          onTimeout: () => new Error(`seed ${seed}: some fibers never ended (replay with OWNERSHIP_SEED=${seed})`)
        })
        const refused = outcomes.filter((o) => o._tag === "Left")
        for (const o of refused) {
          if (o._tag === "Left" && o.left._tag !== "DeadlockError") {
            return yield* Effect.dieMessage(
              `seed ${seed}: unexpected ${o.left._tag} (replay with OWNERSHIP_SEED=${seed})`
            )
          }
        }
        console.log(`seed ${seed}: ${FIBERS - refused.length} done, ${refused.length} refused as deadlocks`)
        // Not vacuous: both outcomes happen. (That each refusal is a real cycle is the model test's job.)
        expect(refused.length).toBeGreaterThan(0)
        expect(refused.length).toBeLessThan(FIBERS)
        yield* expectIdle(m)
      }))
  }
})
