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
 * @internal
 */
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import * as nodeFs from "node:fs"
import * as Net from "node:net"
import type { LockError, LockManagerService } from "../../LockManager.js"
import { RemoteLockError } from "../../PersistenceError.js"
import * as InMemory from "../lockManager.js"
import { type Address, formatAddress } from "./address.js"
import { type Grant, LockRpcs, PROTOCOL_VERSION, serialization, VersionMismatch } from "./protocol.js"

/** @internal */
export interface ServerOptions {
  readonly address: Address
  /** Milliseconds a connection may stay silent before its `Hello` sets its own deadline. */
  readonly handshakeDeadline: number
}

/** @internal */
export interface Server {
  /** Where the server listens (with the actual port when asked for port 0). */
  readonly address: Address
  /** The served manager: in-process callers may lock through it directly. */
  readonly manager: LockManagerService
}

/** A deadline below this would drop healthy connections on a busy event loop. */
const MIN_DEADLINE = 10

/** One connection. */
interface Peer {
  lastSeen: number
  deadline: number
  readonly hello: Deferred.Deferred<void>
  /** The fibers of live `Acquire` requests by ticket: interrupting one ends the request. */
  readonly tickets: Map<number, Fiber.RuntimeFiber<unknown, unknown>>
  /** `Release`s that overtook their `Acquire` (the handler fiber had not started yet). */
  readonly released: Set<number>
  readonly write: (response: FromServerEncoded) => Effect.Effect<void>
}

/**
 * Completes when the peer has been silent for longer than its deadline: first
 * the handshake deadline until `Hello`, then the deadline it asked for.
 */
const watchdog = (peer: Peer, handshakeDeadline: number): Effect.Effect<void> => {
  const loop: Effect.Effect<void> = Effect.suspend(() => {
    const remaining = peer.lastSeen + peer.deadline - performance.now()
    return remaining <= 0 ? Effect.void : Effect.zipRight(Effect.sleep(remaining), loop)
  })
  return Deferred.await(peer.hello).pipe(
    Effect.timeout(handshakeDeadline),
    Effect.matchEffect({ onFailure: () => Effect.void, onSuccess: () => loop })
  )
}

const makeProtocol = (
  socketServer: SocketServer.SocketServer["Type"],
  peers: Map<number, Peer>,
  options: ServerOptions
) =>
  Effect.gen(function*() {
    const disconnects = yield* Mailbox.make<number>()
    let nextId = 0
    let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>

    const onSocket = (socket: Socket.Socket) =>
      Effect.gen(function*() {
        const id = nextId++
        const parser = serialization.unsafeMake()
        const writeRaw = yield* socket.writer
        const peer: Peer = {
          lastSeen: performance.now(),
          deadline: options.handshakeDeadline,
          hello: Deferred.unsafeMake<void>(FiberId.none),
          tickets: new Map(),
          released: new Set(),
          write: (response) =>
            Effect.suspend(() => {
              const encoded = parser.encode(response)
              // A failed write means the connection is going away: its end is
              // handled where the socket closes.
              return encoded === undefined ? Effect.void : Effect.ignore(writeRaw(encoded))
            })
        }
        peers.set(id, peer)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            peers.delete(id)
            return disconnects.offer(id)
          })
        )
        yield* socket.runRaw((data) => {
          peer.lastSeen = performance.now()
          let decoded: ReadonlyArray<FromClientEncoded>
          try {
            decoded = parser.decode(data) as ReadonlyArray<FromClientEncoded>
          } catch {
            // Not our protocol (or a corrupt stream): nothing sensible to answer.
            return writeRaw(new Socket.CloseEvent(1003, "undecodable message"))
          }
          if (decoded.length === 0) return
          let i = 0
          return Effect.whileLoop({
            while: () => i < decoded.length,
            body: () => writeRequest(id, decoded[i++]),
            step: () => {}
          })
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

const makeHandlers = (manager: LockManagerService, peers: Map<number, Peer>) =>
  LockRpcs.of({
    Hello: ({ heartbeatDeadline, version }, { clientId }) =>
      Effect.suspend(() => {
        if (version !== PROTOCOL_VERSION) {
          return Effect.fail(new VersionMismatch({ server: PROTOCOL_VERSION, client: version }))
        }
        const peer = peers.get(clientId)
        if (peer !== undefined) {
          peer.deadline = Math.max(MIN_DEADLINE, heartbeatDeadline)
          Deferred.unsafeDone(peer.hello, Exit.void)
        }
        return Effect.succeed({ version: PROTOCOL_VERSION })
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
        if (fiber !== undefined) fiber.unsafeInterruptAsFork(FiberId.none)
        else peer.released.add(ticket)
      }),

    Stats: () => manager.stats
  })

const listenFailed = (address: Address, cause: unknown, detail?: string) =>
  new RemoteLockError({
    operation: "LockServer.make",
    address: formatAddress(address),
    reason: "ListenFailed",
    ...(detail !== undefined ? { detail } : {}),
    cause
  })

const errnoOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ?
    cause.code :
    undefined

/** Whether something accepts connections on a Unix socket path. */
const isAlive = (path: string): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const probe = Net.createConnection({ path })
    probe.once("connect", () => {
      probe.destroy()
      resume(Effect.succeed(true))
    })
    probe.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => probe.destroy())
  })

/**
 * Listens at the address. A Unix socket file left behind by a server that died
 * (nothing accepts on it) is replaced; a live one is refused.
 *
 * The socket file is handled with `node:fs` rather than the platform
 * `FileSystem`: it is not file I/O of the library's data but part of opening a
 * Node socket, next to the `node:net` calls that need it.
 */
const listen = (address: Address): Effect.Effect<SocketServer.SocketServer["Type"], RemoteLockError, Scope.Scope> => {
  const open = NodeSocketServer.make(
    address._tag === "Unix" ? { path: address.path } : { port: address.port, host: address.host, noDelay: true }
  )
  const mapError = (error: SocketServer.SocketServerError) => listenFailed(address, error.cause, errnoOf(error.cause))
  if (address._tag === "Tcp") return Effect.mapError(open, mapError)
  return open.pipe(
    Effect.catchAll((error) => {
      if (errnoOf(error.cause) !== "EADDRINUSE") return Effect.fail(mapError(error))
      return isAlive(address.path).pipe(
        Effect.flatMap((alive) =>
          alive ?
            Effect.fail(listenFailed(address, error.cause, "another server is listening there")) :
            Effect.try({
              try: () => nodeFs.unlinkSync(address.path),
              catch: (cause) => listenFailed(address, cause, "cannot remove the stale socket file")
            }).pipe(Effect.zipRight(Effect.mapError(open, mapError)))
        )
      )
    })
  )
}

/** @internal */
export const make = (options: ServerOptions): Effect.Effect<Server, RemoteLockError, Scope.Scope> =>
  Effect.gen(function*() {
    const manager = yield* InMemory.make
    const peers = new Map<number, Peer>()
    const socketServer = yield* listen(options.address)
    const protocol = yield* makeProtocol(socketServer, peers, options)
    yield* RpcServer.make(LockRpcs, { spanPrefix: "LockServer", concurrency: "unbounded" }).pipe(
      Effect.provideService(RpcServer.Protocol, protocol),
      Effect.provide(LockRpcs.toLayer(makeHandlers(manager, peers))),
      Effect.interruptible,
      Effect.forkScoped
    )
    const bound = socketServer.address
    return {
      address: bound._tag === "UnixAddress" ?
        { _tag: "Unix", path: bound.path } :
        { _tag: "Tcp", host: bound.hostname, port: bound.port },
      manager
    }
  })
