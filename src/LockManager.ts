/**
 * Hierarchical read/write path locks with FIFO fairness between conflicting
 * requests. Locks are scoped resources: closing the scope, interruption,
 * failure or a timeout releases them.
 *
 * Locks belong to fibers. A request made by a fiber that holds a lock covering
 * it (the same path or an ancestor, and a write, or a read for a read), or by
 * a fiber forked inside that holder's region while the lock is held, is
 * granted at once (re-entrancy). A request that would wait for a lock its own
 * fiber holds, directly or through fibers that wait for each other, fails at
 * once with a `DeadlockError` instead of hanging.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/lockManager.js"
import * as metrics from "./internal/metrics.js"
import {
  type DeadlockError,
  InvalidArgumentError,
  type InvalidPathError,
  type LockLostError,
  type RemoteLockError
} from "./PersistenceError.js"

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
 * One path of a combined request with its mode: `lockAll([["/from", "read"],
 * ["/to", "write"]])`.
 *
 * @since 0.1.0
 * @category models
 */
export type LockRequest = readonly [path: string, mode: LockMode]

/**
 * A granted lock.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lock {
  /**
   * Strictly increasing across the grants of the queue of one manager: usable
   * as a fencing token. A remote manager's ids are its lock server's, which
   * keep increasing across restarts of the server (see `layerRemote`), so an
   * id never names two locks: a stale one cannot release or fence another
   * lock. A re-entrant grant (covered by a lock its fiber holds) carries the
   * id of the covering lock (the newest one, if several cover it): it is the
   * same exclusive hold, so a fencing check accepts it as one.
   */
  readonly id: number
  /** The mode; for a combined request, the strongest of its modes. */
  readonly mode: LockMode
  /** The normalised paths, duplicates removed. */
  readonly paths: ReadonlyArray<string>
  /**
   * Completes if the lock is lost while held: a remote manager whose
   * connection dropped, or a re-entrant grant whose covering lock was
   * released first (a fiber forked inside a holder's region that outlived
   * it). Otherwise never completes for the in-memory manager.
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
 * What a lock request may fail with on every manager: bad input, refused
 * before anything is queued, or a refused deadlock.
 *
 * @since 0.1.0
 * @category errors
 */
export type LockError = InvalidPathError | InvalidArgumentError | DeadlockError

/**
 * A lock manager. `E` is what the backend itself may fail with besides
 * invalid input (`InvalidPathError`, `InvalidArgumentError` for a mode other
 * than `"read"` or `"write"`) and a refused deadlock (`DeadlockError`):
 * `never` for the in-memory manager, `RemoteLockError` for a remote one (the
 * server could not be reached or the connection dropped).
 *
 * @since 0.1.0
 * @category models
 */
export interface LockManagerService<E = never> {
  readonly [TypeId]: TypeId
  /**
   * Waits for a lock on one path and holds it until the scope closes.
   * Interruptible: a waiter that is interrupted or timed out leaves the queue
   * at once. Granted at once when a lock of the calling fiber covers it; fails
   * with a `DeadlockError` when it would wait for a lock the fiber holds.
   *
   * @example
   * ```ts
   * import { Effect } from "effect"
   * import { LockManager } from "effect-persistence"
   *
   * const program = Effect.gen(function*() {
   *   const manager = yield* LockManager.LockManager
   *   yield* Effect.scoped(Effect.gen(function*() {
   *     const lock = yield* manager.lock("/data/users.json", "write")
   *     // ... exclusive access until the scope closes
   *   }))
   * })
   * ```
   */
  readonly lock: (path: string, mode: LockMode) => Effect.Effect<Lock, LockError | E, Scope.Scope>
  /**
   * One combined request over several paths, granted as a whole (as `rename`
   * and `copy` need): a path alone is a write, a `[path, mode]` pair has its
   * mode. Duplicates count once (a write wins), order does not matter, and a
   * path below another in the set is covered by it (a write below a read makes
   * the read a write). An empty set fails with an `InvalidPathError` (reason
   * `EmptyPathSet`). O(n log n) in the number of paths.
   */
  readonly lockAll: (paths: Iterable<string | LockRequest>) => Effect.Effect<Lock, LockError | E, Scope.Scope>
  /**
   * Runs an effect while holding a lock, without allocating a Scope: the fast
   * path for one-shot operations. The effect may take the `Lock` as argument.
   *
   * @example
   * ```ts
   * import { FileSystem } from "@effect/platform"
   * import { Effect } from "effect"
   * import { LockManager } from "effect-persistence"
   *
   * const users = Effect.gen(function*() {
   *   const manager = yield* LockManager.LockManager
   *   const fs = yield* FileSystem.FileSystem
   *   return yield* manager.withLock("/data/users.json", "read")(fs.readFile("/data/users.json"))
   * })
   * ```
   */
  readonly withLock: (path: string, mode: LockMode) => <A, E2, R>(
    effect: Effect.Effect<A, E2, R> | ((lock: Lock) => Effect.Effect<A, E2, R>)
  ) => Effect.Effect<A, E2 | LockError | E, R>
  /**
   * `withLock` for a combined request over several paths (see `lockAll`).
   */
  readonly withLockAll: (paths: Iterable<string | LockRequest>) => <A, E2, R>(
    effect: Effect.Effect<A, E2, R> | ((lock: Lock) => Effect.Effect<A, E2, R>)
  ) => Effect.Effect<A, E2 | LockError | E, R>
  readonly stats: Effect.Effect<LockStats, E>
}

/**
 * The lock manager service. Its type allows a `RemoteLockError`, which only a
 * remote manager (`layerRemote`, `layerEtcd`) produces: the in-memory one never fails
 * except on invalid input.
 *
 * @since 0.1.0
 * @category tags
 */
export class LockManager
  extends Context.Tag("effect-persistence/LockManager")<LockManager, LockManagerService<RemoteLockError>>()
{}

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

/**
 * Where a lock server listens, and how the remote manager watches its
 * connection.
 *
 * @since 0.1.0
 * @category models
 */
export type RemoteOptions =
  & ({ readonly socket: string } | { readonly port: number; readonly host?: string })
  & {
    /**
     * Connecting plus the protocol handshake, every attempt together. Default
     * 5 seconds. A connection the server closes before the handshake
     * completes (it is at its `maxConnections`, or dropped this one to make
     * room under a flood) is tried again, after pauses doubling from 50 ms up
     * to 1 s (each shortened at random by up to half), within this time.
     */
    readonly connectTimeout?: Duration.DurationInput
    /**
     * The longest silence after which the server drops this client's
     * connection and releases its locks (a host that froze or lost the
     * network without closing the socket). The client holds itself to the
     * same deadline: a lock whose heartbeat went unanswered that long is lost
     * (`ensureHeld` fails, `lost` completes). Default 5 seconds. A server
     * grants at most its `maxHeartbeatDeadline` (default 10 seconds): the
     * client then holds itself to that and pings as often in proportion.
     */
    readonly heartbeatDeadline?: Duration.DurationInput
    /** How often the client pings. Default a fifth of the deadline, at most half of it. */
    readonly heartbeatInterval?: Duration.DurationInput
    /**
     * The lock server's shared secret (see `LockServer.ListenOptions`). With
     * it, the client proves it knows the secret and refuses a server that
     * cannot prove the same; without it, a server that asks for one is
     * refused. Both fail with `RemoteLockError` reason `Unauthorized`.
     */
    readonly secret?: string | Redacted.Redacted<string>
  }

/**
 * A lock manager whose table lives in a lock server (`LockServer.layer`, or
 * the `lockd` program) shared by several processes, over a Unix domain socket
 * or TCP. The connection opens on first use and reopens after it was lost.
 *
 * Lock ids are the server's grant ids. Each run of a server starts its ids
 * at its start time in microseconds (about 1.8e15, a safe integer), so ids
 * keep increasing across restarts and never repeat, provided the server's
 * clock does not go back and a run grants fewer than one lock per microsecond
 * of its life on average.
 *
 * A lock is lost when its connection drops: the server releases the locks of
 * a connection that closes or stays silent longer than the heartbeat
 * deadline, and `Lock.lost` / `Lock.ensureHeld` tell the holder.
 *
 * With a `secret`, client and server prove to each other that they know it
 * before anything else is exchanged; a mismatch fails with reason
 * `Unauthorized`.
 *
 * Operations can fail with a `RemoteLockError` (unreachable, timeout,
 * protocol mismatch, disconnected, unauthorized, request too large, and
 * `Rejected` for a request past the 1,024 a connection may have open, waiting
 * or held): the `LockManager` tag's service type names it, so the `Client`
 * (which runs on it unchanged) does too. Options it cannot mean (no socket
 * and no port, NaN, negative or infinite timeouts, text that is not a
 * duration) fail the layer with an `InvalidArgumentError` naming the option.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRemote = (options: RemoteOptions): Layer.Layer<LockManager, InvalidArgumentError> =>
  Layer.scoped(LockManager, makeRemote(options))

/**
 * The remote lock manager of `layerRemote`, with the `RemoteLockError` it may
 * fail with in its type.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRemote = (
  options: RemoteOptions
): Effect.Effect<LockManagerService<RemoteLockError>, InvalidArgumentError, Scope.Scope> =>
  // Loaded on use: @effect/rpc and @effect/platform-node are optional peers.
  Effect.promise(() => import("./internal/lockServer/remote.js")).pipe(
    Effect.flatMap((remote) => remote.start(options))
  )

/**
 * Where an etcd cluster is, and how a manager uses it.
 *
 * @since 0.1.0
 * @category models
 */
export interface EtcdOptions {
  /**
   * The members' client URLs, as etcdctl takes them (`http://10.0.0.1:2379`).
   * `https://` URLs use TLS with the system's certificate authorities.
   */
  readonly endpoints: ReadonlyArray<string>
  /**
   * The key prefix of the lock requests. Default `"/effect-persistence/locks"`.
   * Managers coordinate when they use the same prefix; the prefixes of
   * separate lock spaces must not be prefixes of one another. It starts with
   * `/` and has no empty segment (one spelling per lock space); a trailing
   * `/` is dropped.
   */
  readonly prefix?: string
  /**
   * The time to live of the manager's lease, in whole seconds (rounded up;
   * etcd may raise it to its minimum, 2 s with its default election timeout):
   * how long the locks of a process that died, froze or lost the cluster
   * outlive it. Default 5 seconds.
   */
  readonly ttl?: Duration.DurationInput
  /**
   * The longest a call to the cluster may take, retries on other members
   * included: the first request (which opens the session), then every
   * enqueue, scan and release. Default 5 seconds.
   */
  readonly connectTimeout?: Duration.DurationInput
}

/**
 * A lock manager whose queue lives in an etcd cluster (v3 API, etcd 3.4 or
 * newer): several processes on several machines coordinate through it, and
 * the cluster survives the loss of a minority of its members.
 *
 * Same rules as the in-memory manager (conflicts, FIFO between conflicting
 * requests, `lockAll` as one request, interruption withdraws a waiter, scope
 * close releases); the arrival order is the etcd revision at which a request
 * was enqueued. `Lock.id` is that revision: it increases over every client of
 * the cluster and across restarts of the whole cluster, so it is a fencing
 * token. `stats` counts this manager's requests (`nodes`: its keys in etcd).
 *
 * Locks are leases: the manager keeps one etcd lease alive; a process that
 * dies or loses the cluster for longer than `ttl` loses its locks, and the
 * holder is told (`Lock.lost`, `Lock.ensureHeld`, checked by the Client right
 * before it commits). Failures are a `RemoteLockError` with the address
 * `etcd:<endpoints>`. A request conflicts with its own fiber's earlier locks
 * as with anyone's: a fiber that asks again for a path it holds waits for
 * itself until it is interrupted or timed out.
 *
 * Options it cannot mean (`endpoints` that are not a non-empty array of
 * URLs, NaN, negative or infinite durations, text that is not a duration)
 * fail the layer with an `InvalidArgumentError` naming the option.
 *
 * Needs the optional peer dependency `etcd3`, loaded on first use.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEtcd = (options: EtcdOptions): Layer.Layer<LockManager, InvalidArgumentError> =>
  Layer.scoped(LockManager, makeEtcd(options))

/**
 * The etcd lock manager of `layerEtcd`, with the `RemoteLockError` it may fail
 * with in its type. Its lease is revoked when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeEtcd = (
  options: EtcdOptions
): Effect.Effect<LockManagerService<RemoteLockError>, InvalidArgumentError, Scope.Scope> =>
  // Loaded on use: etcd3 (and its gRPC stack) is an optional peer.
  Effect.tryPromise({ try: () => import("./internal/etcd/manager.js"), catch: (cause) => cause }).pipe(
    Effect.orDieWith((cause) =>
      new Error("LockManager.makeEtcd needs the optional peer dependency etcd3 (npm install etcd3)", { cause })
    ),
    Effect.flatMap((etcd) => etcd.start(options))
  )

/**
 * The etcd options read from configuration: `PERSISTENCE_ETCD_ENDPOINTS`
 * (comma-separated, required), and the optional `PERSISTENCE_ETCD_PREFIX`,
 * `PERSISTENCE_ETCD_TTL` and `PERSISTENCE_ETCD_CONNECT_TIMEOUT` (durations
 * such as `5 seconds`).
 *
 * @since 0.1.0
 * @category config
 */
export const etcdConfig: Config.Config<EtcdOptions> = Config.all({
  endpoints: Config.array(Config.nonEmptyString(), "PERSISTENCE_ETCD_ENDPOINTS").pipe(
    Config.map((endpoints) => endpoints.map((endpoint) => endpoint.trim()).filter((endpoint) => endpoint !== "")),
    Config.validate({ message: "at least one etcd endpoint is required", validation: (e) => e.length > 0 })
  ),
  prefix: Config.option(Config.string("PERSISTENCE_ETCD_PREFIX")),
  ttl: Config.option(Config.duration("PERSISTENCE_ETCD_TTL")),
  connectTimeout: Config.option(Config.duration("PERSISTENCE_ETCD_CONNECT_TIMEOUT"))
}).pipe(
  Config.map(({ connectTimeout, endpoints, prefix, ttl }): EtcdOptions => ({
    endpoints,
    ...Option.match(prefix, { onNone: () => ({}), onSome: (prefix) => ({ prefix }) }),
    ...Option.match(ttl, { onNone: () => ({}), onSome: (ttl) => ({ ttl }) }),
    ...Option.match(connectTimeout, { onNone: () => ({}), onSome: (connectTimeout) => ({ connectTimeout }) })
  }))
)

/**
 * `layerEtcd` with its options from `Config` (by default {@link etcdConfig}).
 *
 * @example
 * ```ts
 * import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
 * import { Layer } from "effect"
 * import { Client, LockManager } from "effect-persistence"
 *
 * // PERSISTENCE_ETCD_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379
 * export const PersistenceLive = Client.layer().pipe(
 *   Layer.provideMerge(Layer.merge(LockManager.layerEtcdConfig(), NodeFileSystem.layer))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEtcdConfig = (
  options: Config.Config<EtcdOptions> = etcdConfig
): Layer.Layer<LockManager, ConfigError.ConfigError | InvalidArgumentError> =>
  Layer.scoped(
    LockManager,
    // From plain JavaScript, options that are no Config would be a defect ("not a valid effect").
    Config.isConfig(options) ?
      Effect.flatMap(options, makeEtcd) :
      Effect.fail(
        new InvalidArgumentError({
          operation: "LockManager.layerEtcdConfig",
          path: undefined,
          argument: "options",
          detail: "expected a Config of the etcd options (see etcdConfig); give plain options to layerEtcd"
        })
      )
  )
