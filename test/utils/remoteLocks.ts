/**
 * What the tests of the remote managers (the lock server's and etcd's) share:
 * temp directories, bounded waits, a held lock under the test's control, a
 * Client over a manager layer, and the typed error they must fail with.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { expect } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Option } from "effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Client from "../../src/Client.js"
import type * as LockManager from "../../src/LockManager.js"
import * as PersistenceError from "../../src/PersistenceError.js"

type RemoteManager = LockManager.LockManagerService<PersistenceError.RemoteLockError>

/** A fresh directory (its real path) under the system's temp directory, removed with the scope. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), prefix)))),
    (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
  )

/** The Client's temp files: `.<name>.<20 characters>.tmp`. */
export const TEMP = /^\..*\.[0-9a-z]{20}\.tmp$/

export const now = () => performance.now()

/** Fails the test (instead of hanging it) when `effect` takes longer than `ms`. */
export const within = <A, E, R>(ms: number, what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`${what}: no outcome within ${ms} ms`) })

/** Polls the manager's stats (every 5 ms, for 10 s at most) until they satisfy `condition`. */
export const untilStats = (manager: RemoteManager, condition: (stats: LockManager.LockStats) => boolean) =>
  within(
    10_000,
    "manager stats",
    Effect.iterate(false, {
      while: (done) => !done,
      body: () => Effect.zipRight(Effect.sleep("5 millis"), Effect.map(manager.stats, condition))
    })
  )

/**
 * Forks a fiber that takes a write lock on `path` and holds it until
 * `release`; `granted` completes with the grant time and the lock.
 */
export const holdLock = (manager: RemoteManager, path: string) =>
  Effect.gen(function*() {
    const granted = yield* Deferred.make<{ readonly at: number; readonly lock: LockManager.Lock }>()
    const done = yield* Deferred.make<void>()
    const fiber = yield* Effect.scoped(
      Effect.flatMap(
        manager.lock(path, "write"),
        (lock) => Effect.zipRight(Deferred.succeed(granted, { at: now(), lock }), Deferred.await(done))
      )
    ).pipe(Effect.forkDaemon)
    return { granted, fiber, release: Effect.zipRight(Deferred.succeed(done, void 0), Fiber.join(fiber)) }
  })

/** A Client over `managerLayer` and the Node file system, living as long as the current scope. */
export const clientOver = <E>(managerLayer: Layer.Layer<LockManager.LockManager, E>) =>
  Layer.build(Client.layer().pipe(Layer.provide(Layer.merge(managerLayer, NodeFileSystem.layer))))
    .pipe(Effect.map(Context.get(Client.Client)), Effect.orDie)

/** `exit` failed with a `RemoteLockError` whose reason is one of `reasons`; returns it. */
export const expectRemoteError = (exit: Exit.Exit<unknown, unknown>, reasons: ReadonlyArray<string>) => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  expect(Option.isSome(failure) && failure.value instanceof PersistenceError.RemoteLockError, `${exit}`).toBe(true)
  const error = Option.getOrThrow(failure) as PersistenceError.RemoteLockError
  expect(reasons, error.message).toContain(error.reason)
  return error
}
