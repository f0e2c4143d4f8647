/**
 * The remote lock manager: a `LockManagerService` whose table lives in a lock
 * server (see ./server.ts and ./protocol.ts).
 *
 * Connection. One connection per manager, opened on first use and reopened
 * on the first use after it was lost. A lost connection (closed, undecodable,
 * or no heartbeat answer within the deadline) fails every request in flight
 * with a `RemoteLockError` and completes `lost` of every lock taken over it:
 * the server released those locks when it dropped the connection.
 *
 * Lease. The server drops a connection after the heartbeat deadline agreed in
 * `Hello` (the one asked for, or the server's maximum if that is less) of
 * silence, measured from the last message it received. The client measures
 * the same deadline from the *send* time of its last answered ping, which is
 * never later, so `ensureHeld` refuses before the server could have released.
 * It pings at the configured share of that deadline.
 *
 * Release is confirmed: `leave` sends `Release` and waits for the server to
 * end the request's stream, which it does only after the lock left its table.
 *
 * @internal
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import type * as Socket from "@effect/platform/Socket"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import { constPing, type FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Mailbox from "effect/Mailbox"
import * as Scope from "effect/Scope"
import type { Lock, LockError, LockManagerService, RemoteOptions } from "../../LockManager.js"
import { DeadlockError, InvalidArgumentError, InvalidPathError, RemoteLockError } from "../../PersistenceError.js"
import * as Input from "../input.js"
import { leasedLock } from "../leasedLock.js"
import { type Plan, planAll, type PlanError, planOne, TypeId } from "../lockManager.js"
import * as RemoteLink from "../remoteLink.js"
import type { Failure } from "../remoteLink.js"
import { type Address, addressOf, formatAddress } from "./address.js"
import * as Auth from "./auth.js"
import { makeFramer, MAX_FRAME_BYTES } from "./framing.js"
import { untrustedSocket } from "./listen.js"
import { type Grant, LockRpcs, MAX_DEADLINE, MAX_OPEN_REQUESTS, MIN_DEADLINE, PROTOCOL_VERSION } from "./protocol.js"

/** @internal */
export interface RemoteConfig {
  readonly address: Address
  /** Milliseconds. */
  readonly connectTimeout: number
  readonly heartbeatInterval: number
  readonly heartbeatDeadline: number
  /** The shared secret, or why the configured one is refused. */
  readonly secret: Uint8Array | undefined | { readonly refused: string }
  /** Overrides the protocol version sent in `Hello` (tests of the mismatch). */
  readonly protocolVersion?: number
}

/**
 * The remote manager's settings from its public options (as a caller in plain
 * JavaScript may give them), or why they are refused.
 *
 * @internal
 */
export const configOf = (options: RemoteOptions): Either.Either<RemoteConfig, Input.Refusal> =>
  Either.gen(function*() {
    const address = yield* addressOf(options)
    const { connectTimeout, heartbeatDeadline, heartbeatInterval, secret } = options as Record<string, unknown>
    // Infinite (never drop me) is the longest deadline a timer can wait; the
    // server grants at most its own maximum anyway.
    const deadline = Math.min(
      MAX_DEADLINE,
      Math.max(MIN_DEADLINE, yield* Input.millis("options.heartbeatDeadline", heartbeatDeadline, 5_000, 0, Infinity))
    )
    // A ping must have a chance to be answered before the deadline passes.
    const interval = Math.min(
      yield* Input.millis("options.heartbeatInterval", heartbeatInterval, deadline / 5, 1, Infinity),
      deadline / 2
    )
    return {
      address,
      connectTimeout: yield* Input.millis("options.connectTimeout", connectTimeout, 5_000, 1, MAX_DEADLINE),
      heartbeatInterval: Math.max(1, interval),
      heartbeatDeadline: deadline,
      secret: Auth.secretOf(secret as Auth.SecretInput | undefined)
    }
  })

/**
 * Builds the remote manager from its public options: refused ones fail with
 * an `InvalidArgumentError` naming the option.
 *
 * @internal
 */
export const start = (
  options: RemoteOptions
): Effect.Effect<LockManagerService<RemoteLockError>, InvalidArgumentError, Scope.Scope> =>
  Either.match(configOf(options), {
    onLeft: (refusal) =>
      Effect.fail(
        Input.invalidSetting(
          "LockManager.makeRemote",
          Either.getOrUndefined(Either.map(addressOf(options), formatAddress)),
          refusal
        )
      ),
    onRight: make
  })

/**
 * Room for the rest of an `Acquire` frame besides its paths (ids, tags,
 * headers, a trace context).
 */
const FRAME_OVERHEAD = 4096

/**
 * Whether a request's paths, and the mode of each when it has them, fit in one
 * frame: the server drops a connection whose frame exceeds the bound, which
 * would lose every lock held over it, so such a request is refused here
 * instead. Exact only when it could matter: a JSON string takes at most 6
 * bytes per UTF-16 unit, a mode at most 8 (`"write",`).
 */
const fitsInFrame = (paths: ReadonlyArray<string>, modes: ReadonlyArray<string> | undefined): boolean => {
  const budget = MAX_FRAME_BYTES - FRAME_OVERHEAD
  let units = 0
  for (const path of paths) units += path.length + 3
  const bound = units * 6 + (modes === undefined ? 0 : modes.length * 8 + 2)
  return bound <= budget ||
    Buffer.byteLength(JSON.stringify(paths)) + (modes === undefined ? 0 : Buffer.byteLength(JSON.stringify(modes))) <=
      budget
}

interface Connection {
  readonly scope: Scope.CloseableScope
  /** Set once the handshake succeeded. */
  rpc: RpcClient.RpcClient<RpcGroup.Rpcs<typeof LockRpcs>, RpcClientError>
  /** Why the connection is gone; set once, before its scope closes. */
  lost: Failure | undefined
  readonly lostSignal: Deferred.Deferred<void>
  /** `performance.now()` until which the server cannot have dropped this connection. */
  leaseUntil: number
  /** Milliseconds: the heartbeat deadline agreed with the server, and the ping interval for it. */
  deadline: number
  interval: number
  nextTicket: number
  /** Requests sent and not yet confirmed ended by the server (see `MAX_OPEN_REQUESTS`). */
  open: number
  /** The requests sent and not yet left: they end with the connection. */
  readonly requests: Set<Request>
}

/** Records why the connection is gone; false if it already was. */
const markLost = (conn: Connection, failure: Failure): boolean => {
  if (conn.lost !== undefined) return false
  conn.lost = failure
  Deferred.unsafeDone(conn.lostSignal, Exit.void)
  // The server forgets them with the connection.
  for (const request of conn.requests) endRequest(request)
  return true
}

/**
 * The server has ended `request`, or forgotten it with the connection: a
 * request still waiting fails (`failureOf` reads the interruption), one held
 * and not left by its holder is lost, and a `leave` waiting for the server's
 * confirmation has it.
 */
const endRequest = (request: Request): void => {
  Deferred.unsafeDone(request.answer, Exit.succeed(Exit.interrupt(FiberId.none)))
  if (!request.left) {
    request.isDropped = true
    Deferred.unsafeDone(request.dropped, Exit.void)
  }
  Deferred.unsafeDone(request.ended, Exit.void)
}

// Closed from a fiber of its own: the caller may be one of the fibers the
// scope interrupts.
const closeLater = (conn: Connection): Effect.Effect<void> =>
  Effect.asVoid(Effect.forkDaemon(Scope.close(conn.scope, Exit.void)))

/** Marks the connection lost (once) and closes it. */
const shutdown = (conn: Connection, failure: Failure): Effect.Effect<void> =>
  Effect.suspend(() => markLost(conn, failure) ? closeLater(conn) : Effect.void)

/**
 * Whether the server turned a connection attempt away: it closed the
 * connection before the handshake completed (at its connection bound, or to
 * make room under a flood), or its Unix socket's backlog was full (`EAGAIN`).
 * Such an attempt is worth another within the connect timeout.
 */
const turnedAway = (failure: Failure): boolean => {
  if (failure.reason === "Disconnected") return true
  const cause = failure.cause as { readonly cause?: { readonly code?: unknown } } | undefined
  return failure.reason === "Unreachable" && cause?.cause?.code === "EAGAIN"
}

const errorDetail = (cause: unknown): string | undefined => {
  const inner = typeof cause === "object" && cause !== null && "cause" in cause ? cause.cause : undefined
  return inner instanceof Error ? inner.message : cause instanceof Error ? cause.message : undefined
}

/**
 * The RpcClient protocol over one socket, with heartbeats. Modelled on
 * `RpcClient.makeProtocolSocket`, without its reconnection (a connection is a
 * session: locks do not survive it) and with a configurable heartbeat.
 */
const makeProtocol = (socket: Socket.Socket, conn: Connection) =>
  Effect.gen(function*() {
    const write = yield* socket.writer
    // Bounded and linear: a peer that is not a well-behaved server must not
    // make this process hold or rescan an endless line.
    const parser = makeFramer()
    const ping = parser.encode(constPing)!
    /** Send times of unanswered pings, oldest first (pongs come back in order). */
    const pings: Array<number> = []
    let opened = false
    let writeResponse!: (response: FromServerEncoded) => Effect.Effect<void>

    const fail = (failure: Failure): Effect.Effect<void> =>
      Effect.suspend(() =>
        markLost(conn, failure) ?
          Effect.zipRight(
            // Fails every request in flight (their entries in the RpcClient).
            writeResponse({
              _tag: "ClientProtocolError",
              error: new RpcClientError({ reason: "Protocol", message: "lock server connection lost", cause: failure })
            }),
            closeLater(conn)
          ) :
          Effect.void
      )

    const protocol = yield* RpcClient.Protocol.make((writeResponse_) => {
      writeResponse = writeResponse_
      return Effect.succeed({
        send: (request) =>
          Effect.suspend(() => {
            if (conn.lost !== undefined) {
              return Effect.fail(
                new RpcClientError({ reason: "Protocol", message: "lock server connection lost", cause: conn.lost })
              )
            }
            const encoded = parser.encode(request)
            return encoded === undefined ? Effect.void : Effect.mapError(
              write(encoded),
              (cause) => new RpcClientError({ reason: "Protocol", message: "cannot write to the lock server", cause })
            )
          }),
        // One element per stream: acknowledgements would only cost a message.
        supportsAck: false,
        supportsTransferables: false
      })
    })

    yield* socket.runRaw((data) => {
      let responses: ReadonlyArray<FromServerEncoded>
      try {
        responses = parser.decode(data) as ReadonlyArray<FromServerEncoded>
      } catch (cause) {
        return fail({ reason: "ProtocolMismatch", detail: "undecodable message from the server", cause })
      }
      if (responses.length === 0) return
      let i = 0
      return Effect.whileLoop({
        while: () => i < responses.length,
        body: () => {
          const response = responses[i++]
          if (typeof response !== "object" || response === null) {
            return fail({ reason: "ProtocolMismatch", detail: "a message from the server that is no object" })
          }
          if (response._tag === "Pong") {
            const sent = pings.shift()
            if (sent !== undefined) conn.leaseUntil = Math.max(conn.leaseUntil, sent + conn.deadline)
          }
          return writeResponse(response)
        },
        step: () => {}
      })
    }, { onOpen: Effect.sync(() => opened = true) }).pipe(
      Effect.exit,
      Effect.flatMap((exit) => {
        const cause = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        const detail = errorDetail(cause)
        return fail(
          opened ?
            { reason: "Disconnected", detail: detail ?? "the server closed the connection", cause } :
            { reason: "Unreachable", ...(detail !== undefined ? { detail } : {}), cause }
        )
      }),
      Effect.interruptible,
      Effect.forkScoped
    )

    /** Pings every interval; declares the connection lost once its lease has run out. */
    const heartbeat: Effect.Effect<void> = Effect.suspend(() => {
      if (conn.lost !== undefined) return Effect.void
      const t = performance.now()
      if (t >= conn.leaseUntil) {
        return fail({ reason: "Disconnected", detail: `no heartbeat answer within ${conn.deadline} ms` })
      }
      pings.push(t)
      // Not awaited: a peer that stopped reading must not stall the deadline check.
      const send = write(ping).pipe(
        Effect.catchAll((cause) => fail({ reason: "Disconnected", detail: "cannot send a heartbeat", cause })),
        Effect.forkIn(conn.scope)
      )
      const next = Math.max(1, Math.min(conn.interval, conn.leaseUntil - t))
      return send.pipe(Effect.zipRight(Effect.sleep(next)), Effect.zipRight(heartbeat))
    })

    return { protocol, heartbeat } as const
  })

const isLockError = (u: unknown): u is LockError =>
  u instanceof InvalidPathError || u instanceof InvalidArgumentError || u instanceof DeadlockError

/** A request sent to the server: waiting for its grant, or held. */
interface Request {
  readonly conn: Connection
  readonly ticket: number
  /** Owns the RPC stream of this request. */
  readonly scope: Scope.CloseableScope
  /** The highest id granted to this manager before the request was sent: its grant's must be above. */
  readonly floor: number
  /** The first answer: the grant, or why there is none. */
  readonly answer: Deferred.Deferred<Exit.Exit<Grant, unknown>>
  /** Completes when the server has ended the request (after a `Release`, or on its own). */
  readonly ended: Deferred.Deferred<void>
  /** Completes (and `isDropped` is set) when the server ended the request unasked: a held lock is gone. */
  readonly dropped: Deferred.Deferred<void>
  isDropped: boolean
  /** The id granted, once granted. */
  id: number | undefined
  left: boolean
}

/** @internal */
export const make = (config: RemoteConfig): Effect.Effect<LockManagerService<RemoteLockError>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const managerScope = yield* Effect.scope
    const address = formatAddress(config.address)
    const version = config.protocolVersion ?? PROTOCOL_VERSION
    const toError = (operation: string, failure: Failure) => RemoteLink.toError(operation, address, failure)
    /** The highest lock id granted to this manager, and the ids of the locks it holds. */
    let grantedMax = 0
    const heldIds = new Set<number>()

    /** Why a call on `conn` failed: the connection's fate if it is gone, else what the server said. */
    const failureOf = (conn: Connection, cause: Cause.Cause<unknown>): Failure => {
      if (conn.lost !== undefined) return conn.lost
      // The server interrupts its requests when it shuts down.
      if (Cause.isInterruptedOnly(cause)) {
        return { reason: "Disconnected", detail: "the server ended the request (shutting down)" }
      }
      const error = Cause.squash(cause)
      return error instanceof RpcClientError ?
        { reason: "Disconnected", detail: error.message, cause: error } :
        { reason: "ProtocolMismatch", detail: "unexpected answer from the server", cause: error }
    }

    /**
     * Proves this client knows the secret and checks that the server does:
     * a server that does not ask for the secret is refused when one is
     * configured (it could be anyone who took the address).
     */
    const authenticate = (
      conn: Connection,
      rpc: RpcClient.RpcClient<RpcGroup.Rpcs<typeof LockRpcs>, RpcClientError>,
      secret: Uint8Array | undefined,
      clientNonce: string,
      challenge: string | undefined
    ): Effect.Effect<void, Failure> =>
      Effect.gen(function*() {
        if (challenge === undefined) {
          if (secret === undefined) return
          return yield* Effect.fail<Failure>({
            reason: "Unauthorized",
            detail: "the server does not ask for the secret, so it cannot prove it knows it: refusing it"
          })
        }
        if (secret === undefined) {
          return yield* Effect.fail<Failure>({
            reason: "Unauthorized",
            detail: "the server requires a secret and none is configured"
          })
        }
        if (!Auth.isNonce(challenge)) {
          return yield* Effect.fail<Failure>({
            reason: "ProtocolMismatch",
            detail: "malformed challenge from the server"
          })
        }
        const answer = yield* rpc.Authenticate({ proof: Auth.clientProof(secret, clientNonce, challenge) })
          .pipe(
            Effect.catchAllCause((cause): Effect.Effect<never, Failure> => {
              const failure = Cause.failureOption(cause)
              return Effect.fail(
                failure._tag === "Some" && failure.value._tag === "Unauthorized" ?
                  { reason: "Unauthorized", detail: "the server refused this client's secret" } :
                  conn.lost ?? {
                    reason: "ProtocolMismatch",
                    detail: "the server did not understand the authentication",
                    cause: Cause.squash(cause)
                  }
              )
            })
          )
        if (!Auth.verify(Auth.serverProof(secret, clientNonce, challenge), answer.proof)) {
          return yield* Effect.fail<Failure>({
            reason: "Unauthorized",
            detail: "the server could not prove it knows the secret"
          })
        }
      })

    /** One attempt, within `budget` milliseconds. */
    const connect = (budget: number): Effect.Effect<Connection, Failure> =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const conn: Connection = {
          scope,
          rpc: undefined as never,
          lost: undefined,
          lostSignal: Deferred.unsafeMake<void>(FiberId.none),
          leaseUntil: 0,
          deadline: config.heartbeatDeadline,
          interval: config.heartbeatInterval,
          nextTicket: 0,
          open: 0,
          requests: new Set()
        }
        const open = Effect.gen(function*() {
          const secret = config.secret
          if (secret !== undefined && "refused" in secret) {
            return yield* Effect.fail<Failure>({ reason: "Unauthorized", detail: secret.refused })
          }
          // Without a secret, the socket's owner is the only proof of the server.
          const untrusted = config.address._tag === "Unix" && secret === undefined ?
            untrustedSocket(config.address.path) :
            undefined
          if (untrusted !== undefined) {
            return yield* Effect.fail<Failure>({
              reason: "Unauthorized",
              detail: `refusing the server without a secret: ${untrusted}. Give the server and its clients a ` +
                "secret, or put the socket where only root or this user can"
            })
          }
          const socket = yield* NodeSocket.makeNet(
            config.address._tag === "Unix" ?
              { path: config.address.path } :
              { host: config.address.host, port: config.address.port, noDelay: true }
          ).pipe(Effect.mapError((cause): Failure => ({ reason: "Unreachable", cause })))
          const { heartbeat, protocol } = yield* makeProtocol(socket, conn)
          const rpc = yield* RpcClient.make(LockRpcs, { disableTracing: true }).pipe(
            Effect.provideService(RpcClient.Protocol, protocol)
          )
          const sentAt = performance.now()
          const clientNonce = Auth.nonce()
          const hello = yield* rpc.Hello({ version, heartbeatDeadline: config.heartbeatDeadline, nonce: clientNonce })
            .pipe(
              Effect.catchAllCause((cause): Effect.Effect<never, Failure> => {
                const failure = Cause.failureOption(cause)
                if (failure._tag === "Some" && failure.value._tag === "VersionMismatch") {
                  return Effect.fail({
                    reason: "ProtocolMismatch",
                    detail: `the server speaks protocol version ${failure.value.server}, this client ${version}`
                  })
                }
                return Effect.fail(
                  conn.lost ?? {
                    reason: "ProtocolMismatch",
                    detail: "the server did not understand the handshake",
                    cause: Cause.squash(cause)
                  }
                )
              })
            )
          if (hello.version !== version) {
            return yield* Effect.fail<Failure>({
              reason: "ProtocolMismatch",
              detail: `the server answered with protocol version ${hello.version}, this client speaks ${version}`
            })
          }
          const agreed = hello.heartbeatDeadline
          if (!(agreed >= MIN_DEADLINE && agreed <= config.heartbeatDeadline)) {
            return yield* Effect.fail<Failure>({
              reason: "ProtocolMismatch",
              detail:
                `the server answered with a heartbeat deadline of ${agreed} ms, this client asked for ${config.heartbeatDeadline}`
            })
          }
          yield* authenticate(conn, rpc, secret, clientNonce, hello.challenge)
          // A shorter deadline than asked for (the server's maximum): ping as
          // often in proportion, or the lease would run out between pings.
          conn.interval = Math.max(1, config.heartbeatInterval * agreed / config.heartbeatDeadline)
          conn.deadline = agreed
          conn.leaseUntil = sentAt + agreed
          conn.rpc = rpc
          yield* Effect.forkScoped(heartbeat)
        }).pipe(Scope.extend(scope))
        yield* open.pipe(
          Effect.timeoutFail({
            duration: Math.max(0, budget),
            onTimeout: (): Failure => ({
              reason: "Timeout",
              detail: `no connection and handshake within ${config.connectTimeout} ms`
            })
          }),
          Effect.onError(() => shutdown(conn, { reason: "Disconnected", detail: "the connection attempt failed" }))
        )
        return conn
      })

    /**
     * Attempts within `connectTimeout` in all. A connection the server closed
     * before the handshake completed is tried again after a pause (doubling
     * from 50 ms up to 1 s, each shortened at random by up to half, never past
     * the deadline): a server at its connection bound closes new connections
     * so, and under a flood of connections it drops some in their handshake
     * to make room. Each attempt gets the time left.
     */
    const connectRetrying = Effect.suspend(() => {
      const deadline = performance.now() + config.connectTimeout
      const retried = (failure: Failure): Failure => ({
        ...failure,
        detail: `${failure.detail ?? failure.reason} (tried again for ${config.connectTimeout} ms)`
      })
      /** `before`: how the previous attempt was turned away, if there was one (what a later timeout reports). */
      const attempt = (pause: number, before: Failure | undefined): Effect.Effect<Connection, Failure> =>
        Effect.catchAll(connect(deadline - performance.now()), (failure) => {
          const left = deadline - performance.now()
          if (!turnedAway(failure) || left <= 0) {
            return Effect.fail(
              before === undefined ?
                failure :
                failure.reason === "Timeout" ?
                retried(before) :
                turnedAway(failure) ?
                retried(failure) :
                failure
            )
          }
          return Effect.zipRight(
            Effect.sleep(Math.min(left, pause * (0.5 + Math.random() / 2))),
            Effect.suspend(() =>
              deadline - performance.now() > 0 ?
                attempt(Math.min(2 * pause, 1000), failure) :
                Effect.fail(retried(failure))
            )
          )
        })
      return attempt(50, undefined)
    })

    const link = RemoteLink.make(connectRetrying, managerScope)

    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        const conn = link.current
        if (conn === undefined) return Effect.void
        markLost(conn, { reason: "Disconnected", detail: "the lock manager was shut down" })
        return Scope.close(conn.scope, Exit.void)
      })
    )

    /** The live connection, or a new one (see `RemoteLink.make`). */
    const connection = (operation: string): Effect.Effect<Connection, RemoteLockError> =>
      Effect.suspend(() =>
        closed ?
          Effect.dieMessage(`${operation}: the remote lock manager was used after its scope closed`) :
          Effect.mapError(link.get, (failure) => toError(operation, failure))
      )

    /** Sends `Acquire`; never waits (the RPC is sent from a fiber of the request's scope). */
    const start = (operation: string, conn: Connection, plan: Plan): Effect.Effect<Request, RemoteLockError> =>
      Effect.suspend(() => {
        if (conn.lost !== undefined) return Effect.fail(toError(operation, conn.lost))
        if (!fitsInFrame(plan.paths, plan.pathModes)) {
          return Effect.fail(toError(operation, {
            reason: "RequestTooLarge",
            detail: `the paths and modes take more than the protocol's ${MAX_FRAME_BYTES} bytes per message`
          }))
        }
        if (conn.open >= MAX_OPEN_REQUESTS) {
          return Effect.fail(toError(operation, {
            reason: "Rejected",
            detail: `this connection has ${MAX_OPEN_REQUESTS} requests open (waiting or held), the most a server takes`
          }))
        }
        const ticket = ++conn.nextTicket
        const floor = grantedMax
        // Counted from the check, in the same step: requests started meanwhile see it.
        conn.open++
        return Scope.fork(conn.scope, ExecutionStrategy.sequential).pipe(
          Effect.flatMap((scope) =>
            conn.rpc.Acquire({
              ticket,
              mode: plan.mode,
              paths: plan.paths,
              all: plan.all,
              ...(plan.pathModes !== undefined ? { modes: plan.pathModes } : {})
            }, { asMailbox: true })
              .pipe(
                Scope.extend(scope),
                Effect.flatMap((mailbox) => {
                  const request: Request = {
                    conn,
                    ticket,
                    scope,
                    floor,
                    answer: Deferred.unsafeMake(FiberId.none),
                    ended: Deferred.unsafeMake(FiberId.none),
                    dropped: Deferred.unsafeMake(FiberId.none),
                    isDropped: false,
                    id: undefined,
                    left: false
                  }
                  conn.requests.add(request)
                  // Interruptible, though `start` is not: closing the request's
                  // scope (a `leave`, the connection's end) must stop it, not
                  // wait for a stream that only the connection's later
                  // finalizers end.
                  return Effect.as(Effect.forkIn(Effect.interruptible(follow(request, mailbox)), scope), request)
                })
              )
          ),
          // `start` runs uninterruptibly: an interruption here is the
          // RpcClient refusing a request because the connection just closed.
          Effect.catchAllCause((cause) => {
            conn.open--
            return Effect.fail(toError(operation, failureOf(conn, cause)))
          })
        )
      })

    /**
     * The one reader of a request's answers: its grant, then the end of its
     * stream, which the server sends once the request is released, or when it
     * drops the request (it shuts down): a held lock is lost then. A second
     * answer is a server out of protocol, whose messages would pile up here:
     * the connection is closed.
     */
    const follow = (request: Request, mailbox: Mailbox.ReadonlyMailbox<Grant, unknown>): Effect.Effect<void> => {
      const rest: Effect.Effect<void> = Effect.flatMap(Effect.exit(mailbox.takeAll), (exit) => {
        if (Exit.isFailure(exit)) return Effect.void
        const [answers, done] = exit.value
        if (Chunk.isNonEmpty(answers)) {
          return shutdown(request.conn, { reason: "ProtocolMismatch", detail: "the server answered a request twice" })
        }
        return done ? Effect.void : rest
      })
      return Effect.flatMap(Effect.exit(mailbox.take), (first) => {
        Deferred.unsafeDone(request.answer, Exit.succeed(first))
        return Exit.isSuccess(first) ? rest : Effect.void
      }).pipe(
        Effect.ensuring(Effect.sync(() => endRequest(request)))
      )
    }

    /**
     * Why `grant` cannot answer `request`, if it cannot: ids must be integers
     * above every id granted to this manager before it asked (the server's
     * grants are ordered; the facade tells locks apart by id), and the paths
     * and mode those asked for.
     */
    const refusal = (request: Request, plan: Plan, grant: Grant): Failure | undefined => {
      if (!Number.isSafeInteger(grant.id) || grant.id <= request.floor || heldIds.has(grant.id)) {
        return {
          reason: "ProtocolMismatch",
          detail: `the server granted lock id ${grant.id}, not above ${request.floor} (granted to this manager ` +
            "before it asked) or held already: ids go back (a server restarted with its clock set back?)"
        }
      }
      const asked = new Set(plan.paths)
      // A write where a read was asked is safe (a server before per-path modes writes every path of a lockAll).
      const mode = grant.mode === plan.mode || (plan.mode === "read" && grant.mode === "write")
      if (!mode || grant.paths.length !== asked.size || !grant.paths.every((p) => asked.has(p))) {
        return { reason: "ProtocolMismatch", detail: "the server granted other paths or another mode than asked" }
      }
      return undefined
    }

    const awaitGrant = (
      operation: string,
      request: Request,
      plan: Plan
    ): Effect.Effect<Grant, LockError | RemoteLockError> =>
      Effect.flatMap(Deferred.await(request.answer), (answer): Effect.Effect<Grant, LockError | RemoteLockError> => {
        // Bounded by the connection: once it is lost, `markLost` ends every
        // request of it (an interruption here, read as the connection's fate).
        if (Exit.isFailure(answer)) {
          const failure = Cause.failureOption(answer.cause)
          if (failure._tag === "Some" && isLockError(failure.value)) return Effect.fail(failure.value)
          return Effect.fail(toError(operation, failureOf(request.conn, answer.cause)))
        }
        const grant = answer.value
        const refused = refusal(request, plan, grant)
        if (refused !== undefined) {
          return Effect.zipRight(shutdown(request.conn, refused), Effect.fail(toError(operation, refused)))
        }
        request.id = grant.id
        heldIds.add(grant.id)
        grantedMax = Math.max(grantedMax, grant.id)
        return Effect.succeed(grant)
      }).pipe(
        Effect.withSpan("LockManager.wait", {
          attributes: { "lock.paths": plan.paths.join(","), "lock.mode": plan.mode, "lock.server": address },
          // Every remote request waits (a round trip): no stack trace per request.
          captureStackTrace: false
        })
      )

    /**
     * Ends a request, waiting or held, and waits until the server confirms
     * (the end of its stream). Idempotent. Bounded: a connection that stops
     * answering is declared lost after the heartbeat deadline, and so is one
     * that answers pings but does not confirm the release within it.
     */
    const leave = (request: Request): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (request.left) return Effect.void
        request.left = true
        const conn = request.conn
        // Counted until the server confirmed the end: then it has forgotten the request too.
        const close = Effect.zipRight(
          Scope.close(request.scope, Exit.void),
          Effect.sync(() => {
            conn.open--
            conn.requests.delete(request)
            if (request.id !== undefined) heldIds.delete(request.id)
          })
        )
        if (conn.lost !== undefined) return close
        // Not `Effect.timeout`: `leave` runs in an uninterruptible region
        // (often of a caller being interrupted), where the wait cannot be cut
        // short. A watchdog gives up on the connection instead, and ends the wait.
        const confirmed = Effect.flatMap(
          // Interruptible, though forked from an uninterruptible region: the
          // confirmation stops it.
          Effect.forkDaemon(Effect.interruptible(Effect.zipRight(
            Effect.sleep(conn.deadline),
            shutdown(conn, {
              reason: "Disconnected",
              detail: `the server did not confirm a release within ${conn.deadline} ms`
            })
          ))),
          (watchdog) => Effect.zipRight(Deferred.await(request.ended), Fiber.interrupt(watchdog))
        )
        return conn.rpc.Release({ ticket: request.ticket }, { discard: true }).pipe(
          Effect.zipRight(confirmed),
          // A lost connection ends the stream too (failed or interrupted by
          // the RpcClient): the server dropped the request with it.
          Effect.catchAllCause(() => Effect.void),
          Effect.ensuring(close)
        )
      })

    const isHeld = (request: Request) =>
      !request.left && !request.isDropped && request.conn.lost === undefined &&
      performance.now() < request.conn.leaseUntil

    const toLock = (request: Request, grant: Grant): Lock =>
      // Lost when the server drops the request, or the connection goes (also
      // after the lock was released: its holder may await it still).
      leasedLock(
        grant,
        Effect.raceFirst(Deferred.await(request.conn.lostSignal), Deferred.await(request.dropped)),
        () => isHeld(request)
      )

    const scoped = (operation: string, plan: Either.Either<Plan, PlanError>) =>
      Either.isLeft(plan) ?
        Effect.fail(plan.left) :
        Effect.flatMap(connection(operation), (conn) =>
          Effect.acquireRelease(start(operation, conn, plan.right), leave).pipe(
            // An interrupted wait inside a larger scope leaves the queue now,
            // not when the scope closes.
            Effect.flatMap((request) =>
              Effect.onInterrupt(
                Effect.map(awaitGrant(operation, request, plan.right), (grant) =>
                  toLock(request, grant)),
                () => leave(request)
              )
            )
          ))

    const bracket = (operation: string, plan: Either.Either<Plan, PlanError>) =>
    <A, E, R>(
      effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
    ): Effect.Effect<A, E | LockError | RemoteLockError, R> => {
      if (Either.isLeft(plan)) return Effect.fail(plan.left)
      const use = Effect.isEffect(effect) ? () => effect : effect
      return Effect.flatMap(
        connection(operation),
        (conn) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.flatMap(
              start(operation, conn, plan.right),
              (request) =>
                restore(awaitGrant(operation, request, plan.right)).pipe(
                  Effect.flatMap((grant) => restore(use(toLock(request, grant)))),
                  Effect.ensuring(leave(request))
                )
            )
          )
      )
    }

    return {
      [TypeId]: TypeId,
      lock: (path, mode) => scoped("LockManager.lock", planOne("LockManager.lock", path, mode)),
      lockAll: (paths) => scoped("LockManager.lockAll", planAll("LockManager.lockAll", paths)),
      withLock: (path, mode) => bracket("LockManager.withLock", planOne("LockManager.withLock", path, mode)),
      withLockAll: (paths) => bracket("LockManager.withLockAll", planAll("LockManager.withLockAll", paths)),
      stats: Effect.flatMap(connection("LockManager.stats"), (conn) =>
        conn.rpc.Stats().pipe(
          Effect.catchAllCause((cause) => Effect.fail(toError("LockManager.stats", failureOf(conn, cause))))
        ))
    }
  })
