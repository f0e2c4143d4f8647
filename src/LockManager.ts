/**
 * Hierarchical read/write path locks with FIFO fairness between conflicting
 * requests. Locks are scoped resources: closing the scope, interruption,
 * failure or a timeout releases them.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/lockManager.js"
import * as metrics from "./internal/metrics.js"
import type { InvalidPathError, LockLostError } from "./PersistenceError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * `"read"` locks overlap each other; a `"write"` lock excludes every other
 * lock on the same path, its ancestors and its descendants.
 *
 * @since 0.1.0
 * @category models
 */
export type LockMode = "read" | "write"

/**
 * A granted lock.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lock {
  /**
   * Strictly increasing across the grants of one manager: usable as a
   * fencing token.
   */
  readonly id: number
  readonly mode: LockMode
  /** The normalised paths, duplicates removed. */
  readonly paths: ReadonlyArray<string>
  /**
   * Completes if the lock is lost while held (a remote manager whose
   * connection dropped). Never completes for the in-memory manager.
   */
  readonly lost: Effect.Effect<void>
  /**
   * Fails with a `LockLostError` if the lock was lost: checked by the Client
   * right before it commits.
   */
  readonly ensureHeld: (operation: string) => Effect.Effect<void, LockLostError>
}

/**
 * A snapshot of the manager: requests granted and not released, requests
 * waiting, and nodes in the internal path index. All three are 0 when idle.
 *
 * @since 0.1.0
 * @category models
 */
export interface LockStats {
  readonly held: number
  readonly pending: number
  readonly nodes: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface LockManagerService {
  readonly [TypeId]: TypeId
  /**
   * Waits for a lock on one path and holds it until the scope closes.
   * Interruptible: a waiter that is interrupted or timed out leaves the queue
   * at once.
   *
   * @example
   * Effect.scoped(Effect.gen(function*() {
   *   const lock = yield* manager.lock("/data/users.json", "write")
   *   // ... exclusive access until the scope closes
   * }))
   */
  readonly lock: (path: string, mode: LockMode) => Effect.Effect<Lock, InvalidPathError, Scope.Scope>
  /**
   * One combined write request over several paths (as `rename` needs).
   * Duplicates count once and nested paths do not conflict with each other.
   * An empty set fails with an `InvalidPathError` (reason `EmptyPathSet`).
   */
  readonly lockAll: (paths: Iterable<string>) => Effect.Effect<Lock, InvalidPathError, Scope.Scope>
  /**
   * Runs an effect while holding a lock, without allocating a Scope: the fast
   * path for one-shot operations. The effect may take the `Lock` as argument.
   *
   * @example
   * manager.withLock("/data/users.json", "read")(fs.readFile("/data/users.json"))
   */
  readonly withLock: (path: string, mode: LockMode) => <A, E, R>(
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
  ) => Effect.Effect<A, E | InvalidPathError, R>
  /**
   * `withLock` for a combined write request over several paths.
   */
  readonly withLockAll: (paths: Iterable<string>) => <A, E, R>(
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
  ) => Effect.Effect<A, E | InvalidPathError, R>
  readonly stats: Effect.Effect<LockStats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class LockManager extends Context.Tag("effect-persistence/LockManager")<LockManager, LockManagerService>() {}

/**
 * Builds an in-memory lock manager: the authority for one process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<LockManagerService> = internal.make

/**
 * The in-memory lock manager as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<LockManager> = Layer.effect(LockManager, make)

/**
 * Histogram of the time from a lock request to its grant, in seconds (0 for
 * an immediate grant). Contended waits also appear as `LockManager.wait` spans
 * with the paths and mode as attributes.
 *
 * @since 0.1.0
 * @category metrics
 */
export const lockWaitSeconds = metrics.lockWaitSeconds

/**
 * Gauge of locks granted and not released, over the in-memory managers of the process.
 *
 * @since 0.1.0
 * @category metrics
 */
export const locksHeld = metrics.locksHeld

/**
 * Gauge of lock requests waiting, over the in-memory managers of the process.
 *
 * @since 0.1.0
 * @category metrics
 */
export const locksPending = metrics.locksPending
