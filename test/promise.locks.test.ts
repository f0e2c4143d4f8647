/**
 * The Promise LockManager: the seed's `acquire`/`release` API over the Effect
 * lock service, its semantics observed through the facade, abort signals, and
 * sharing one authority with Effect code.
 */
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { describe, expect, it } from "vitest"
import * as EffectLockManager from "../src/LockManager.js"
import { LockManager } from "../src/promise.js"
import { expectIdle, rejection, stats } from "./utils/promise.js"

/**
 * Records the order in which acquisitions are granted. A request enters the
 * lock table when `acquire` is called (synchronously), so `stats` tells
 * exactly what is held and what waits; `granted` tells what the callers saw.
 */
const recorder = (manager: LockManager) => {
  const granted: Array<string> = []
  const ids = new Map<string, number>()
  const acquire = (name: string, path: string, type: "read" | "write" | "collect" | "delete") => {
    const promise = manager.acquire(path, type).then((id) => {
      granted.push(name)
      ids.set(name, id)
      return id
    })
    return promise
  }
  const release = (name: string) => manager.release(ids.get(name)!)
  return { acquire, granted, release }
}

describe("promise LockManager: acquire / release", () => {
  it("reads on one path overlap; ids strictly increase", async () => {
    const manager = new LockManager()
    const a = await manager.acquire("/data/file", "read")
    const b = await manager.acquire("/data/file", "read")
    expect(b).toBeGreaterThan(a)
    expect(stats(manager)).toMatchObject({ held: 2, pending: 0 })
    manager.release(a)
    manager.release(b)
    expectIdle(manager)
  })

  it("a write excludes reads and writes on the same path until released", async () => {
    const manager = new LockManager()
    const { acquire, granted, release } = recorder(manager)
    await acquire("w1", "/data/file", "write")
    const r = acquire("r", "/data/file", "read")
    const w2 = acquire("w2", "/data/file", "write")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    release("w1")
    await r
    expect(granted).toEqual(["w1", "r"])
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    release("r")
    await w2
    expect(granted).toEqual(["w1", "r", "w2"])
    release("w2")
    expectIdle(manager)
  })

  it("FIFO: a read arriving after a queued write waits behind it (reads are partitioned by writes)", async () => {
    const manager = new LockManager()
    const { acquire, granted, release } = recorder(manager)
    await acquire("r1", "/data/file", "read")
    const w = acquire("w", "/data/file", "write")
    const r2 = acquire("r2", "/data/file", "read")
    const r3 = acquire("r3", "/data/file", "read")
    // r2 and r3 do not conflict with the held read, but with the earlier queued write.
    expect(stats(manager)).toMatchObject({ held: 1, pending: 3 })
    release("r1")
    await w
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    release("w")
    await Promise.all([r2, r3])
    expect(granted).toEqual(["r1", "w", "r2", "r3"])
    release("r2")
    release("r3")
    expectIdle(manager)
  })

  it("hierarchy: ancestors and descendants conflict with a write, unrelated paths do not", async () => {
    const manager = new LockManager()
    const { acquire, granted, release } = recorder(manager)
    await acquire("write /a/b", "/a/b", "write")
    const descendant = acquire("read /a/b/c", "/a/b/c", "read")
    const ancestor = acquire("read /a", "/a", "read")
    await acquire("write /x", "/x", "write")
    await acquire("write /ab", "/ab", "write") // a sibling with a common prefix is unrelated
    expect(granted).toEqual(["write /a/b", "write /x", "write /ab"])
    expect(stats(manager)).toMatchObject({ held: 3, pending: 2 })
    release("write /a/b")
    await Promise.all([descendant, ancestor])
    // A write below a held read, and above another, waits for both.
    const write = acquire("write /a/b (again)", "/a/b", "write")
    expect(stats(manager)).toMatchObject({ held: 4, pending: 1 })
    release("read /a/b/c")
    expect(stats(manager)).toMatchObject({ held: 3, pending: 1 })
    release("read /a")
    await write
    for (const name of ["write /x", "write /ab", "write /a/b (again)"]) release(name)
    expectIdle(manager)
  })

  it("the seed's lock types: collect is a read, delete is a write", async () => {
    const manager = new LockManager()
    const collect = await manager.acquire("/dir", "collect")
    const read = await manager.acquire("/dir", "read")
    const del = manager.acquire("/dir/file", "delete")
    expect(stats(manager)).toMatchObject({ held: 2, pending: 1 })
    manager.release(collect)
    manager.release(read)
    manager.release(await del)
    expectIdle(manager)
  })

  it("release of an unknown or already released id is a no-op", async () => {
    const manager = new LockManager()
    const id = await manager.acquire("/data/file", "write")
    manager.release(id + 1000)
    expect(stats(manager)).toMatchObject({ held: 1 })
    manager.release(id)
    manager.release(id)
    expectIdle(manager)
    // The id does not come back: the next grant gets a new one.
    const next = await manager.acquire("/data/file", "write")
    expect(next).toBeGreaterThan(id)
    manager.release(next)
    expectIdle(manager)
  })

  it("stats() resolves with the service's numbers", async () => {
    const manager = new LockManager()
    const id = await manager.acquire("/a/b", "read")
    expect(await manager.stats()).toEqual({ held: 1, pending: 0, nodes: 3 })
    manager.release(id)
    expect(await manager.stats()).toEqual({ held: 0, pending: 0, nodes: 0 })
  })

  it("invalid input rejects with the original's errors (Node's for arguments) and takes nothing", async () => {
    const manager = new LockManager()
    const rootWrite = await rejection(manager.acquire("/", "write"))
    expect(rootWrite.message).toBe("Operation is not supported.")
    const type = await rejection(manager.acquire("/data", "lock" as "read"))
    expect(type.message).toBe("Unexpected lock type: lock")
    const nul = await rejection(manager.acquire("/a\0b", "read"))
    expect(nul).toBeInstanceOf(TypeError)
    expect(nul.code).toBe("ERR_INVALID_ARG_VALUE")
    const signal = await rejection(manager.acquire("/data", "read", { signal: "no" as unknown as AbortSignal }))
    expect(signal.code).toBe("ERR_INVALID_ARG_TYPE")
    const notAString = await rejection(manager.acquire(42 as unknown as string, "read"))
    expect(notAString.code).toBe("ERR_INVALID_ARG_TYPE")
    expectIdle(manager)
  })
})

describe("promise LockManager: acquireAll", () => {
  it("one combined write over nested and duplicate paths, without deadlocking with itself", async () => {
    const manager = new LockManager()
    const id = await manager.acquireAll(["/a", "/a/b", "/a", "/c/d", "/c/d/"])
    expect(stats(manager)).toMatchObject({ held: 1, pending: 0 })
    // It covers every path of the set and their subtrees, as one request.
    const reads = ["/a/b/c", "/c", "/c/d/e"].map((path) => manager.acquire(path, "read"))
    const unrelated = await manager.acquire("/b", "write")
    expect(stats(manager)).toMatchObject({ held: 2, pending: 3 })
    manager.release(id)
    const ids = await Promise.all(reads)
    for (const i of [...ids, unrelated]) manager.release(i)
    expectIdle(manager)
  })

  it("waits for conflicting earlier locks, and later requests wait behind it", async () => {
    const manager = new LockManager()
    const { acquire, granted, release } = recorder(manager)
    await acquire("read /a/b", "/a/b", "read")
    const all = manager.acquireAll(["/a", "/z"]).then((id) => {
      granted.push("all")
      return id
    })
    const z = acquire("read /z", "/z", "read")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    release("read /a/b")
    const allId = await all
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    manager.release(allId)
    await z
    expect(granted).toEqual(["read /a/b", "all", "read /z"])
    release("read /z")
    expectIdle(manager)
  })

  it("an empty set or the root is refused", async () => {
    const manager = new LockManager()
    expect((await rejection(manager.acquireAll([]))).message).toBe("Paths must not be empty.")
    expect((await rejection(manager.acquireAll(new Set<string>()))).message).toBe("Paths must not be empty.")
    expect((await rejection(manager.acquireAll(["/a", "/"]))).message).toBe("Operation is not supported.")
    expectIdle(manager)
  })
})

describe("promise LockManager: abort signals", () => {
  it("aborting a waiter removes it; requests behind it are granted at once", async () => {
    const manager = new LockManager()
    const read1 = await manager.acquire("/data/file", "read")
    const controller = new AbortController()
    const write = manager.acquire("/data/file", "write", { signal: controller.signal })
    const read2 = manager.acquire("/data/file", "read")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 2 })
    controller.abort()
    const error = await rejection(write)
    expect(error.name).toBe("AbortError")
    expect(error.code).toBe("ABORT_ERR")
    // read2 no longer waits behind a write: it overlaps read1.
    const id2 = await read2
    expect(stats(manager)).toMatchObject({ held: 2, pending: 0 })
    manager.release(read1)
    manager.release(id2)
    expectIdle(manager)
  })

  it("the signal's reason is the AbortError's cause", async () => {
    const manager = new LockManager()
    const held = await manager.acquire("/data", "write")
    const controller = new AbortController()
    const waiting = manager.acquire("/data/file", "read", { signal: controller.signal })
    const reason = new Error("shutting down")
    controller.abort(reason)
    const error = await rejection(waiting)
    expect(error.code).toBe("ABORT_ERR")
    expect(error.cause).toBe(reason)
    manager.release(held)
    expectIdle(manager)
  })

  it("an already aborted signal rejects without enqueueing", async () => {
    const manager = new LockManager()
    const error = await rejection(manager.acquire("/data", "read", { signal: AbortSignal.abort() }))
    expect(error.code).toBe("ABORT_ERR")
    expect((await rejection(manager.acquireAll(["/a", "/b"], { signal: AbortSignal.abort() }))).code).toBe(
      "ABORT_ERR"
    )
    expectIdle(manager)
  })

  it("abort after the grant changes nothing: the lock stays until released", async () => {
    const manager = new LockManager()
    const controller = new AbortController()
    const id = await manager.acquire("/data", "write", { signal: controller.signal })
    controller.abort()
    expect(stats(manager)).toMatchObject({ held: 1 })
    manager.release(id)
    expectIdle(manager)
  })

  it("a combined request can be aborted while waiting", async () => {
    const manager = new LockManager()
    const held = await manager.acquire("/b/c", "read")
    const controller = new AbortController()
    const all = manager.acquireAll(["/a", "/b"], { signal: controller.signal })
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    controller.abort()
    expect((await rejection(all)).code).toBe("ABORT_ERR")
    manager.release(held)
    expectIdle(manager)
  })
})

describe("promise LockManager: one authority with Effect code", () => {
  it("fromService wraps an Effect service (one facade per service); service and layer hand it back", async () => {
    const service = Effect.runSync(EffectLockManager.make)
    const manager = LockManager.fromService(service)
    expect(manager.service).toBe(service)
    expect(LockManager.fromService(service)).toBe(manager)
    const own = new LockManager()
    expect(LockManager.fromService(own.service)).toBe(own)
    const fromLayer = await Effect.runPromise(Effect.provide(EffectLockManager.LockManager, own.layer))
    expect(fromLayer).toBe(own.service)
  })

  it("a lock held by an Effect fiber blocks the facade, and the reverse, in FIFO order", async () => {
    const manager = new LockManager()
    const service = manager.service
    // Effect side: hold a write lock until `done`.
    const grantedInEffect = Effect.runSync(Deferred.make<number>())
    const done = Effect.runSync(Deferred.make<void>())
    const fiber = Effect.runFork(Effect.scoped(Effect.gen(function*() {
      const lock = yield* service.lock("/shared/doc", "write")
      yield* Deferred.succeed(grantedInEffect, lock.id)
      yield* Deferred.await(done)
    })))
    const effectId = await Effect.runPromise(Deferred.await(grantedInEffect))
    const facadeRead = manager.acquire("/shared/doc", "read")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    await Effect.runPromise(Deferred.succeed(done, undefined))
    await Effect.runPromise(Fiber.join(fiber))
    const readId = await facadeRead
    expect(readId).toBeGreaterThan(effectId)
    // Now the facade holds a read: an Effect write waits for it.
    const effectWrite = Effect.runFork(
      Effect.scoped(Effect.map(service.lock("/shared", "write"), (lock) => lock.id))
    )
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    expect(effectWrite.unsafePoll()).toBeNull()
    manager.release(readId)
    const exit = await Effect.runPromise(Fiber.await(effectWrite))
    expect(Exit.isSuccess(exit) && exit.value > readId).toBe(true)
    expectIdle(manager)
  })

  it("a facade release frees a lock Effect code waits for; Effect scopes free what the facade waits for", async () => {
    const manager = new LockManager()
    const scope = Effect.runSync(Scope.make())
    await Effect.runPromise(Scope.extend(manager.service.lock("/a", "write"), scope))
    const waiting = manager.acquire("/a/b", "write")
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    // Locks taken by Effect code are not the facade's to release.
    for (let id = 0; id < 5; id++) manager.release(id)
    expect(stats(manager)).toMatchObject({ held: 1, pending: 1 })
    await Effect.runPromise(Scope.close(scope, Exit.void))
    manager.release(await waiting)
    expectIdle(manager)
  })

  it("a failure while releasing in the background goes to the errorHandler", async () => {
    const real = Effect.runSync(EffectLockManager.make)
    const failing: EffectLockManager.LockManagerService = {
      ...real,
      lock: (path, mode) =>
        Effect.zipLeft(real.lock(path, mode), Effect.addFinalizer(() => Effect.die(new Error("release failed"))))
    }
    const reported: Array<unknown> = []
    const manager = LockManager.fromService(failing, { errorHandler: (error: unknown) => reported.push(error) })
    const id = await manager.acquire("/data", "write")
    manager.release(id)
    expect(reported).toHaveLength(1)
    expect((reported[0] as Error).message).toBe("release failed")
    // The lock itself was released before the failing finalizer ran.
    expect(stats(manager)).toEqual({ held: 0, pending: 0, nodes: 0 })
  })
})
