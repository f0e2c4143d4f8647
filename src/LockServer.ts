/**
 * A lock service shared by several processes: one in-memory `LockManager`
 * served over @effect/rpc on a Unix domain socket or a TCP port. Processes
 * reach it with `LockManager.layerRemote`, so a `Client` on top of it
 * coordinates with every other process using the same server.
 *
 * A client process that dies or whose connection drops has its locks
 * released at once; one whose host goes silent without closing the connection
 * loses them after its heartbeat deadline. There is no authentication: listen
 * on a Unix socket in a directory only the intended users can reach, or on
 * loopback (the default host).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { addressOf, formatAddress } from "./internal/lockServer/address.js"
import type { LockManagerService } from "./LockManager.js"
import type { RemoteLockError } from "./PersistenceError.js"

// The server is loaded on use: @effect/rpc and @effect/platform-node are
// optional peers, and this module is part of the package's root.
const loadServer = Effect.promise(() => import("./internal/lockServer/server.js"))

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-persistence/LockServer")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * Where to listen: a Unix domain socket path (a stale socket file left by a
 * server that died is replaced), or a TCP port (`0` picks a free one) on
 * `host` (default `127.0.0.1`).
 *
 * @since 0.1.0
 * @category models
 */
export type ListenOptions =
  & ({ readonly socket: string } | { readonly port: number; readonly host?: string })
  & {
    /**
     * How long a new connection may stay silent before its handshake, which
     * sets the connection's own heartbeat deadline (the client chooses it:
     * see `LockManager.RemoteOptions`). Default 10 seconds.
     */
    readonly handshakeTimeout?: Duration.DurationInput
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface LockServerService {
  readonly [TypeId]: TypeId
  /** Where the server listens: `unix:<path>` or `tcp:<host>:<port>` (the actual port when asked for 0). */
  readonly address: string
  /** The port when listening on TCP. */
  readonly port: number | undefined
  /** The served manager: code in the server's process may lock through it directly. */
  readonly manager: LockManagerService
}

/**
 * @since 0.1.0
 * @category tags
 */
export class LockServer extends Context.Tag("effect-persistence/LockServer")<LockServer, LockServerService>() {}

/**
 * Starts a lock server that runs until the scope closes. Fails with a
 * `RemoteLockError` (reason `ListenFailed`) if it cannot listen, for example
 * because another server listens there.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: ListenOptions): Effect.Effect<LockServerService, RemoteLockError, Scope.Scope> =>
  loadServer.pipe(
    Effect.flatMap((internal) =>
      internal.make({
        address: addressOf(options),
        handshakeDeadline: options.handshakeTimeout === undefined ?
          10_000 :
          Duration.toMillis(Duration.decode(options.handshakeTimeout))
      })
    ),
    Effect.map((server): LockServerService => ({
      [TypeId]: TypeId,
      address: formatAddress(server.address),
      port: server.address._tag === "Tcp" ? server.address.port : undefined,
      manager: server.manager
    }))
  )

/**
 * The lock server as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ListenOptions): Layer.Layer<LockServer, RemoteLockError> =>
  Layer.scoped(LockServer, make(options))
