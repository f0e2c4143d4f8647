/**
 * The LockManager on its own: readers overlap, a writer waits for them, a
 * reader that arrives after a queued writer waits behind it, and a timed-out
 * waiter leaves the queue.
 *
 * Run: npx tsx examples/locks.ts
 */
import { Console, Duration, Effect, Fiber } from "effect"
import { LockManager } from "effect-persistence"

const program = Effect.gen(function*() {
  const manager = yield* LockManager.LockManager
  const log = (message: string) => Console.log(message)

  const task = (name: string, path: string, mode: LockManager.LockMode, work: Duration.DurationInput) =>
    manager.withLock(path, mode)((lock) =>
      log(`${name}: got ${mode} lock #${lock.id} on ${path}`).pipe(
        Effect.zipRight(Effect.sleep(work)),
        Effect.zipRight(log(`${name}: releases ${path}`))
      )
    )

  const fibers = [
    yield* Effect.fork(task("reader 1", "/data/users", "read", "40 millis")),
    yield* Effect.fork(task("reader 2", "/data/users/alice.json", "read", "40 millis"))
  ]
  yield* Effect.sleep("5 millis")
  fibers.push(yield* Effect.fork(task("writer", "/data", "write", "20 millis")))
  yield* Effect.sleep("5 millis")
  fibers.push(yield* Effect.fork(task("reader 3 (behind the writer)", "/data/users", "read", "10 millis")))
  fibers.push(yield* Effect.fork(task("unrelated writer", "/logs/today", "write", "10 millis")))
  yield* Fiber.joinAll(fibers)

  const holder = yield* Effect.fork(Effect.scoped(Effect.zipRight(manager.lock("/data", "read"), Effect.never)))
  yield* Effect.sleep("5 millis")
  const timedOut = yield* Effect.scoped(manager.lock("/data/users", "write")).pipe(
    Effect.timeoutOption("20 millis")
  )
  yield* log(`a writer that waited 20 ms gave up: ${timedOut._tag === "None" ? "yes" : "no"}`)
  yield* Fiber.interrupt(holder)
  const stats = yield* manager.stats
  yield* log(`at the end: ${JSON.stringify(stats)}`)
})

program.pipe(Effect.provide(LockManager.layer), Effect.runPromise)
