/**
 * The remote lock manager against a lock server that breaks the protocol (a
 * bug, or whoever took the address): what it answers is checked, not
 * trusted. The fake server below speaks the wire format (one JSON message a
 * line) and answers as each test tells it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, Schedule, Scope } from "effect"
import * as Net from "node:net"
import { PROTOCOL_VERSION } from "../src/internal/lockServer/protocol.js"
import * as LockManager from "../src/LockManager.js"
import * as LockServer from "../src/LockServer.js"
import type * as PersistenceError from "../src/PersistenceError.js"

type Message = {
  readonly _tag: string
  readonly id: string
  readonly tag?: string
  readonly payload: { readonly mode: string; readonly paths: ReadonlyArray<string>; readonly ticket: number }
}

interface Peer {
  readonly send: (message: unknown) => void
  readonly received: Array<Message>
}

/** The server's answers to requests: a stream element, the end of a request. */
const element = (request: Message, value: unknown) => ({ _tag: "Chunk", requestId: request.id, values: [value] })
const end = (request: Message) => ({ _tag: "Exit", requestId: request.id, exit: { _tag: "Success", value: null } })

/** What the test's server does with `Acquire` and `Release` (the rest it answers as lockd does). */
interface Behaviour {
  readonly hello?: (peer: Peer, request: Message) => void
  readonly acquire?: (peer: Peer, request: Message) => void
  /** By default the end of the released request's stream, as lockd confirms a release. */
  readonly release?: (peer: Peer, request: Message, acquired: Message | undefined) => void
}

/** A TCP server on loopback that speaks the protocol as `behaviour` says; its connections are counted. */
const fakeServer = (behaviour: Behaviour) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly sockets: Array<Net.Socket> }>((resume) => {
      const sockets: Array<Net.Socket> = []
      const server = Net.createServer((socket) => {
        sockets.push(socket)
        socket.on("error", () => {})
        const peer: Peer = {
          received: [],
          send: (message) => socket.destroyed || socket.write(`${JSON.stringify(message)}\n`)
        }
        let pending = ""
        socket.on("data", (data) => {
          const lines = (pending + data.toString("utf8")).split("\n")
          pending = lines.pop()!
          for (const line of lines.filter((line) => line !== "")) {
            const message = JSON.parse(line) as Message
            peer.received.push(message)
            if (message._tag === "Ping") peer.send({ _tag: "Pong" })
            else if (message.tag === "Hello") {
              if (behaviour.hello !== undefined) behaviour.hello(peer, message)
              else {
                peer.send({
                  _tag: "Exit",
                  requestId: message.id,
                  exit: { _tag: "Success", value: { version: PROTOCOL_VERSION, heartbeatDeadline: 1_000 } }
                })
              }
            } else if (message.tag === "Acquire") behaviour.acquire?.(peer, message)
            else if (message.tag === "Release") {
              const acquired = peer.received.find((m) =>
                m.tag === "Acquire" && m.payload.ticket === message.payload.ticket
              )
              if (behaviour.release !== undefined) behaviour.release(peer, message, acquired)
              else if (acquired !== undefined) peer.send(end(acquired))
            }
          }
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) => Effect.sync(() => (sockets.forEach((socket) => socket.destroy()), server.close()))
  )

/** A remote manager for the fake server, with a 1 s heartbeat deadline. */
const managerFor = (server: Net.Server, options: Partial<LockManager.RemoteOptions> = {}) =>
  LockManager.makeRemote({
    port: (server.address() as Net.AddressInfo).port,
    heartbeatDeadline: "1 second",
    connectTimeout: "5 seconds",
    ...options
  })

/** A grant as lockd sends it: the paths and mode asked for. */
const grantAsAsked = (id: number) => (request: Message) => ({
  id,
  mode: request.payload.mode,
  paths: request.payload.paths
})

const within = <A, E, R>(ms: number, what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`${what}: no outcome within ${ms} ms`) })

/** Waits until the client has closed `socket` (the server's side sees it closed). */
const closedByClient = (socket: Net.Socket) =>
  within(
    5_000,
    "the client closes the connection",
    Effect.repeat(Effect.sync(() => socket.destroyed), { until: (closed) => closed, schedule: Schedule.spaced(10) })
  )

const remoteFailure = (exit: Exit.Exit<unknown, unknown>): PersistenceError.RemoteLockError => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  if (Option.isNone(failure) || (failure.value as { _tag?: string })._tag !== "RemoteLockError") {
    throw new Error(`expected a RemoteLockError, got ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"}`)
  }
  return failure.value as PersistenceError.RemoteLockError
}

describe("a lock server that ends a held request unasked", () => {
  for (
    const [name, ending] of [
      ["the end of its stream", (request: Message) => end(request)],
      ["an interruption", (request: Message) => ({
        _tag: "Exit",
        requestId: request.id,
        exit: { _tag: "Failure", cause: { _tag: "Interrupt", fiberId: { _tag: "None" } } }
      })]
    ] as const
  ) {
    it.live(`(${name}) takes the lock away: lost completes, ensureHeld refuses, the connection stays`, () =>
      Effect.scoped(Effect.gen(function*() {
        const { server, sockets } = yield* fakeServer({
          acquire: (peer, request) => {
            peer.send(element(request, grantAsAsked(1)(request)))
            // What lockd sends to every holder when it shuts down, here alone.
            setTimeout(() => peer.send(ending(request)), 100)
          }
        })
        const manager = yield* managerFor(server)
        const lock = yield* manager.lock("/a", "write")
        yield* within(5_000, "lost", lock.lost)
        const refused = yield* Effect.flip(lock.ensureHeld("commit"))
        expect(refused._tag).toBe("LockLostError")
        expect(sockets.filter((socket) => !socket.destroyed)).toHaveLength(1)
      })))
  }
})

describe("a lock server that does not confirm a release", () => {
  it.live("withLock ends within the heartbeat deadline, and the connection is given up", () =>
    Effect.scoped(Effect.gen(function*() {
      // It answers pings, so only the release tells.
      const { server, sockets } = yield* fakeServer({
        acquire: (peer, request) => peer.send(element(request, grantAsAsked(1)(request))),
        release: () => {}
      })
      const manager = yield* managerFor(server)
      expect(yield* within(5_000, "withLock", manager.withLock("/a", "write")(Effect.succeed("done")))).toBe("done")
      yield* closedByClient(sockets[0])
      // A caller that gives up waiting (its own timeout interrupts it) is not held by the release either.
      const timedOut = yield* within(
        5_000,
        "withLock under a timeout",
        Effect.exit(Effect.timeout(manager.withLock("/b", "write")(Effect.never), "100 millis"))
      )
      expect(Exit.isFailure(timedOut)).toBe(true)
    })))
})

describe("grants that cannot be this request's are refused (ProtocolMismatch), and the connection closed", () => {
  it.live("lock ids that do not increase, a duplicate id, an id that is no integer", () =>
    Effect.scoped(Effect.gen(function*() {
      const ids = [100, 50, 200, 200, 300.5]
      let next = 0
      const { server } = yield* fakeServer({
        acquire: (peer, request) => peer.send(element(request, grantAsAsked(ids[next++])(request)))
      })
      const manager = yield* managerFor(server)
      const lockId = (path: string) => Effect.scoped(Effect.map(manager.lock(path, "write"), (lock) => lock.id))
      expect(yield* lockId("/a")).toBe(100)
      // Asked after 100 was granted: a lower id is an older grant's, or a server whose ids went back.
      const lower = remoteFailure(yield* Effect.exit(lockId("/a")))
      expect([lower.reason, lower.detail]).toEqual([
        "ProtocolMismatch",
        expect.stringContaining("lock id 50, not above 100")
      ])
      // Two locks held at once with one id (the Promise facade tells locks apart by id).
      const [first, second] = yield* Effect.all([Effect.exit(lockId("/b")), Effect.exit(lockId("/c"))], {
        concurrency: "unbounded"
      }).pipe(
        Effect.map((exits) => exits.map((exit) => Exit.isSuccess(exit) ? exit.value : remoteFailure(exit).reason))
      )
      expect([first, second].sort()).toEqual([200, "ProtocolMismatch"].sort())
      const fractional = remoteFailure(yield* Effect.exit(lockId("/d")))
      expect(fractional.reason).toBe("ProtocolMismatch")
    })))

  it.live("a grant of other paths or another mode than asked", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server } = yield* fakeServer({
        acquire: (peer, request) =>
          peer.send(element(request, { id: 7, mode: "read", paths: request.payload.paths.map((p) => `${p}/other`) }))
      })
      const manager = yield* managerFor(server)
      const refused = remoteFailure(yield* Effect.exit(Effect.scoped(manager.lock("/a", "write"))))
      expect([refused.reason, refused.detail]).toEqual([
        "ProtocolMismatch",
        "the server granted other paths or another mode than asked"
      ])
    })))

  it.live("but a write granted for a read is taken (a server before per-path modes writes every path)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server } = yield* fakeServer({
        acquire: (peer, request) => peer.send(element(request, { ...grantAsAsked(3)(request), mode: "write" }))
      })
      const manager = yield* managerFor(server)
      const lock = yield* manager.lockAll([["/a", "read"], ["/b", "read"]])
      expect([lock.mode, lock.paths]).toEqual(["write", ["/a", "/b"]])
      yield* lock.ensureHeld("commit")
    })))

  it.live("a second answer to a request: the lock is lost with the connection", () =>
    Effect.scoped(Effect.gen(function*() {
      // Each answer would be kept in memory until read: one is all a request has.
      const { server, sockets } = yield* fakeServer({
        acquire: (peer, request) => {
          peer.send(element(request, grantAsAsked(1)(request)))
          setTimeout(() => peer.send(element(request, grantAsAsked(2)(request))), 100)
        }
      })
      const manager = yield* managerFor(server)
      const lock = yield* manager.lock("/a", "write")
      yield* within(5_000, "lost", lock.lost)
      expect((yield* Effect.flip(lock.ensureHeld("commit")))._tag).toBe("LockLostError")
      yield* closedByClient(sockets[0])
    })))
})

describe("messages that are no protocol", () => {
  it.live("an answer that is no object fails the connection at once (ProtocolMismatch), not tried again", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server, sockets } = yield* fakeServer({ hello: (peer) => peer.send(null) })
      const manager = yield* managerFor(server)
      const started = performance.now()
      const failed = remoteFailure(yield* within(10_000, "stats", Effect.exit(manager.stats)))
      expect(failed.reason).toBe("ProtocolMismatch")
      // Well within connectTimeout (5 s), over one connection.
      expect(performance.now() - started).toBeLessThan(2_500)
      expect(sockets).toHaveLength(1)
    })))
})

describe("a connection given up with other requests open: every one ends, nothing waits", () => {
  /** A held lock and a waiting request, in `outer`, then `trouble` on a third request; all must end. */
  const everyRequestEnds = (
    trouble: (manager: LockManager.LockManagerService<unknown>) => Effect.Effect<unknown, unknown>
  ) =>
    Effect.gen(function*() {
      const { server, sockets } = yield* fakeServer({
        acquire: (peer, request) => {
          const path = request.payload.paths[0]
          if (path === "/held") peer.send(element(request, grantAsAsked(10)(request)))
          // "/waiting" never gets an answer; "/lower" gets an id below the one granted before it was asked.
          if (path === "/lower") peer.send(element(request, grantAsAsked(5)(request)))
          if (path === "/unconfirmed") peer.send(element(request, grantAsAsked(20)(request)))
        },
        release: (peer, _, acquired) =>
          acquired !== undefined && acquired.payload.paths[0] !== "/unconfirmed" && peer.send(end(acquired))
      })
      const manager = yield* managerFor(server)
      const outer = yield* Scope.make()
      const held = yield* manager.lock("/held", "write").pipe(Scope.extend(outer))
      const waiting = yield* Effect.fork(Effect.exit(manager.lock("/waiting", "write").pipe(Scope.extend(outer))))
      yield* Effect.sleep("50 millis")
      yield* within(5_000, "the troubled request", Effect.exit(trouble(manager)))
      yield* within(5_000, "the held lock is lost", held.lost)
      expect(Exit.isFailure(yield* within(5_000, "the waiting request", Fiber.join(waiting)))).toBe(true)
      yield* within(5_000, "releasing both", Scope.close(outer, Exit.void))
      yield* closedByClient(sockets[0])
    })

  it.live("a grant refused for its id", () =>
    Effect.scoped(everyRequestEnds((manager) => Effect.scoped(manager.lock("/lower", "write")))))

  it.live("a release not confirmed", () =>
    Effect.scoped(everyRequestEnds((manager) => manager.withLock("/unconfirmed", "write")(Effect.void))))

  it.live("closing the manager while a lock is held and another request waits, with a real server", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* LockServer.make({ port: 0, host: "127.0.0.1", gracePeriod: 0 })
      const managerScope = yield* Scope.make()
      const manager = yield* LockManager.makeRemote({ port: server.port!, host: "127.0.0.1" }).pipe(
        Scope.extend(managerScope)
      )
      const outer = yield* Scope.make()
      const held = yield* manager.lock("/a", "write").pipe(Scope.extend(outer))
      const waiting = yield* Effect.fork(Effect.exit(manager.lock("/a", "write").pipe(Scope.extend(outer))))
      // Polled, not in a tight loop: the request has to come in over the socket meanwhile.
      yield* within(
        10_000,
        "the wait",
        Effect.repeat(server.manager.stats, { until: (stats) => stats.pending === 1, schedule: Schedule.spaced(10) })
      )
      yield* within(5_000, "closing the manager", Scope.close(managerScope, Exit.void))
      yield* within(5_000, "the held lock is lost", held.lost)
      expect(Exit.isFailure(yield* within(5_000, "the waiting request", Fiber.join(waiting)))).toBe(true)
      yield* within(5_000, "releasing both", Scope.close(outer, Exit.void))
      yield* within(
        5_000,
        "the server frees both",
        Effect.repeat(server.manager.stats, {
          until: (stats) => stats.held === 0 && stats.pending === 0,
          schedule: Schedule.spaced(10)
        })
      )
    })))
})
