/**
 * The lock server: one in-memory lock manager served over @effect/rpc on a
 * Unix domain socket or a TCP port.
 *
 * The socket protocol is ours rather than `RpcServer.layerProtocolSocketServer`
 * because the server must know when a client went silent: every connection
 * has a heartbeat deadline (asked for by the client in `Hello`) and a watchdog
 * that drops the connection once it has been silent for longer. Dropping a
 * connection (or the client closing it, or its process dying) makes the
 * RpcServer interrupt that client's requests, which closes the scopes their
 * locks live in.
 *
 * A connection is untrusted until its handshake completes (`Hello`, and
 * `Authenticate` when the server has a secret): until then it may send only
 * those, in that order, and at most `PRE_HANDSHAKE_BYTES`; anything else drops
 * it. Frames are bounded after the handshake too (./framing.ts).
 *
 * Lock ids are the served manager's grant numbers shifted by the server's
 * start time in microseconds, so that ids never repeat across restarts (see
 * `idBase`).
 *
 * Grace period. A client counts its lease from its last answered ping, and
 * its process may be too busy to notice at once that its connection closed.
 * When a server dies and another starts on its address, a holder of the old
 * one may therefore go on trusting its lock for up to its heartbeat deadline.
 * So the server bounds the deadlines it grants (`maxHeartbeatDeadline`) and
 * grants nothing for `gracePeriod` after it starts (as an NFS server after a
 * reboot, or a new Chubby master): requests wait in order meanwhile.
 *
 * @internal
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Lock, LockError, LockManagerService, LockRequest } from "../../LockManager.js"
import type { ListenOptions } from "../../LockServer.js"
import { InvalidArgumentError, RemoteLockError } from "../../PersistenceError.js"
import * as Input from "../input.js"
import * as InMemory from "../lockManager.js"
import { planAll, type PlanError, planOne } from "../lockManager.js"
import { locksPending, noTags } from "../metrics.js"
import { type Address, addressOf, formatAddress } from "./address.js"
import * as Auth from "./auth.js"
import { makeFramer } from "./framing.js"
import { listen } from "./listen.js"
import {
  type Grant,
  LockRpcs,
  MAX_DEADLINE,
  MAX_OPEN_REQUESTS,
  MIN_DEADLINE,
  PROTOCOL_VERSION,
  Unauthorized,
  VersionMismatch
} from "./protocol.js"

/** @internal */
export interface ServerOptions {
  readonly address: Address
  /** Milliseconds a connection may take to complete its handshake. */
  readonly handshakeDeadline: number
  /** Clients must prove they know it; `undefined`: no authentication. */
  readonly secret: Auth.SecretInput | undefined
  /** Permissions of a Unix socket. */
  readonly mode: number
  /** Milliseconds: the longest heartbeat deadline a client is given (one asking for more gets this). */
  readonly maxHeartbeatDeadline: number
  /**
   * Milliseconds after the start during which nothing is granted: at least
   * the `maxHeartbeatDeadline` of any server that served this address before
   * (its holders may still count on their leases), 0 when none can have.
   */
  readonly gracePeriod: number
  /** The most connections served at once (see `makeRoom`). */
  readonly maxConnections: number
}

/** @internal */
export interface Server {
  /** Where the server listens (with the actual port when asked for port 0). */
  readonly address: Address
  /** The served manager: in-process callers may lock through it directly. */
  readonly manager: LockManagerService
  /** Milliseconds after the start during which nothing is granted. */
  readonly gracePeriod: number
}

/**
 * The least `maxHeartbeatDeadline` a server accepts: below it, clients on an
 * ordinary event loop would lose their locks between heartbeats.
 *
 * @internal
 */
export const MIN_MAX_DEADLINE = 100

/**
 * What a connection may send before its handshake completes: a `Hello` and an
 * `Authenticate` take a few hundred bytes.
 *
 * @internal
 */
export const PRE_HANDSHAKE_BYTES = 16 * 1024

/**
 * What the server holds for one connection, each way, before it drops it:
 * bytes received whose messages are not yet handled (a handler waits until
 * its answer is taken by the system), and bytes of answers written and not
 * yet taken (the peer does not read them). Answers are small (a grant, a
 * pong), so a client that reads its answers stays far below; one that only
 * sends would otherwise grow the server's memory until it dies.
 *
 * @internal
 */
export const BACKLOG_BYTES = 4 * 1024 * 1024

/**
 * How many `Release`s for tickets with no live request a connection's entry
 * remembers, the oldest forgotten first. Such a `Release` either overtook its
 * `Acquire` (which then ends as soon as it starts, granting nothing) or names a
 * request that already ended or never existed; the server cannot tell which,
 * and a client sending the latter without end must not grow its memory.
 * Overtaking takes a request whose start was held back: the RpcServer starts
 * each request's fiber as it reads the request, so one waits at most behind
 * the requests read with it.
 *
 * @internal
 */
export const REMEMBERED_RELEASES = 1024

/**
 * The most connections that may be in their handshake at once. Anyone who can
 * reach the server can open connections, and before its handshake completes a
 * connection proves nothing: unbounded, 20,000 of them (kept open by two
 * processes that reconnected as they were dropped) held about 1 GB of a
 * server's memory and as many file descriptors. Past the bound a new
 * connection makes the server drop the oldest one that has sent nothing yet,
 * or if every one has, the oldest still in its handshake. An honest client
 * sends its `Hello` as soon as it connects, so connections that stay silent
 * can push it out only before its `Hello` has arrived; connections that send
 * a `Hello` and stop push it out only if this many arrive within its
 * handshake's round trips.
 *
 * @internal
 */
export const MAX_HANDSHAKING = 128

/**
 * How long a connection must have sent nothing before a newer one may take
 * its place at the connection bound: an honest client sends its `Hello` as
 * soon as it connects.
 *
 * @internal
 */
export const SILENT_FOR = 1000

/** The default of `maxConnections`. */
const DEFAULT_MAX_CONNECTIONS = 4096

/**
 * Where a connection is in its handshake. `hello` and `authenticating`: a
 * request is with its handler, and nothing else may arrive meanwhile.
 */
type Stage = "new" | "hello" | "challenged" | "authenticating" | "ready" | "rejected" | "dropped"

/** One connection. */
interface Peer {
  readonly id: number
  /** Dropped, or its connection closed: no longer counted. */
  gone: boolean
  /** `performance.now()` when it was accepted. */
  readonly accepted: number
  lastSeen: number
  deadline: number
  stage: Stage
  /** Bytes received before the handshake completed. */
  received: number
  clientNonce: string
  serverNonce: string
  /** The deadline agreed in `Hello` (asked for, within bounds), applied once the handshake completes. */
  agreedDeadline: number
  /** Bytes received whose messages are being handled (see `BACKLOG_BYTES`). */
  unhandled: number
  /** Bytes of answers written and not yet taken by the system (see `BACKLOG_BYTES`). */
  unread: number
  /** Completes when the handshake does. */
  readonly ready: Deferred.Deferred<void>
  /** The fibers of live `Acquire` requests by ticket: interrupting one ends the request. */
  readonly tickets: Map<number, Fiber.RuntimeFiber<unknown, unknown>>
  /**
   * Tickets `Release`d while no request of theirs was live, in arrival order:
   * at most `REMEMBERED_RELEASES`.
   */
  readonly released: Set<number>
  readonly write: (response: FromServerEncoded) => Effect.Effect<void>
  /** Closes the connection at once (to make room for a newer one: see `MAX_HANDSHAKING`). */
  readonly evict: () => void
}

/**
 * Completes when the peer must be dropped: its handshake did not complete
 * within the handshake deadline, or afterwards it has been silent for longer
 * than the deadline it asked for.
 */
const watchdog = (peer: Peer, handshakeDeadline: number): Effect.Effect<void> => {
  const loop: Effect.Effect<void> = Effect.suspend(() => {
    const remaining = peer.lastSeen + peer.deadline - performance.now()
    return remaining <= 0 ? Effect.void : Effect.zipRight(Effect.sleep(remaining), loop)
  })
  return Deferred.await(peer.ready).pipe(
    Effect.timeout(handshakeDeadline),
    Effect.matchEffect({ onFailure: () => Effect.void, onSuccess: () => loop })
  )
}

/**
 * Whether the peer may send `message` now. Before the handshake completes it
 * may send only `Hello`, then (if challenged) `Authenticate`, each after the
 * answer to the previous one; anything else is a peer that does not follow
 * the protocol, or tries to skip authentication.
 */
const admit = (peer: Peer, message: unknown): boolean => {
  if (typeof message !== "object" || message === null || !("_tag" in message)) return false
  if (peer.stage === "ready") return typeof message._tag === "string"
  if (message._tag !== "Request" || !("tag" in message)) return false
  if (peer.stage === "new" && message.tag === "Hello") {
    peer.stage = "hello"
    return true
  }
  if (peer.stage === "challenged" && message.tag === "Authenticate") {
    peer.stage = "authenticating"
    return true
  }
  return false
}

/** The handshake completed: the peer's own heartbeat deadline applies from now. */
const open = (peer: Peer, handshaking: Map<number, Peer>): void => {
  if (peer.gone) return
  handshaking.delete(peer.id)
  peer.stage = "ready"
  peer.deadline = peer.agreedDeadline
  peer.lastSeen = performance.now()
  Deferred.unsafeDone(peer.ready, Exit.void)
}

const makeProtocol = (
  socketServer: SocketServer.SocketServer["Type"],
  peers: Map<number, Peer>,
  handshaking: Map<number, Peer>,
  options: ServerOptions
) =>
  Effect.gen(function*() {
    const disconnects = yield* Mailbox.make<number>()
    let nextId = 0
    let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>
    /** Connections served and not yet dropped or closed. */
    let connections = 0

    /**
     * Whether a new connection may be served. At the handshake bound
     * (`MAX_HANDSHAKING`), the oldest connection that has sent nothing is
     * dropped for it, or else the oldest in its handshake. At the connection
     * bound (`maxConnections`), only a connection silent for `SILENT_FOR`
     * since it was accepted is dropped for it, else it is refused: an honest
     * client is silent only until its `Hello` arrives, and clients trying
     * again would otherwise take the last place from each other in turn.
     */
    const makeRoom = (): boolean => {
      const handshakes = handshaking.size >= MAX_HANDSHAKING
      if (!handshakes && connections < options.maxConnections) return true
      // Oldest first; at most MAX_HANDSHAKING to look through.
      let oldest: Peer | undefined
      for (const peer of handshaking.values()) {
        if (peer.stage === "new") {
          oldest = peer
          break
        }
        oldest ??= peer
      }
      if (oldest === undefined) return false
      if (!handshakes && (oldest.stage !== "new" || performance.now() - oldest.accepted < SILENT_FOR)) return false
      oldest.evict()
      return true
    }

    const onSocket = (socket: Socket.Socket) =>
      Effect.gen(function*() {
        // The connection itself: a refused one is closed without being run.
        const conn = yield* Effect.serviceOption(NodeSocket.NetSocket)
        if (!makeRoom()) {
          if (Option.isSome(conn)) conn.value.destroy()
          return
        }
        const id = nextId++
        const framer = makeFramer()
        const writeRaw = yield* socket.writer
        /** Counts the peer out (once): it is dropped or its connection closed. */
        const leave = (peer: Peer) => {
          peer.stage = "dropped"
          if (peer.gone) return
          peer.gone = true
          handshaking.delete(id)
          connections--
        }
        const drop = (peer: Peer, reason: string) => {
          leave(peer)
          return writeRaw(new Socket.CloseEvent(1008, reason))
        }
        const peer: Peer = {
          id,
          gone: false,
          accepted: performance.now(),
          lastSeen: performance.now(),
          deadline: options.handshakeDeadline,
          stage: "new",
          received: 0,
          clientNonce: "",
          serverNonce: "",
          agreedDeadline: 0,
          unhandled: 0,
          unread: 0,
          ready: Deferred.unsafeMake<void>(FiberId.none),
          tickets: new Map(),
          released: new Set(),
          write: (response) =>
            Effect.suspend(() => {
              if (peer.stage === "dropped") return Effect.void
              const encoded = framer.encode(response)
              if (encoded !== undefined && (peer.unread += encoded.length) > BACKLOG_BYTES) {
                return Effect.ignore(drop(peer, "not reading its answers"))
              }
              // A failed write means the connection is going away: its end is
              // handled where the socket closes. A write completes once the
              // system has taken its bytes.
              const write = encoded === undefined ?
                Effect.void :
                Effect.ensuring(Effect.ignore(writeRaw(encoded)), Effect.sync(() => peer.unread -= encoded.length))
              // A rejected peer is dropped once it has its answer.
              return peer.stage === "rejected" && response._tag === "Exit" ?
                Effect.zipRight(write, Effect.ignore(drop(peer, "unauthorized"))) :
                write
            }),
          evict: () => {
            leave(peer)
            if (Option.isSome(conn)) conn.value.destroy()
          }
        }
        peers.set(id, peer)
        handshaking.set(id, peer)
        connections++
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            leave(peer)
            peers.delete(id)
            return disconnects.offer(id)
          })
        )
        yield* socket.runRaw((data) => {
          if (peer.stage === "dropped") return
          peer.lastSeen = performance.now()
          if (peer.stage !== "ready") {
            peer.received += data.length
            if (peer.received > PRE_HANDSHAKE_BYTES) return drop(peer, "too much data before the handshake")
          }
          let decoded: ReadonlyArray<unknown>
          try {
            decoded = framer.decode(data)
          } catch {
            // Not our protocol, a corrupt stream or a frame above the bound:
            // nothing sensible to answer.
            return drop(peer, "undecodable message")
          }
          if (decoded.length === 0) return
          for (const message of decoded) {
            if (!admit(peer, message)) return drop(peer, "unexpected message")
          }
          if ((peer.unhandled += data.length) > BACKLOG_BYTES) return drop(peer, "not reading its answers")
          let i = 0
          return Effect.whileLoop({
            while: () => i < decoded.length,
            body: () => writeRequest(id, decoded[i++] as FromClientEncoded),
            step: () => {}
          }).pipe(Effect.ensuring(Effect.sync(() => peer.unhandled -= data.length)))
        }).pipe(
          Effect.raceFirst(watchdog(peer, options.handshakeDeadline)),
          Effect.ignore
        )
      }).pipe(Effect.scoped)

    const protocol = yield* RpcServer.Protocol.make((writeRequest_) => {
      writeRequest = writeRequest_
      return Effect.succeed({
        disconnects,
        send: (clientId, response) => peers.get(clientId)?.write(response) ?? Effect.void,
        end: () => Effect.void,
        clientIds: Effect.sync(() => new Set(peers.keys())),
        initialMessage: Effect.succeedNone,
        // One element per stream: acknowledgements would only cost a message.
        supportsAck: false,
        supportsTransferables: false,
        supportsSpanPropagation: true
      })
    })

    yield* socketServer.run(onSocket).pipe(Effect.interruptible, Effect.forkScoped)
    return protocol
  })

/**
 * The heartbeat deadline a client gets: what it asked for, at least
 * `MIN_DEADLINE` and at most `max` (a client asking for nonsense gets `max`).
 *
 * @internal
 */
export const agreedDeadline = (asked: number, max: number): number =>
  Number.isFinite(asked) ? Math.min(max, Math.max(MIN_DEADLINE, asked)) : max

const makeHandlers = (
  manager: LockManagerService,
  peers: Map<number, Peer>,
  handshaking: Map<number, Peer>,
  secret: Uint8Array | undefined,
  maxDeadline: number
) =>
  LockRpcs.of({
    Hello: ({ heartbeatDeadline: asked, nonce, version }, { clientId }) =>
      Effect.suspend(() => {
        if (version !== PROTOCOL_VERSION) {
          // Dropped once it has its answer: it can go no further.
          const peer = peers.get(clientId)
          if (peer !== undefined && !peer.gone) peer.stage = "rejected"
          return Effect.fail(new VersionMismatch({ server: PROTOCOL_VERSION, client: version }))
        }
        const heartbeatDeadline = agreedDeadline(asked, maxDeadline)
        const peer = peers.get(clientId)
        if (peer === undefined) return Effect.succeed({ version: PROTOCOL_VERSION, heartbeatDeadline })
        peer.agreedDeadline = heartbeatDeadline
        if (secret === undefined) {
          open(peer, handshaking)
          return Effect.succeed({ version: PROTOCOL_VERSION, heartbeatDeadline })
        }
        // A nonce that is not one would weaken the proofs: such a peer gets a
        // challenge it cannot answer (any proof is refused).
        peer.clientNonce = Auth.isNonce(nonce) ? nonce : ""
        peer.serverNonce = Auth.nonce()
        peer.stage = "challenged"
        return Effect.succeed({ version: PROTOCOL_VERSION, heartbeatDeadline, challenge: peer.serverNonce })
      }),

    Authenticate: ({ proof }, { clientId }) =>
      Effect.suspend(() => {
        const peer = peers.get(clientId)
        if (peer === undefined || secret === undefined) {
          if (peer !== undefined) peer.stage = "rejected"
          return Effect.fail(new Unauthorized({ detail: "no authentication in progress" }))
        }
        const expected = Auth.clientProof(secret, peer.clientNonce, peer.serverNonce)
        if (peer.clientNonce === "" || !Auth.verify(expected, proof)) {
          peer.stage = "rejected"
          return Effect.fail(new Unauthorized({ detail: "the secret does not match" }))
        }
        open(peer, handshaking)
        return Effect.succeed({ proof: Auth.serverProof(secret, peer.clientNonce, peer.serverNonce) })
      }),

    // A mailbox rather than a Stream: the RpcServer runs this effect in a
    // scope that lasts as long as the request, and reads the mailbox until it
    // ends (never: the request ends by interruption).
    Acquire: ({ all, mode, modes, paths, ticket }, { clientId }) =>
      Effect.withFiberRuntime<Mailbox.ReadonlyMailbox<Grant, LockError>, LockError, Scope.Scope>(
        (fiber) => {
          const peer = peers.get(clientId)
          if (peer === undefined || peer.released.delete(ticket)) {
            return Effect.tap(Mailbox.make<Grant, LockError>(), (mailbox) => mailbox.end)
          }
          if (peer.tickets.size >= MAX_OPEN_REQUESTS) {
            return Effect.fail(
              new InvalidArgumentError({
                operation: "LockServer.Acquire",
                path: paths,
                argument: "ticket",
                detail: `this connection has ${MAX_OPEN_REQUESTS} requests open, the most the server takes from one`
              })
            )
          }
          // `Release` interrupts this request: a waiting `lock` leaves the
          // queue, a held one is released when the scope closes. The
          // RpcServer sends the end of the request after that.
          peer.tickets.set(ticket, fiber)
          return Effect.addFinalizer(() => Effect.sync(() => peer.tickets.delete(ticket))).pipe(
            Effect.zipRight(
              !all ?
                manager.lock(paths[0], mode) :
                manager.lockAll(modes === undefined ? paths : paths.map((p, i) => [p, modes[i]] as const))
            ),
            Effect.flatMap((lock) =>
              Effect.tap(
                Mailbox.make<Grant, LockError>(),
                (mailbox) => mailbox.offer({ id: lock.id, mode: lock.mode, paths: lock.paths })
              )
            )
          )
        }
      ),

    Release: ({ ticket }, { clientId }) =>
      Effect.sync(() => {
        const peer = peers.get(clientId)
        if (peer === undefined) return
        const fiber = peer.tickets.get(ticket)
        if (fiber !== undefined) return fiber.unsafeInterruptAsFork(FiberId.none)
        peer.released.add(ticket)
        if (peer.released.size > REMEMBERED_RELEASES) {
          peer.released.delete(peer.released.values().next().value!)
        }
      }),

    Stats: () => manager.stats
  })

/**
 * Where this server's lock ids start: the wall clock in microseconds. A
 * restarted server starts above every id an earlier one issued, provided the
 * earlier one granted fewer than one lock per microsecond of its life on
 * average (a million a second) and the clock did not go back. Safe integers
 * until the year 2255, with room for billions of grants per run.
 *
 * @internal
 */
export const idBase = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000)

/**
 * Closed until the grace period is over; then open for good.
 *
 * @internal
 */
export interface Gate {
  readonly isOpen: () => boolean
  /** Completes once the gate is open. */
  readonly opened: Effect.Effect<void>
}

/**
 * A gate that opens after `millis` (at once for 0), run in the caller's scope.
 *
 * @internal
 */
export const openAfter = (millis: number): Effect.Effect<Gate, never, Scope.Scope> =>
  Effect.suspend(() => {
    let open = millis <= 0
    const opened = Deferred.unsafeMake<void>(FiberId.none)
    const gate: Gate = { isOpen: () => open, opened: Deferred.await(opened) }
    if (open) return Effect.succeed(gate)
    const openNow = Effect.sync(() => {
      open = true
      Deferred.unsafeDone(opened, Exit.void)
    })
    // A server shut down during its grace period serves no one remotely any
    // more: its in-process callers must not wait for an opening that never
    // comes.
    return Effect.addFinalizer(() => openNow).pipe(
      Effect.zipRight(Effect.forkScoped(Effect.zipRight(Effect.sleep(millis), openNow))),
      Effect.as(gate)
    )
  })

/**
 * The manager as served: every lock id shifted by `base` (their order, and so
 * their use as fencing tokens, is unchanged), and nothing granted before
 * `gate` opens. A request made meanwhile is checked at once (a bad path fails
 * without waiting out the grace period), then waits; waiters enter the table
 * in the order they came.
 *
 * @internal
 */
export const serve = (manager: LockManagerService, base: number, gate: Gate): LockManagerService => {
  const shift = (lock: Lock): Lock => ({ ...lock, id: lock.id + base })
  const shifted = <A, E, R>(
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
  ): (lock: Lock) => Effect.Effect<A, E, R> => Effect.isEffect(effect) ? () => effect : (lock) => effect(shift(lock))
  /** Requests waiting for the gate: pending, as far as `stats` and the gauge tell. */
  let waiting = 0
  const untilOpen = Effect.acquireUseRelease(
    Effect.sync(() => {
      waiting++
      locksPending.unsafeModify(1, noTags)
    }),
    () => gate.opened,
    () =>
      Effect.sync(() => {
        waiting--
        locksPending.unsafeModify(-1, noTags)
      })
  )
  /** `request` once the gate opens, if `plan` says it is valid. */
  const gated = <A, E, R>(
    plan: Either.Either<unknown, PlanError>,
    request: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | PlanError, R> =>
    Either.isLeft(plan) ? Effect.fail(plan.left) : Effect.zipRight(untilOpen, request)
  /** The paths read once (an iterable may allow only that), for the check and the request. */
  const once = (paths: Iterable<string | LockRequest>): Iterable<string | LockRequest> => {
    if (typeof paths !== "object" || paths === null) return paths
    try {
      return Array.from(paths)
    } catch {
      return paths // not iterable, or it throws: the check reports it
    }
  }
  return {
    ...manager,
    stats: Effect.map(manager.stats, (stats) => waiting === 0 ? stats : { ...stats, pending: stats.pending + waiting }),
    lock: (path, mode) =>
      Effect.suspend(() => {
        const request = Effect.map(manager.lock(path, mode), shift)
        return gate.isOpen() ? request : gated(planOne("LockManager.lock", path, mode), request)
      }),
    lockAll: (paths) =>
      Effect.suspend(() => {
        if (gate.isOpen()) return Effect.map(manager.lockAll(paths), shift)
        const copy = once(paths)
        return gated(planAll("LockManager.lockAll", copy), Effect.map(manager.lockAll(copy), shift))
      }),
    withLock: (path, mode) => (effect) =>
      Effect.suspend(() => {
        const request = manager.withLock(path, mode)(shifted(effect))
        return gate.isOpen() ? request : gated(planOne("LockManager.withLock", path, mode), request)
      }),
    withLockAll: (paths) => (effect) =>
      Effect.suspend(() => {
        if (gate.isOpen()) return manager.withLockAll(paths)(shifted(effect))
        const copy = once(paths)
        return gated(planAll("LockManager.withLockAll", copy), manager.withLockAll(copy)(shifted(effect)))
      })
  }
}

/** Owner only: the permission a client needs to connect is write. */
const DEFAULT_SOCKET_MODE = 0o600

/** Twice a client's default deadline: room for a slower client, and a short grace period. */
const DEFAULT_MAX_HEARTBEAT_DEADLINE = 10_000

/**
 * The server's settings from its public options (as a caller in plain
 * JavaScript may give them), or why they are refused.
 *
 * @internal
 */
export const settingsOf = (options: ListenOptions): Either.Either<ServerOptions, Input.Refusal> =>
  Either.gen(function*() {
    const address = yield* addressOf(options)
    const { gracePeriod, handshakeTimeout, maxConnections, maxHeartbeatDeadline, mode, secret } = options as Record<
      string,
      unknown
    >
    if (address._tag === "Tcp" && mode !== undefined) {
      return yield* Input.refuse("options.mode", "is the permissions of a Unix socket: give it with socket, not port")
    }
    const max = yield* Input.millis(
      "options.maxHeartbeatDeadline",
      maxHeartbeatDeadline,
      DEFAULT_MAX_HEARTBEAT_DEADLINE,
      MIN_MAX_DEADLINE,
      MAX_DEADLINE
    )
    return {
      address,
      handshakeDeadline: yield* Input.millis("options.handshakeTimeout", handshakeTimeout, 10_000, 1, MAX_DEADLINE),
      secret: secret as Auth.SecretInput | undefined,
      mode: mode === undefined ? DEFAULT_SOCKET_MODE : mode as number,
      maxHeartbeatDeadline: max,
      gracePeriod: yield* Input.millis("options.gracePeriod", gracePeriod, max, 0, MAX_DEADLINE),
      maxConnections: yield* Input.count("options.maxConnections", maxConnections, DEFAULT_MAX_CONNECTIONS, 1)
    }
  })

/**
 * Starts a server from its public options: refused ones fail as it failing to
 * listen, with the option and why.
 *
 * @internal
 */
export const start = (options: ListenOptions): Effect.Effect<Server, RemoteLockError, Scope.Scope> =>
  Either.match(settingsOf(options), {
    onLeft: ({ argument, detail }) =>
      Effect.fail(
        new RemoteLockError({
          operation: "LockServer.make",
          address: Either.match(addressOf(options), { onLeft: () => "(no address)", onRight: formatAddress }),
          reason: "ListenFailed",
          detail: `${argument}: ${detail}`
        })
      ),
    onRight: make
  })

/** @internal */
export const make = (options: ServerOptions): Effect.Effect<Server, RemoteLockError, Scope.Scope> =>
  Effect.gen(function*() {
    const secret = Auth.secretOf(options.secret)
    if (secret !== undefined && "refused" in secret) {
      return yield* Effect.fail(
        new RemoteLockError({
          operation: "LockServer.make",
          address: formatAddress(options.address),
          reason: "ListenFailed",
          detail: secret.refused
        })
      )
    }
    const socketServer = yield* listen(options.address, options.mode)
    // Counted once the server listens: any server that served this address
    // before has died by then.
    const gate = yield* openAfter(options.gracePeriod)
    const manager = serve(yield* InMemory.make, idBase(), gate)
    const peers = new Map<number, Peer>()
    // In arrival order: the first is the one dropped to make room.
    const handshaking = new Map<number, Peer>()
    const protocol = yield* makeProtocol(socketServer, peers, handshaking, options)
    yield* RpcServer.make(LockRpcs, { spanPrefix: "LockServer", concurrency: "unbounded" }).pipe(
      Effect.provideService(RpcServer.Protocol, protocol),
      Effect.provide(LockRpcs.toLayer(makeHandlers(manager, peers, handshaking, secret, options.maxHeartbeatDeadline))),
      Effect.interruptible,
      Effect.forkScoped
    )
    const bound = socketServer.address
    return {
      // A Unix socket is bound elsewhere and linked at the asked path.
      address: bound._tag === "UnixAddress" ?
        options.address :
        { _tag: "Tcp", host: bound.hostname, port: bound.port },
      manager,
      gracePeriod: options.gracePeriod
    }
  })
