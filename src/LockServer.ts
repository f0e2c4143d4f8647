/**
 * A lock service shared by several processes: one in-memory `LockManager`
 * served over @effect/rpc on a Unix domain socket or a TCP port. Processes
 * reach it with `LockManager.layerRemote`, so a `Client` on top of it
 * coordinates with every other process using the same server.
 *
 * A client process that dies or whose connection drops has its locks
 * released at once; one whose host goes silent without closing the connection
 * loses them after its heartbeat deadline (at most `maxHeartbeatDeadline`).
 * A server grants nothing for `gracePeriod` after it starts, so that holders
 * of a server that died before it cannot still be counting on their leases.
 *
 * Who may take locks: on a Unix socket, the users the socket's permissions
 * let connect (`mode`, default owner-only); on TCP, anyone who can reach the
 * port (loopback by default: every local user) unless the server has a
 * `secret`, which clients must prove they know (HMAC challenge-response: the
 * secret never crosses the wire, and clients check the server too). Nothing is
 * encrypted: keep TCP on loopback or a trusted network.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { formatAddress } from "./internal/lockServer/address.js"
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
 * Where to listen: a Unix domain socket path, or a TCP port (`0` picks a free
 * one) on `host` (default `127.0.0.1`).
 *
 * A Unix socket path may hold nothing or a stale socket file (left by a server
 * that died: it is replaced). Anything else there is refused with
 * `ListenFailed`: a regular file, a directory, a symbolic link, or a socket
 * another server listens on. Of several servers started on one path at the
 * same time, exactly one listens (taking over a stale socket is serialised
 * through the kernel, on Linux). The socket has the permissions `mode` from the
 * start (default `0o600`, owner only: a client needs write permission to
 * connect; `0o660` lets the socket's group in).
 *
 * @since 0.1.0
 * @category models
 */
export type ListenOptions =
  & (
    | { readonly socket: string; readonly mode?: number }
    | { readonly port: number; readonly host?: string }
  )
  & {
    /**
     * How long a new connection may take to complete its handshake (after
     * which its own heartbeat deadline, chosen by the client, applies: see
     * `LockManager.RemoteOptions`). Default 10 seconds.
     */
    readonly handshakeTimeout?: Duration.DurationInput
    /**
     * A shared secret that every client must prove it knows (give clients the
     * same `secret` in `LockManager.RemoteOptions`). At least 16 bytes; use a
     * random one (`openssl rand -hex 32`). A client without it or with another
     * one fails with `RemoteLockError` reason `Unauthorized` and is dropped.
     */
    readonly secret?: string | Redacted.Redacted<string>
    /**
     * The longest heartbeat deadline a client is given: one that asks for
     * more (`LockManager.RemoteOptions.heartbeatDeadline`) gets this, and is
     * told so when it connects. It bounds how long a holder may go on
     * counting on its lock after the server died. Default 10 seconds.
     */
    readonly maxHeartbeatDeadline?: Duration.DurationInput
    /**
     * How long after it starts the server grants nothing (requests wait, in
     * order; bad ones still fail at once). A client counts its lease from its
     * last answered heartbeat, and a busy process may not notice at once that
     * its connection closed: if a server died and this one took its place, a
     * holder of the old one may still trust its lock for up to the old
     * server's `maxHeartbeatDeadline`. Default `maxHeartbeatDeadline`; 0 is
     * safe only when no server can have served this address with holders
     * still alive (a first start on the host; tests).
     */
    readonly gracePeriod?: Duration.DurationInput
    /**
     * The most connections served at once (default 4096): past it, a new
     * connection is closed at once (its client tries again until its
     * `connectTimeout`, then fails with `RemoteLockError` reason
     * `Disconnected`), unless one in its handshake has sent nothing yet,
     * which is then dropped to make room. Whatever this is, at most 128
     * connections may be in their handshake: a newer one drops the oldest
     * that has sent nothing yet, or else the oldest. Anyone who can reach the
     * server can open connections; these bounds keep them from taking its
     * process's memory and file descriptors.
     */
    readonly maxConnections?: number
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
  /** How long after it started listening the server grants nothing (see `ListenOptions.gracePeriod`). */
  readonly gracePeriod: Duration.Duration
}

/**
 * @since 0.1.0
 * @category tags
 */
export class LockServer extends Context.Tag("effect-persistence/LockServer")<LockServer, LockServerService>() {}

/**
 * Starts a lock server that runs until the scope closes. Fails with a
 * `RemoteLockError` (reason `ListenFailed`, with a `detail` saying why) if it
 * cannot listen: another server listens there, something other than a stale
 * socket is at the path, the secret is too short, ...
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: ListenOptions): Effect.Effect<LockServerService, RemoteLockError, Scope.Scope> =>
  loadServer.pipe(
    Effect.flatMap((internal) => internal.start(options)),
    Effect.map((server): LockServerService => ({
      [TypeId]: TypeId,
      address: formatAddress(server.address),
      port: server.address._tag === "Tcp" ? server.address.port : undefined,
      manager: server.manager,
      gracePeriod: Duration.millis(server.gracePeriod)
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
