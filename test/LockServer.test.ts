/**
 * The lock server with real processes: `lockd` run from its sources, workers
 * bundled from test/fixtures/lock-worker.ts, over Unix sockets in temp
 * directories and TCP on loopback.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, Fiber, Option, Scope } from "effect"
import * as nodeFs from "node:fs"
import * as Net from "node:net"
import * as nodePath from "node:path"
import { PROTOCOL_VERSION } from "../src/internal/lockServer/protocol.js"
import * as Remote from "../src/internal/lockServer/remote.js"
import * as LockManager from "../src/LockManager.js"
import * as LockServer from "../src/LockServer.js"
import * as PersistenceError from "../src/PersistenceError.js"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import { killAll, remoteOptions, startLockd, startWorker } from "./fixtures/lock-processes.js"
import { clientOver, expectRemoteError, holdLock, now, TEMP, tempDir, untilStats, within } from "./utils/remoteLocks.js"

let bundle: Bundle | undefined

beforeAll(async () => {
  bundle = await bundleFixture("./lock-worker.ts")
}, 60_000)

afterEach(killAll)

afterAll(() => bundle?.remove())

const worker = (args: ReadonlyArray<string>) => startWorker(bundle!.file, args)

const lockd = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.promise(() => startLockd(args)),
    (server) => Effect.promise(() => (server.signal("SIGTERM"), server.closed))
  )

describe("several processes, one lock server", () => {
  it.live(
    "four processes x 250 Client.modify increments through one server: exactly 1000",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("lockserver-")
        const server = yield* lockd(["--port", "0"])
        const file = nodePath.join(dir, "counter")
        const options = JSON.stringify(remoteOptions(server.address))
        const workers = Array.from({ length: 4 }, () => worker(["counter", options, file, "250", "1"]))
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^ready$/))))
        const started = now()
        for (const w of workers) w.send("go")
        // 10 to 40 s, longer on a loaded machine.
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^done$/, 150_000))))
        console.log(`1000 remote modify increments by 4 processes over TCP: ${(now() - started).toFixed(0)} ms`)
        expect(nodeFs.readFileSync(file, "utf8")).toBe("1000")
        const manager = yield* LockManager.makeRemote(remoteOptions(server.address))
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      })),
    180_000
  )

  it.live(
    "negative control: four processes with their own in-memory managers lose updates",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("lockserver-")
        const file = nodePath.join(dir, "counter")
        const workers = Array.from({ length: 4 }, () => worker(["counter", "local", file, "250", "1"]))
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^ready$/))))
        for (const w of workers) w.send("go")
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^done$/, 50_000))))
        const final = Number(nodeFs.readFileSync(file, "utf8"))
        console.log(`1000 increments with per-process managers ended at ${final}`)
        expect(final).toBeLessThan(1000)
      })),
    60_000
  )

  it.live(
    "a holder killed mid-sink (SIGKILL): another process acquires within 2 s; recover removes its temp file",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("lockserver-")
        const server = yield* lockd(["--socket", nodePath.join(dir, "lockd.sock")])
        const target = nodePath.join(dir, "data", "target")
        const holder = worker(["sink", JSON.stringify(remoteOptions(server.address)), target])
        yield* Effect.promise(() => holder.waitFor(/^holding$/))
        const temps = nodeFs.readdirSync(nodePath.dirname(target)).filter((name) => TEMP.test(name))
        expect(temps).toHaveLength(1)

        const manager = yield* LockManager.makeRemote(remoteOptions(server.address))
        const waiter = yield* holdLock(manager, target)
        yield* untilStats(manager, (s) => s.held === 1 && s.pending === 1)
        const killedAt = now()
        holder.signal("SIGKILL")
        const { at } = yield* within(2_000, "acquire after the holder died", Deferred.await(waiter.granted))
        console.log(`acquired ${(at - killedAt).toFixed(1)} ms after SIGKILL of the holder`)
        // The kernel closes the dead process's socket at once: well within 1 s.
        expect(at - killedAt).toBeLessThan(1_000)
        yield* waiter.release

        const client = yield* clientOver(LockManager.layerRemote(remoteOptions(server.address)))
        const removed = yield* client.recover(nodePath.dirname(target))
        expect(removed).toEqual([nodePath.join(nodePath.dirname(target), temps[0])])
        expect(nodeFs.readdirSync(nodePath.dirname(target))).toEqual([])
      })),
    60_000
  )

  it.live(
    "a holder that goes silent (SIGSTOP) loses its lock after its heartbeat deadline, and learns it",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("lockserver-")
        const server = yield* lockd(["--socket", nodePath.join(dir, "lockd.sock")])
        const deadline = 1_000
        const holderOptions = remoteOptions(server.address, { heartbeatDeadline: deadline, heartbeatInterval: 100 })
        const holder = worker(["hold", JSON.stringify(holderOptions), "/shared/resource"])
        const [, heldId] = yield* Effect.promise(() => holder.waitFor(/^holding (\d+)$/))

        const manager = yield* LockManager.makeRemote(remoteOptions(server.address))
        const waiter = yield* holdLock(manager, "/shared/resource")
        yield* untilStats(manager, (s) => s.held === 1 && s.pending === 1)
        const stoppedAt = now()
        holder.signal("SIGSTOP")
        const { at, lock } = yield* within(
          deadline + 2_000,
          "acquire after the holder froze",
          Deferred.await(waiter.granted)
        )
        const after = at - stoppedAt
        console.log(`acquired ${after.toFixed(0)} ms after SIGSTOP of the holder (deadline ${deadline} ms)`)
        // Not before the deadline (less the last heartbeat interval), not much after it.
        expect(after).toBeGreaterThan(deadline - 200)
        expect(after).toBeLessThan(deadline + 1_500)
        expect(lock.id).toBeGreaterThan(Number(heldId))

        // Woken up, the holder finds out: `lost` completes and `ensureHeld` refuses.
        holder.signal("SIGCONT")
        yield* Effect.promise(() => holder.waitFor(/^lost$/, 5_000))
        holder.send("check")
        yield* Effect.promise(() => holder.waitFor(/^refused LockLostError$/, 5_000))
        yield* waiter.release
      })),
    60_000
  )

  it.live(
    "the server dies: clients fail with typed errors, none hangs; after a restart acquisitions work",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("lockserver-")
        const socket = nodePath.join(dir, "lockd.sock")
        const server = yield* Effect.promise(() => startLockd(["--socket", socket]))
        const manager = yield* LockManager.makeRemote({ socket, heartbeatDeadline: "2 seconds" })
        const client = yield* clientOver(LockManager.layerRemote({ socket }))

        const holder = yield* holdLock(manager, "/k")
        const { lock } = yield* Deferred.await(holder.granted)
        yield* lock.ensureHeld("test")
        const waiting = yield* Effect.fork(Effect.scoped(manager.lock("/k", "write")))
        yield* untilStats(manager, (s) => s.pending === 1)

        server.signal("SIGKILL")
        yield* Effect.promise(() => server.closed)
        const killedAt = now()
        expectRemoteError(yield* within(2_000, "waiting request", Fiber.await(waiting)), ["Disconnected"])
        yield* within(2_000, "lost of the held lock", lock.lost)
        expect((yield* Effect.flip(lock.ensureHeld("test")))._tag).toBe("LockLostError")
        console.log(`waiter failed and holder lost its lock ${(now() - killedAt).toFixed(1)} ms after the kill`)
        yield* holder.release

        // Nobody listens: fast, typed failures through the manager and the Client.
        const started = now()
        expectRemoteError(
          yield* Effect.exit(within(2_000, "lock", Effect.scoped(manager.lock("/z", "read")))),
          ["Unreachable"]
        )
        const write = yield* Effect.exit(within(2_000, "Client.write", client.write(nodePath.join(dir, "f"), "x")))
        expectRemoteError(write, ["Unreachable"])
        expect(now() - started).toBeLessThan(1_000)

        // A new server on the same path (its stale socket file is replaced).
        const restarted = yield* lockd(["--socket", socket])
        expect(restarted.address).toBe(`unix:${socket}`)
        const id = yield* within(
          5_000,
          "lock after restart",
          manager.withLock("/k", "write")((l) => Effect.succeed(l.id))
        )
        // Ids go on increasing across the restart: a fencing token never repeats.
        expect(id).toBeGreaterThan(lock.id)
        expect(Number.isSafeInteger(id)).toBe(true)
        yield* within(5_000, "Client.write after restart", client.write(nodePath.join(dir, "f"), "after"))
        expect(nodeFs.readFileSync(nodePath.join(dir, "f"), "utf8")).toBe("after")
      })),
    60_000
  )
})

describe("bounded, typed failures", () => {
  const failsWith = (
    options: LockManager.RemoteOptions,
    reason: PersistenceError.RemoteLockErrorReason,
    maxMs: number,
    config?: Partial<Remote.RemoteConfig>
  ) =>
    Effect.scoped(Effect.gen(function*() {
      const manager = config === undefined ?
        yield* LockManager.makeRemote(options) :
        yield* Remote.make({ ...Either.getOrThrow(Remote.configOf(options)), ...config })
      const started = now()
      const exit = yield* Effect.exit(within(maxMs + 2_000, "lock", Effect.scoped(manager.lock("/a", "write"))))
      const elapsed = now() - started
      const error = expectRemoteError(exit, [reason])
      expect(elapsed, error.message).toBeLessThan(maxMs)
      return { error, elapsed }
    }))

  /** A TCP server on loopback that treats connections with `onConnection`; its port. */
  const fakeServer = (onConnection: (socket: Net.Socket) => void) => {
    const sockets = new Set<Net.Socket>()
    return Effect.acquireRelease(
      Effect.async<Net.Server>((resume) => {
        const server = Net.createServer((socket) => {
          sockets.add(socket)
          onConnection(socket)
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          // `close` waits for open connections: end them (this server may never read).
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))
  }

  it.live("no socket file: Unreachable at once", () =>
    Effect.gen(function*() {
      const { error } = yield* failsWith({ socket: "/nonexistent/dir/lockd.sock" }, "Unreachable", 1_000)
      expect(error.message).toContain("unix:/nonexistent/dir/lockd.sock")
    }))

  it.live("a closed TCP port: Unreachable at once", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* Effect.scoped(fakeServer(() => {}))
      yield* failsWith({ port }, "Unreachable", 1_000)
    })))

  it.live("a peer that accepts but never answers: Timeout after connectTimeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* fakeServer(() => {})
      const { elapsed } = yield* failsWith({ port, connectTimeout: "300 millis" }, "Timeout", 2_000)
      expect(elapsed).toBeGreaterThanOrEqual(290)
    })))

  it.live("a peer that speaks something else: ProtocolMismatch", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* fakeServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"))
      yield* failsWith({ port }, "ProtocolMismatch", 2_000)
    })))

  it.live("a server that answers Hello with a heartbeat deadline it cannot mean: ProtocolMismatch", () =>
    Effect.scoped(Effect.gen(function*() {
      // Below the protocol's 10 ms, above what the client asked for (5 s), not a number, absent.
      for (const deadline of [0, 5, -1, 6_000, null, "5000", undefined]) {
        const port = yield* fakeServer((socket) => {
          let pending = ""
          socket.on("data", (data) => {
            pending += data.toString("utf8")
            const lines = pending.split("\n")
            pending = lines.pop()!
            for (const line of lines) {
              const message = JSON.parse(line)
              if (message._tag !== "Request" || message.tag !== "Hello") continue
              const value = { version: PROTOCOL_VERSION, heartbeatDeadline: deadline }
              socket.write(
                JSON.stringify({ _tag: "Exit", requestId: message.id, exit: { _tag: "Success", value } }) + "\n"
              )
            }
          })
        })
        yield* failsWith({ port }, "ProtocolMismatch", 2_000)
      }
    })))

  it.live("a server of another protocol version: ProtocolMismatch", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("lockserver-")
      const socket = nodePath.join(dir, "lockd.sock")
      yield* LockServer.make({ socket, gracePeriod: 0 })
      const { error } = yield* failsWith({ socket }, "ProtocolMismatch", 2_000, { protocolVersion: 99 })
      expect(error.message).toContain(`version ${PROTOCOL_VERSION}`)
    })))
})

describe("in-process server", () => {
  const setup = Effect.gen(function*() {
    const dir = yield* tempDir("lockserver-")
    const socket = nodePath.join(dir, "lockd.sock")
    const server = yield* LockServer.make({ socket, gracePeriod: 0 })
    return { dir, socket, server }
  })

  it.live("an interrupted waiter leaves the server's queue before the interrupt returns", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server, socket } = yield* setup
      const a = yield* LockManager.makeRemote({ socket })
      const b = yield* LockManager.makeRemote({ socket })
      const holder = yield* holdLock(a, "/p")
      yield* Deferred.await(holder.granted)
      const timedOut = yield* Effect.exit(Effect.scoped(Effect.timeout(b.lock("/p/q", "read"), "100 millis")))
      expect(Exit.isFailure(timedOut) && Cause.failureOption(timedOut.cause).pipe(Option.map((e) => e._tag))).toEqual(
        Option.some("TimeoutException")
      )
      expect(yield* server.manager.stats).toEqual({ held: 1, pending: 0, nodes: 2 })
      yield* holder.release
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      expect(yield* b.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a server shutting down ends waiting and held requests with typed outcomes, and closes", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("lockserver-")
      const socket = nodePath.join(dir, "lockd.sock")
      const serverScope = yield* Scope.make()
      yield* LockServer.make({ socket, gracePeriod: 0 }).pipe(Scope.extend(serverScope))
      const manager = yield* LockManager.makeRemote({ socket })
      const holder = yield* holdLock(manager, "/s")
      const { lock } = yield* Deferred.await(holder.granted)
      const waiting = yield* Effect.fork(Effect.scoped(manager.lock("/s", "read")))
      yield* untilStats(manager, (s) => s.pending === 1)
      yield* within(5_000, "server shutdown", Scope.close(serverScope, Exit.void))
      expectRemoteError(yield* within(2_000, "waiting request", Fiber.await(waiting)), ["Disconnected"])
      yield* within(2_000, "lost", lock.lost)
      yield* holder.release
      expect(nodeFs.existsSync(socket)).toBe(false)
    })))

  it.live("in-process holders and remote ones share the server's table; ids are the server's", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server, socket } = yield* setup
      const remote = yield* LockManager.makeRemote({ socket })
      const scope = yield* Scope.make()
      const local = yield* server.manager.lock("/shared", "write").pipe(Scope.extend(scope))
      const waiting = yield* Effect.fork(Effect.scoped(Effect.map(remote.lock("/shared/x", "read"), (l) => l.id)))
      yield* untilStats(remote, (s) => s.pending === 1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* Fiber.join(waiting)).toBe(local.id + 1)
    })))

  it.live("the Client runs unchanged over layerRemote", () =>
    Effect.scoped(Effect.gen(function*() {
      const { dir, server, socket } = yield* setup
      const client = yield* clientOver(LockManager.layerRemote({ socket }))
      const file = nodePath.join(dir, "a", "doc.txt")
      yield* client.write(file, "one")
      yield* client.modify(file, (current) => Option.getOrThrow(current).length === 3 ? "three" : "?")
      yield* client.rename(file, nodePath.join(dir, "b.txt"))
      expect(yield* client.readString(nodePath.join(dir, "b.txt"))).toBe("three")
      expect(yield* client.collect(dir)).toEqual(expect.arrayContaining(["a", "b.txt"]))
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("invalid paths fail before any connection", () =>
    Effect.gen(function*() {
      const manager = yield* LockManager.makeRemote({ socket: "/nonexistent/lockd.sock" })
      const error = yield* Effect.flip(Effect.scoped(manager.lock("relative/path", "read")))
      expect(error._tag).toBe("InvalidPathError")
      const empty = yield* Effect.flip(manager.withLockAll([])(Effect.void))
      expect(empty._tag === "InvalidPathError" && empty.reason).toBe("EmptyPathSet")
    }).pipe(Effect.scoped))

  it.live("the remote lease: ensureHeld refuses once heartbeats go unanswered past the deadline", () =>
    Effect.scoped(Effect.gen(function*() {
      const { socket } = yield* setup
      // A proxy that forwards until told to stall (a silent network).
      let stalled = false
      const proxyPath = `${socket}.proxy`
      const proxy = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const p = Net.createServer((inbound) => {
            const outbound = Net.createConnection({ path: socket })
            inbound.on("data", (d) => stalled || outbound.write(d))
            outbound.on("data", (d) => stalled || inbound.write(d))
            inbound.on("close", () => outbound.destroy())
            outbound.on("close", () => inbound.destroy())
          })
          p.listen(proxyPath, () => {
            resume(Effect.succeed(p))
          })
        }),
        (p) =>
          Effect.async<void>((resume) => {
            p.close(() => resume(Effect.void))
          })
      )
      void proxy
      const manager = yield* LockManager.makeRemote({
        socket: proxyPath,
        heartbeatDeadline: "2 seconds",
        heartbeatInterval: "80 millis"
      })
      const lock = yield* manager.lock("/leased", "write")
      yield* lock.ensureHeld("test")
      const stalledAt = now()
      stalled = true
      yield* within(5_000, "lost", lock.lost)
      const lostAfter = now() - stalledAt
      // The last answered ping was sent one interval (80 ms) before the stall,
      // or a little more where the machine is loaded: not lost before the deadline less that.
      expect(lostAfter).toBeGreaterThan(1_500)
      // By its own deadline, not the default one (5 s).
      expect(lostAfter).toBeLessThan(4_000)
      expect((yield* Effect.flip(lock.ensureHeld("test")))._tag).toBe("LockLostError")
    })))
})
