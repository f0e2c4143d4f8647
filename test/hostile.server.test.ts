/**
 * The lock server against hostile neighbours: what is at its socket path, other
 * servers racing for that path, restarts that could repeat lock ids, peers
 * that flood it, and other local users.
 *
 * Tests that run as another user (uid 65534, through `setpriv`) need root;
 * elsewhere they are skipped with a printed reason.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Metric, Option, Queue, Schedule, Scope } from "effect"
import * as childProcess from "node:child_process"
import * as nodeFs from "node:fs"
import * as Net from "node:net"
import * as os from "node:os"
import * as nodePath from "node:path"
import { MAX_FRAME_BYTES } from "../src/internal/lockServer/framing.js"
import { MAX_OPEN_REQUESTS, PROTOCOL_VERSION } from "../src/internal/lockServer/protocol.js"
import { MAX_HANDSHAKING, REMEMBERED_RELEASES, SILENT_FOR } from "../src/internal/lockServer/server.js"
import * as LockManager from "../src/LockManager.js"
import * as LockServer from "../src/LockServer.js"
import * as PersistenceError from "../src/PersistenceError.js"
import { LockManager as PromiseLockManager } from "../src/promise.js"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import {
  type Child,
  killAll,
  type LockdOptions,
  remoteOptions,
  runLockd as runLockdFrom,
  startLockd as startLockdFrom,
  startWorker
} from "./fixtures/lock-processes.js"

let worker: Bundle | undefined
let race: Bundle | undefined
let flood: Bundle | undefined
let lockdBundle: Bundle | undefined

beforeAll(async () => {
  ;[worker, race, flood, lockdBundle] = await Promise.all([
    bundleFixture("./lock-worker.ts"),
    bundleFixture("./listen-race.ts"),
    bundleFixture("./flood.ts"),
    bundleFixture("../../src/bin/lockd.ts")
  ])
}, 60_000)

afterEach(killAll)

afterAll(() => {
  for (const bundle of [worker, race, flood, lockdBundle]) bundle?.remove()
})

/** lockd, bundled: these tests start it many times. */
const startLockd = (args: ReadonlyArray<string>, options: LockdOptions = {}) =>
  startLockdFrom(args, { ...options, bundle: lockdBundle!.file })
const runLockd = (args: ReadonlyArray<string>, options: LockdOptions = {}) =>
  runLockdFrom(args, { ...options, bundle: lockdBundle!.file })

const SECRET = "0123456789abcdef0123456789abcdef"

/** uid 65534 ("nobody"), for the tests with another local user. */
const NOBODY = 65534
const asAnotherUser = process.getuid?.() === 0
if (!asAnotherUser) console.log("skipping the tests with another user: they need root (setpriv)")

/** A temp directory, removed at the end of the scope; `shared`: others may enter it (mode 0755). */
const tempDir = (shared = false) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "hostile-server-")))
      if (shared) nodeFs.chmodSync(dir, 0o755)
      return dir
    }),
    (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
  )

/** Fails the test (instead of hanging it) when `effect` takes longer than `ms`. */
const within = <A, E, R>(ms: number, what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`${what}: no outcome within ${ms} ms`) })

/** A socket file nothing listens on, as a server that died leaves behind. */
const staleSocket = (path: string) =>
  Effect.async<void>((resume) => {
    const bound = `${path}.bound`
    const server = Net.createServer()
    server.listen(bound, () => {
      nodeFs.linkSync(bound, path)
      // Closing unlinks `bound`; the link at `path` stays, with nobody behind it.
      server.close(() => resume(Effect.void))
    })
  })

const remoteError = (exit: Exit.Exit<unknown, unknown>): PersistenceError.RemoteLockError => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  if (Option.isNone(failure) || !(failure.value instanceof PersistenceError.RemoteLockError)) {
    throw new Error(`expected a RemoteLockError, got ${exit}`)
  }
  return failure.value
}

const expectReason = (exit: Exit.Exit<unknown, unknown>, reason: PersistenceError.RemoteLockErrorReason) => {
  const error = remoteError(exit)
  expect(error.reason, error.message).toBe(reason)
  return error
}

/** A connection speaking the wire protocol by hand: lines out, messages in. */
const rawConnection = (target: { readonly path: string } | { readonly port: number }) =>
  Effect.acquireRelease(
    Effect.async<Net.Socket, Error>((resume) => {
      const socket = "path" in target ?
        Net.createConnection({ path: target.path }) :
        Net.createConnection({ port: target.port, host: "127.0.0.1" })
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.flatMap((socket) =>
    Effect.gen(function*() {
      const messages = yield* Queue.unbounded<unknown>()
      const closed = yield* Deferred.make<void>()
      let pending = ""
      socket.on("data", (data) => {
        pending += data.toString("utf8")
        const parts = pending.split("\n")
        pending = parts.pop()!
        for (const part of parts) messages.unsafeOffer(JSON.parse(part))
      })
      socket.on("error", () => {})
      socket.on("close", () => Deferred.unsafeDone(closed, Exit.void))
      return {
        send: (message: unknown) => Effect.sync(() => socket.write(JSON.stringify(message) + "\n")),
        sendRaw: (data: string) => Effect.sync(() => socket.write(data)),
        /** The next message from the server; fails if the connection closes first. */
        next: within(
          5_000,
          "a message from the server",
          Effect.raceFirst(
            Queue.take(messages),
            Effect.zipRight(Deferred.await(closed), Effect.fail(new Error("closed before answering")))
          )
        ),
        /** Completes when the server has closed the connection (bounded). */
        closed: within(5_000, "the server closes the connection", Deferred.await(closed))
      }
    })
  ))

/** Fails the test if the server closes `connection` within 300 ms. */
const stillOpen = (connection: { readonly closed: Effect.Effect<void, Error> }) =>
  Effect.flatMap(
    Effect.exit(Effect.timeout(connection.closed, "300 millis")),
    (exit) =>
      Effect.sync(() => expect(Exit.isFailure(exit) && Cause.isTimeoutException(Cause.squash(exit.cause))).toBe(true))
  )

const request = (id: number, tag: string, payload: unknown) => ({
  _tag: "Request",
  id: String(id),
  tag,
  payload,
  headers: []
})

const hello = (id = 1) =>
  request(id, "Hello", { version: PROTOCOL_VERSION, heartbeatDeadline: 60_000, nonce: "ab".repeat(32) })

/** A server of `maxConnections: 2` on a fresh socket (its path returned), one place taken by a client holding a lock. */
const onePlaceLeft = (secret: string | undefined) =>
  Effect.gen(function*() {
    const socket = nodePath.join(yield* tempDir(), "lockd.sock")
    const auth = secret === undefined ? {} : { secret }
    yield* LockServer.make({ socket, ...auth, gracePeriod: 0, maxConnections: 2, handshakeTimeout: "1 minute" })
    const ready = yield* LockManager.makeRemote({ socket, ...auth })
    yield* ready.lock("/a", "write")
    return socket
  })

/** A server on a fresh socket, a remote manager, and a write lock on `/kept` it holds. */
const serverWithKeptLock = Effect.gen(function*() {
  const socket = nodePath.join(yield* tempDir(), "lockd.sock")
  const server = yield* LockServer.make({ socket, gracePeriod: 0 })
  const manager = yield* LockManager.makeRemote({ socket })
  const lock = yield* manager.lock("/kept", "write")
  return { lock, manager, server, socket }
})

describe("the socket path: only a stale socket is ever replaced", () => {
  it.live(
    "lockd --socket on a regular file exits 1 with one line and leaves the file alone",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const file = nodePath.join(dir, "database.json")
        nodeFs.writeFileSync(file, "{\"users\":[]}")
        const { code, stderr, stdout } = yield* Effect.promise(() => runLockd(["--socket", file]))
        expect(code, stderr).toBe(1)
        expect(stdout).toBe("")
        const lines = stderr.trimEnd().split("\n")
        expect(lines).toHaveLength(1)
        expect(lines[0]).toMatch(/^lockd: .*could not listen: the path is a regular file, not a socket/)
        expect(nodeFs.readFileSync(file, "utf8")).toBe("{\"users\":[]}")
        expect(nodeFs.readdirSync(dir)).toEqual(["database.json"])
      })),
    60_000
  )

  it.live("a directory, symbolic links and a live socket are refused with ListenFailed; nothing changes", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const file = nodePath.join(dir, "file")
      nodeFs.writeFileSync(file, "data")
      nodeFs.mkdirSync(nodePath.join(dir, "directory"))
      nodeFs.symlinkSync(file, nodePath.join(dir, "link-to-file"))
      nodeFs.symlinkSync(nodePath.join(dir, "nowhere"), nodePath.join(dir, "dangling"))
      const live = nodePath.join(dir, "live.sock")
      const server = yield* LockServer.make({ socket: live, gracePeriod: 0 })
      nodeFs.symlinkSync(live, nodePath.join(dir, "link-to-socket"))
      const before = nodeFs.readdirSync(dir).sort()

      const cases: ReadonlyArray<readonly [string, RegExp]> = [
        ["directory", /the path is a directory, not a socket/],
        ["link-to-file", /the path is a symbolic link, not a socket/],
        ["dangling", /the path is a symbolic link, not a socket/],
        ["link-to-socket", /the path is a symbolic link, not a socket/],
        ["live.sock", /another server is listening there/]
      ]
      for (const [name, detail] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(LockServer.make({ socket: nodePath.join(dir, name) })))
        const error = expectReason(exit, "ListenFailed")
        expect(error.detail, name).toMatch(detail)
      }
      expect(nodeFs.readdirSync(dir).sort()).toEqual(before)
      expect(nodeFs.readFileSync(file, "utf8")).toBe("data")
      // The live server still serves.
      const manager = yield* LockManager.makeRemote({ socket: live })
      yield* manager.withLock("/still", "write")(Effect.void)
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a path too long for a socket, or for the private directory it is bound in first, is refused; nothing is left", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      // A Unix socket path holds at most 107 bytes (108 with the NUL).
      const nested = nodePath.join(dir, "d".repeat(100 - dir.length - 3))
      nodeFs.mkdirSync(nested)
      for (const socket of [nodePath.join(nested, "s"), nodePath.join(nested, "s".repeat(40))]) {
        const exit = yield* Effect.exit(Effect.scoped(LockServer.make({ socket, gracePeriod: 0 })))
        expect(expectReason(exit, "ListenFailed").detail).toMatch(/too long for a Unix socket/)
        expect(nodeFs.readdirSync(nested)).toEqual([])
      }
      expect(nodeFs.readdirSync(dir)).toEqual([nodePath.basename(nested)])
      // A path that fits with its private directory listens.
      const fits = nodePath.join(dir, "s")
      const server = yield* LockServer.make({ socket: fits, gracePeriod: 0 })
      yield* (yield* LockManager.makeRemote({ socket: fits })).withLock("/x", "write")(Effect.void)
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a stale socket is replaced; the socket is owner-only; it is removed on shutdown", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const path = nodePath.join(dir, "lockd.sock")
      yield* staleSocket(path)
      const scope = yield* Scope.make()
      const server = yield* LockServer.make({ socket: path, gracePeriod: 0 }).pipe(Scope.extend(scope))
      expect(server.address).toBe(`unix:${path}`)
      const stats = nodeFs.lstatSync(path)
      expect(stats.isSocket()).toBe(true)
      expect(stats.mode & 0o777).toBe(0o600)
      const manager = yield* LockManager.makeRemote({ socket: path })
      yield* manager.withLock("/x", "write")(Effect.void)
      // Nothing else was left in the directory (the private directory is gone).
      expect(nodeFs.readdirSync(dir)).toEqual(["lockd.sock"])
      yield* Scope.close(scope, Exit.void)
      expect(nodeFs.readdirSync(dir)).toEqual([])
    })))

  it.live("a server shutting down leaves a successor's socket alone", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const path = nodePath.join(dir, "lockd.sock")
      const first = yield* Scope.make()
      yield* LockServer.make({ socket: path, gracePeriod: 0 }).pipe(Scope.extend(first))
      // Someone moves the first server's socket away and a second server starts.
      nodeFs.renameSync(path, `${path}.old`)
      yield* LockServer.make({ socket: path, gracePeriod: 0 })
      yield* Scope.close(first, Exit.void)
      const manager = yield* LockManager.makeRemote({ socket: path })
      yield* manager.withLock("/x", "write")(Effect.void)
    })))
})

describe("exactly one server listens on a path", () => {
  it.live(
    "two servers in one process on a stale socket, 40 rounds: one listens, the other fails ListenFailed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        for (let round = 0; round < 40; round++) {
          const path = nodePath.join(dir, `r${round}.sock`)
          // Most rounds race for a stale socket (the take-over), some for a free path.
          if (round % 4 !== 3) yield* staleSocket(path)
          const scopes = [yield* Scope.make(), yield* Scope.make()]
          const exits = yield* Effect.all(
            scopes.map((scope) =>
              Effect.exit(LockServer.make({ socket: path, gracePeriod: 0 }).pipe(Scope.extend(scope)))
            ),
            { concurrency: "unbounded" }
          )
          const listening = exits.filter(Exit.isSuccess)
          expect(listening.length, `round ${round}: ${exits.map(String).join(", ")}`).toBe(1)
          const refused = remoteError(exits.find(Exit.isFailure)!)
          expect(refused.reason).toBe("ListenFailed")
          expect(refused.detail).toMatch(/another server is (listening|taking over)/)
          // The one that listens is the one at the path.
          const manager = yield* LockManager.makeRemote({ socket: path })
          yield* Effect.scoped(Effect.gen(function*() {
            yield* manager.lock("/x", "write")
            expect(yield* listening[0].value.manager.stats).toMatchObject({ held: 1 })
          }))
          for (const scope of scopes) yield* Scope.close(scope, Exit.void)
        }
      })),
    60_000
  )

  it.live(
    "three processes started on one stale socket at the same moment, 25 rounds: one listens",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const racers: ReadonlyArray<Child> = Array.from({ length: 3 }, () => startWorker(race!.file, []))
        yield* Effect.promise(() => Promise.all(racers.map((r) => r.waitFor(/^ready$/))))
        const tally = { listening: 0, refused: 0 }
        for (let round = 0; round < 25; round++) {
          const path = nodePath.join(dir, `r${round}.sock`)
          yield* staleSocket(path)
          const answers = racers.map((r) => r.waitFor(new RegExp(`^(listening|refused) ${round}\\b(.*)$`)))
          // The stale socket's server had no holders: no grace period.
          for (const r of racers) r.send(`listen ${round} ${JSON.stringify({ socket: path, gracePeriod: 0 })}`)
          const outcomes = yield* Effect.promise(() => Promise.all(answers))
          const listening = outcomes.filter((m) => m[1] === "listening")
          expect(listening.length, `round ${round}: ${outcomes.map((m) => m[0]).join(" | ")}`).toBe(1)
          for (const m of outcomes.filter((m) => m[1] === "refused")) {
            expect(m[2]).toMatch(/^ ListenFailed another server/)
          }
          tally.listening += listening.length
          tally.refused += outcomes.length - listening.length
          const manager = yield* LockManager.makeRemote({ socket: path })
          yield* within(5_000, "lock through the winner", manager.withLock("/x", "write")(Effect.void))
          const closed = racers.map((r) => r.waitFor(new RegExp(`^closed ${round}$`)))
          for (const r of racers) r.send(`close ${round}`)
          yield* Effect.promise(() => Promise.all(closed))
        }
        console.log(`3 processes x 25 rounds on a stale socket: ${tally.listening} listened, ${tally.refused} refused`)
      })),
    90_000
  )
})

describe("lock ids never repeat across restarts", () => {
  it.live("makeRemote: ids after a server restart are above every id before it", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const socket = nodePath.join(dir, "lockd.sock")
      const manager = yield* LockManager.makeRemote({ socket })
      const before: Array<number> = []
      for (let run = 0; run < 3; run++) {
        const scope = yield* Scope.make()
        // No grace period: every holder noticed the last shutdown (the sentinel below).
        const server = yield* LockServer.make({ socket, gracePeriod: 0 }).pipe(Scope.extend(scope))
        const ids = [
          yield* manager.withLock("/a", "write")((lock) => Effect.succeed(lock.id)),
          yield* server.manager.withLock("/a", "write")((lock) => Effect.succeed(lock.id)),
          yield* Effect.scoped(Effect.map(manager.lockAll(["/a", "/b"]), (lock) => lock.id))
        ]
        for (const id of ids) {
          expect(Number.isSafeInteger(id)).toBe(true)
          expect(id, `run ${run}: ${ids} after ${before}`).toBeGreaterThan(Math.max(0, ...before))
          before.push(id)
        }
        // A lock held across the shutdown tells when the client has noticed it.
        const sentinel = yield* manager.lock("/sentinel", "read").pipe(Scope.extend(scope))
        yield* Scope.close(scope, Exit.void)
        yield* within(5_000, "the client notices the shutdown", sentinel.lost)
      }
    })))

  it.live("the Promise facade over a remote manager: a stale id from before a restart releases nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const socket = nodePath.join(dir, "lockd.sock")
      const remote = yield* LockManager.makeRemote({ socket })
      // The facade takes a lock service; a remote one fails with RemoteLockError besides.
      const facade = PromiseLockManager.fromService(remote as unknown as LockManager.LockManagerService)

      const first = yield* Scope.make()
      yield* LockServer.make({ socket, gracePeriod: 0 }).pipe(Scope.extend(first))
      const a = yield* Effect.promise(() => facade.acquire("/a", "write"))
      // A lock held across the shutdown tells when the client has noticed it.
      const sentinel = yield* remote.lock("/sentinel", "read").pipe(Scope.extend(first))
      yield* Scope.close(first, Exit.void)
      yield* within(5_000, "the client notices the shutdown", sentinel.lost)

      // No grace period: the one holder noticed the shutdown.
      const server = yield* LockServer.make({ socket, gracePeriod: 0 })
      const b = yield* Effect.promise(() => facade.acquire("/b", "write"))
      expect(b).not.toBe(a)
      // The holder of /a, not knowing its lock went with the old server, releases it.
      facade.release(a)
      // /b stays held: another client cannot take it.
      const other = yield* LockManager.makeRemote({ socket })
      const attempt = yield* Effect.exit(Effect.scoped(Effect.timeout(other.lock("/b", "write"), "300 millis")))
      expect(Exit.isFailure(attempt) && Cause.isFailType(attempt.cause) && attempt.cause.error._tag).toBe(
        "TimeoutException"
      )
      expect(yield* server.manager.stats).toMatchObject({ held: 1 })
      // Released with its own id, it is free again.
      facade.release(b)
      yield* within(5_000, "/b after its release", other.withLock("/b", "write")(Effect.void))
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))
})

describe("a restarted server: holders of the one that died may still trust their leases", () => {
  const wallClock = () => performance.timeOrigin + performance.now()
  const untilPending = (server: LockServer.LockServerService, pending: number) =>
    within(
      5_000,
      `${pending} pending`,
      Effect.repeat(server.manager.stats, { until: (stats) => stats.pending >= pending, schedule: Schedule.spaced(5) })
    )

  it.live(
    "kill -9 and restart while a holder is busy: it checks its lock and commits before anyone else is granted",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const socket = nodePath.join(yield* tempDir(), "lockd.sock")
        // The holder asks for 60 s and gets the server's 10 s: it pings every
        // 2 s, so 7 s of work stays within its lease, and leaves the new
        // server (started while it works) seconds to come up on a loaded machine.
        const limits = ["--max-heartbeat-deadline", "10s"]
        const first = yield* Effect.promise(() => startLockd(["--socket", socket, ...limits, "--grace-period", "0"]))
        const holder = startWorker(worker!.file, [
          "hold",
          JSON.stringify({ socket, heartbeatDeadline: 60_000 }),
          "/doc"
        ])
        yield* Effect.promise(() => holder.waitFor(/^holding \d+$/))
        holder.send("busy 7000")
        yield* Effect.promise(() => holder.waitFor(/^busy$/))
        first.signal("SIGKILL")
        yield* Effect.promise(() => first.closed)
        // Its default grace period: the maximum deadline, which it says.
        const restarted = yield* Effect.promise(() =>
          startLockd(["--socket", socket, ...limits], { defaultGracePeriod: true })
        )
        const restartedAt = wallClock()
        const manager = yield* LockManager.makeRemote({ socket })
        const grantedAt = yield* within(
          25_000,
          "the lock from the new server",
          manager.withLock("/doc", "write")(Effect.sync(wallClock))
        )
        const [, verdict, at] = yield* Effect.promise(() => holder.waitFor(/^(held|refused \w+) ([\d.]+)$/))
        // The case that matters: the holder still within its lease when it
        // checks, after the new server was up (else it proves nothing).
        expect(verdict).toBe("held")
        expect(Number(at), "the restart took longer than the holder's work").toBeGreaterThan(restartedAt)
        // Its commit comes first. (`grantedAt` is when the grant arrived here,
        // a few milliseconds after the server made it; without the grace
        // period the grant came seconds before the check.)
        expect(Number(at)).toBeLessThan(grantedAt)
        expect(restarted.output()).toContain("lockd: grace period: granting locks in 10000 ms")
      })),
    60_000
  )

  it.live("during the grace period: requests wait and are granted in order after it, bad ones fail at once", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      const pendingBefore = (yield* Metric.value(LockManager.locksPending)).value
      const started = performance.now()
      const server = yield* LockServer.make({ socket, gracePeriod: "1 second" })
      const remote = yield* LockManager.makeRemote({ socket })
      const granted: Array<string> = []
      const take = (who: string, manager: LockManager.LockManagerService<unknown>) =>
        manager.withLock("/a", "write")((lock) =>
          Effect.sync(() => {
            granted.push(who)
            return { at: performance.now(), id: lock.id }
          })
        )
      const first = yield* Effect.fork(take("remote", remote))
      yield* untilPending(server, 1)
      const second = yield* Effect.fork(take("local", server.manager))
      yield* untilPending(server, 2)
      const third = yield* Effect.fork(take("remote again", remote))
      yield* untilPending(server, 3)
      // While they wait: a bad request fails, stats answer, a timeout ends a wait.
      const bad = yield* Effect.flip(Effect.scoped(server.manager.lock("relative/path", "write")))
      expect(bad._tag).toBe("InvalidPathError")
      const badAll = yield* Effect.flip(Effect.scoped(server.manager.lockAll(["/ok", ""])))
      expect(badAll._tag).toBe("InvalidPathError")
      const gaveUp = yield* Effect.exit(Effect.timeout(Effect.scoped(server.manager.lock("/b", "read")), "50 millis"))
      expect(Exit.isFailure(gaveUp)).toBe(true)
      expect(granted).toEqual([])
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 3, nodes: 0 })
      // The gauge counts them too.
      expect((yield* Metric.value(LockManager.locksPending)).value - pendingBefore).toBe(3)

      const results = [yield* Fiber.join(first), yield* Fiber.join(second), yield* Fiber.join(third)]
      expect(granted).toEqual(["remote", "local", "remote again"])
      expect(results[0].id < results[1].id && results[1].id < results[2].id).toBe(true)
      expect(results[0].at - started).toBeGreaterThanOrEqual(1_000)
      // Open for good: a lock now is granted without waiting for anything.
      expect(yield* within(5_000, "a lock after the grace period", take("later", remote))).toBeDefined()
    })))

  it.live("shut down during its grace period: in-process waiters are granted, nothing waits for good", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      const scope = yield* Scope.make()
      const server = yield* LockServer.make({ socket, gracePeriod: "1 hour" }).pipe(Scope.extend(scope))
      const waiter = yield* Effect.fork(server.manager.withLock("/a", "write")(Effect.succeed("granted")))
      yield* untilPending(server, 1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* within(5_000, "the waiter after the shutdown", Fiber.join(waiter))).toBe("granted")
      expect(yield* within(5_000, "a lock after the shutdown", server.manager.withLock("/a", "read")(Effect.void)))
        .toBeUndefined()
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("deadline limits a server cannot mean are refused: ListenFailed; lockd exits 1", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      for (
        const limits of [
          { maxHeartbeatDeadline: "50 millis" },
          { maxHeartbeatDeadline: Duration.infinity },
          { gracePeriod: "30 days" }
        ] satisfies ReadonlyArray<Partial<LockServer.ListenOptions>>
      ) {
        const exit = yield* Effect.exit(Effect.scoped(LockServer.make({ socket: nodePath.join(dir, "s"), ...limits })))
        expect(expectReason(exit, "ListenFailed").detail).toMatch(
          /^options\.(maxHeartbeatDeadline|gracePeriod): expected a duration from (100|0) ms to 2147483647 ms, got/
        )
      }
      const lockd = yield* Effect.promise(() =>
        runLockd(["--socket", nodePath.join(dir, "s"), "--max-heartbeat-deadline", "50"])
      )
      expect(lockd.code).toBe(1)
      expect(lockd.stderr).toMatch(/^lockd: .*maxHeartbeatDeadline: expected a duration from 100 ms/)
      expect(nodeFs.readdirSync(dir)).toEqual([])
    })))

  // From plain JavaScript: NaN and negative durations decoded as 0 (no grace
  // period, a handshake deadline that dropped clients at random), text that
  // is no duration threw, an empty host listened on every interface.
  it.live("options a server cannot mean are refused before it listens: ListenFailed naming the option", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir()
      const socket = nodePath.join(dir, "s")
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "options"],
        [{}, "options"],
        [{ socket: "" }, "options.socket"],
        [{ socket: `${socket}\0x` }, "options.socket"],
        [{ socket, port: 0 }, "options"],
        [{ port: 0, mode: 0o600 }, "options.mode"],
        [{ port: 0, host: "" }, "options.host"],
        [{ port: 0, host: "127.0.0.1\0x" }, "options.host"],
        [{ port: 0, host: 127 }, "options.host"],
        ...[-1, NaN, 1.5, 65536, Infinity, "0", null].map((port) => [{ port }, "options.port"] as const),
        ...[NaN, -1, "-1 seconds", "soon", null, [1, -5]].map((gracePeriod) =>
          [{ socket, gracePeriod }, "options.gracePeriod"] as const
        ),
        ...[NaN, -1, 0, "x", Duration.infinity].map((handshakeTimeout) =>
          [{ socket, handshakeTimeout }, "options.handshakeTimeout"] as const
        ),
        [{ socket, maxHeartbeatDeadline: NaN }, "options.maxHeartbeatDeadline"],
        ...[0, -1, 1.5, "3", NaN, Infinity, null].map((maxConnections) =>
          [{ socket, maxConnections }, "options.maxConnections"] as const
        )
      ]
      for (const [options, argument] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(LockServer.make(options as LockServer.ListenOptions)))
        const error = expectReason(exit, "ListenFailed")
        expect(error.detail, JSON.stringify(options)).toMatch(new RegExp(`^${argument.replace(".", "\\.")}: `))
      }
      expect(nodeFs.readdirSync(dir)).toEqual([])
      // lockd reads --port as decimal digits: "" and " " were a random port, 0x10 was 16.
      for (const port of ["", " ", "0x10", "1e3", "+5", "65536"]) {
        const lockd = yield* Effect.promise(() => runLockd(["--port", port]))
        expect(lockd.code, port).toBe(2)
        expect(lockd.stderr).toMatch(/^--port must be an integer in 0\.\.65535/)
      }
      const lockd = yield* Effect.promise(() => runLockd(["--port", "0", "--host", ""]))
      expect(lockd.code).toBe(1)
      expect(lockd.stderr).toMatch(/options\.host: expected a non-empty string/)
    })))

  it.effect("options a remote manager cannot mean are refused when it is built: InvalidArgumentError", () =>
    Effect.gen(function*() {
      const socket = "/nonexistent/s"
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "options"],
        [{}, "options"],
        [{ socket: "" }, "options.socket"],
        [{ port: "7420" }, "options.port"],
        ...[NaN, -1, 0, "x", null, Duration.infinity].map((connectTimeout) =>
          [{ socket, connectTimeout }, "options.connectTimeout"] as const
        ),
        ...[NaN, -1, "x"].map((heartbeatDeadline) =>
          [{ socket, heartbeatDeadline }, "options.heartbeatDeadline"] as const
        ),
        ...[NaN, -1, 0, null].map((heartbeatInterval) =>
          [{ socket, heartbeatInterval }, "options.heartbeatInterval"] as const
        )
      ]
      for (const [options, argument] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(LockManager.makeRemote(options as LockManager.RemoteOptions)))
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        expect(error, JSON.stringify(options)).toMatchObject({ _tag: "InvalidArgumentError", argument })
      }
      // An infinite heartbeat deadline still means "the longest there is".
      const built = yield* Effect.exit(
        Effect.scoped(LockManager.makeRemote({ socket, heartbeatDeadline: Duration.infinity }))
      )
      expect(Exit.isSuccess(built)).toBe(true)
    }))

  it.live("a client asking for an infinite deadline gets the server's maximum", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      yield* LockServer.make({ socket, gracePeriod: 0 })
      const manager = yield* LockManager.makeRemote({ socket, heartbeatDeadline: Duration.infinity })
      const lock = yield* within(5_000, "a lock", manager.lock("/a", "write"))
      yield* lock.ensureHeld("test")
    })))

  it.live("the server bounds the heartbeat deadline: told in Hello, applied to a silent peer", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      yield* LockServer.make({ socket, gracePeriod: 0, maxHeartbeatDeadline: "300 millis" })
      const peer = yield* rawConnection({ path: socket })
      yield* peer.send(hello())
      expect(yield* peer.next).toMatchObject({
        _tag: "Exit",
        exit: { _tag: "Success", value: { version: PROTOCOL_VERSION, heartbeatDeadline: 300 } }
      })
      // It asked for 60 s; it is dropped after 300 ms of silence (`closed` waits at most 5 s).
      yield* peer.closed
    })))

  it.live("a client given a shorter deadline than it asked for pings often enough to keep its lock", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      const server = yield* LockServer.make({ socket, gracePeriod: 0, maxHeartbeatDeadline: "1 second" })
      // Alone it would ping every 12 s.
      const manager = yield* LockManager.makeRemote({ socket, heartbeatDeadline: "60 seconds" })
      const lock = yield* manager.lock("/kept", "write")
      // Pinging at its share of 1 s (200 ms), its lease survives the event
      // loop stalling for 400 ms at any moment; pinging only when the lease
      // is about to run out, it would not.
      for (let round = 0; round < 6; round++) {
        yield* Effect.sleep(round * 37)
        const until = Date.now() + 400
        while (Date.now() < until) {
          // a stall
        }
        yield* lock.ensureHeld(`round ${round}`)
      }
      expect(yield* server.manager.stats).toMatchObject({ held: 1 })
    })))
})

describe("hostile connections", () => {
  it.live(
    `connections in their handshake are bounded: past ${MAX_HANDSHAKING} silent ones are dropped first, and a client still locks`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        const socket = nodePath.join(yield* tempDir(), "lockd.sock")
        // A handshake deadline far beyond the test: only the bound can drop these.
        const server = yield* LockServer.make({
          socket,
          secret: SECRET,
          gracePeriod: 0,
          handshakeTimeout: "10 minutes"
        })
        // The oldest connection has sent its Hello and has its challenge, as an honest client one round trip in.
        const talking = yield* rawConnection({ path: socket })
        yield* talking.send(hello())
        expect(yield* talking.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Success" } })
        const extra = 10
        const closed: Array<number> = []
        yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const peers: Array<Net.Socket> = []
            for (let i = 0; i < MAX_HANDSHAKING - 1 + extra; i++) {
              const peer = Net.createConnection({ path: socket })
              peer.on("error", () => {})
              peer.once("close", () => closed.push(i))
              peers.push(peer)
              // One at a time: the server accepts them in this order.
              await new Promise((resolve) => peer.once("connect", resolve))
            }
            return peers
          }),
          (peers) => Effect.sync(() => peers.forEach((peer) => peer.destroy()))
        )
        const dropped = (n: number) => Array.from({ length: n }, (_, i) => i)
        yield* within(
          5_000,
          `the ${extra} oldest silent ones dropped`,
          Effect.repeat(Effect.sync(() => closed.length), {
            until: (n) => n >= extra,
            schedule: Schedule.spaced("20 millis")
          })
        )
        expect(closed.sort((a, b) => a - b)).toEqual(dropped(extra))
        // The one that spoke stays: silent connections never push it out.
        yield* stillOpen(talking)
        // An honest client completes its handshake among them (dropping the next oldest silent one) and locks.
        const manager = yield* LockManager.makeRemote({ socket, secret: SECRET })
        const lock = yield* within(5_000, "a lock among the silent connections", manager.lock("/a", "write"))
        expect(lock.paths).toEqual(["/a"])
        yield* Effect.sleep("100 millis")
        expect(closed.sort((a, b) => a - b)).toEqual(dropped(extra + 1))
        expect(yield* server.manager.stats).toMatchObject({ held: 1, pending: 0 })
      })),
    60_000
  )

  it.live("connectTimeout bounds every attempt together: a connection closed late in the handshake is not followed by a whole new timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      // The first connection is closed half way to the client's deadline (late
      // enough that a retry with a whole timeout of its own would be seen, early
      // enough that the retry is accepted on a loaded machine); later ones are kept silent.
      const timeout = 5_000
      const sockets: Array<Net.Socket> = []
      const server = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          let accepted = 0
          const server = Net.createServer((socket) => {
            sockets.push(socket)
            socket.on("error", () => {})
            if (accepted++ === 0) setTimeout(() => socket.destroy(), timeout / 2)
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => (sockets.forEach((socket) => socket.destroy()), server.close()))
      )
      const port = (server.address() as Net.AddressInfo).port
      const manager = yield* LockManager.makeRemote({ port, connectTimeout: timeout })
      const started = performance.now()
      const exit = yield* within(15_000, "the connection attempts", Effect.exit(manager.lock("/a", "write")))
      const elapsed = performance.now() - started
      // The server closed the first attempt; the one after it timed out: reported as the closing, tried again.
      expect(expectReason(exit, "Disconnected").detail).toMatch(/\(tried again for 5000 ms\)$/)
      // One deadline for all attempts (a second attempt with a whole timeout of its own ended at about 7.5 s).
      expect(elapsed).toBeGreaterThanOrEqual(timeout - 50)
      expect(elapsed).toBeLessThan(timeout + 2_000)
      expect(sockets.length).toBeGreaterThanOrEqual(2)
    })))

  it.live("a Unix socket whose backlog is full (EAGAIN) is tried again within connectTimeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "busy.sock")
      // A listener that accepts nothing (until it is killed): its backlog fills, and later connects fail with EAGAIN.
      const busy = childProcess.spawn(process.execPath, [
        "-e",
        `require("net").createServer().listen({ path: ${JSON.stringify(socket)}, backlog: 1 }, () => {
          console.log("ready"); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000) })`
      ], { stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => busy.kill("SIGKILL")))
      yield* Effect.promise(() => new Promise((resolve) => busy.stdout!.once("data", resolve)))
      const fillers: Array<Net.Socket> = []
      yield* Effect.addFinalizer(() => Effect.sync(() => fillers.forEach((filler) => filler.destroy())))
      let refused = false
      while (!refused && fillers.length < 64) {
        const filler = Net.createConnection({ path: socket })
        fillers.push(filler)
        refused = yield* Effect.async<boolean>((resume) => {
          filler.once("connect", () => resume(Effect.succeed(false)))
          filler.once("error", (error) => resume(Effect.succeed((error as NodeJS.ErrnoException).code === "EAGAIN")))
        })
      }
      expect(refused).toBe(true)
      const manager = yield* LockManager.makeRemote({ socket, connectTimeout: "1 second" })
      const started = performance.now()
      const exit = yield* within(5_000, "the attempts", Effect.exit(manager.lock("/a", "write")))
      expect(performance.now() - started).toBeGreaterThanOrEqual(900)
      const error = remoteError(exit)
      expect(error.detail).toMatch(/EAGAIN.*\(tried again for 1000 ms\)$/)
    })))

  it.live("a manager shut down while it tries to connect: its callers fail with Disconnected, not an interruption", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      yield* LockServer.make({ socket, gracePeriod: 0, maxConnections: 1 })
      const holder = yield* LockManager.makeRemote({ socket })
      yield* holder.lock("/a", "write")
      const scope = yield* Scope.make()
      const manager = yield* LockManager.makeRemote({ socket, connectTimeout: "30 seconds" }).pipe(Scope.extend(scope))
      // A caller outside the manager's scope, waiting for the connection.
      const caller = yield* Effect.forkDaemon(Effect.scoped(manager.lock("/b", "write")))
      yield* Effect.sleep("300 millis")
      yield* Scope.close(scope, Exit.void)
      const exit = yield* within(5_000, "the caller's outcome", Fiber.await(caller))
      expect(expectReason(exit, "Disconnected").detail).toBe("the lock manager was shut down")
    })))

  it.live("a peer of another protocol version is dropped once it has its answer", () =>
    Effect.scoped(Effect.gen(function*() {
      const { lock, socket } = yield* serverWithKeptLock
      const peer = yield* rawConnection({ path: socket })
      yield* peer.send(request(1, "Hello", { version: 999, heartbeatDeadline: 60_000, nonce: "ab".repeat(32) }))
      expect(yield* peer.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Failure" } })
      yield* peer.closed
      yield* lock.ensureHeld("after the peer was dropped")
    })))

  it.live(`at maxConnections a connection silent for less than ${SILENT_FOR} ms keeps its place; then a newer one takes it`, () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = yield* onePlaceLeft(undefined)
      // Just connected, as an honest client whose Hello has not arrived yet.
      const young = yield* rawConnection({ path: socket })
      const newer = yield* rawConnection({ path: socket })
      yield* newer.closed
      yield* stillOpen(young)
      yield* Effect.sleep(SILENT_FOR)
      const later = yield* rawConnection({ path: socket })
      yield* young.closed
      yield* stillOpen(later)
    })))

  it.live("at maxConnections a client that has spoken keeps its place: a newer connection is refused, not it", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = yield* onePlaceLeft(SECRET)
      // Halfway through its handshake: it has its challenge.
      const talking = yield* rawConnection({ path: socket })
      yield* talking.send(hello())
      expect(yield* talking.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Success" } })
      const newer = yield* rawConnection({ path: socket })
      yield* newer.closed
      yield* stillOpen(talking)
    })))

  it.live("maxConnections: past it a new connection is refused, unless one in its handshake can make room", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      yield* LockServer.make({ socket, gracePeriod: 0, maxConnections: 2 })
      const first = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(first, Exit.void))
      const a = yield* LockManager.makeRemote({ socket }).pipe(Scope.extend(first))
      yield* a.lock("/a", "write").pipe(Scope.extend(first))
      const b = yield* LockManager.makeRemote({ socket })
      yield* b.lock("/b", "write")
      // Two connections past their handshake: a third is closed at once, and its client tries
      // again until its connectTimeout has passed.
      const c = yield* LockManager.makeRemote({ socket, connectTimeout: "1 second" })
      const started = performance.now()
      const refused = yield* within(4_000, "the third connection refused", Effect.exit(c.lock("/c", "write")))
      expectReason(refused, "Disconnected")
      expect(performance.now() - started).toBeGreaterThanOrEqual(900)
      const raw = yield* rawConnection({ path: socket })
      yield* raw.closed
      // A client waiting for room gets in when a connection closes.
      const waiting = yield* Effect.fork(
        LockManager.makeRemote({ socket, connectTimeout: "10 seconds" }).pipe(
          Effect.flatMap((d) => d.lock("/d", "write")),
          Effect.scoped
        )
      )
      yield* Effect.sleep("500 millis")
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* Scope.close(first, Exit.void)
      yield* within(5_000, "the waiting client's lock", Fiber.join(waiting))
      // A silent connection takes the free place; once it has been silent for SILENT_FOR, a client's
      // connection makes room by dropping it.
      yield* Effect.sleep("100 millis")
      const silent = yield* rawConnection({ path: socket })
      yield* Effect.sleep(SILENT_FOR + 100)
      yield* c.lock("/c", "write")
      yield* silent.closed
    })))

  it.live(
    "64 connections sending endless lines (32 before, 32 after the handshake): all dropped, a client keeps its lock",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const socket = nodePath.join(dir, "lockd.sock")
        yield* Effect.acquireRelease(
          Effect.promise(() => startLockd(["--socket", socket])),
          (server) => Effect.promise(() => (server.signal("SIGTERM"), server.closed))
        )
        const deadline = 2_000
        const manager = yield* LockManager.makeRemote({
          socket,
          heartbeatDeadline: deadline,
          heartbeatInterval: 200
        })
        const lock = yield* manager.lock("/held", "write")

        const bytes = String(16 * 1024 * 1024)
        const floods = [
          startWorker(flood!.file, [socket, "32", bytes, "raw"]),
          startWorker(flood!.file, [socket, "32", bytes, "hello"])
        ]
        const flooding = yield* Effect.fork(
          Effect.promise(() => Promise.all(floods.map((f) => f.waitFor(/^done$/, 60_000))))
        )
        // A well-behaved client keeps working meanwhile: each round trip well within its deadline.
        let worst = 0
        let rounds = 0
        while (Option.isNone(yield* Fiber.poll(flooding)) || rounds < 20) {
          const started = performance.now()
          yield* within(
            deadline,
            `round trip ${rounds} during the flood`,
            manager.withLock("/probe", "write")(Effect.void)
          )
          worst = Math.max(worst, performance.now() - started)
          rounds++
        }
        yield* Fiber.join(flooding)
        console.log(`64 flooding connections: ${rounds} round trips meanwhile, the slowest ${worst.toFixed(1)} ms`)

        yield* lock.ensureHeld("after the flood")
        for (const f of floods) {
          const lines = f.output().split("\n").filter((line) => /^(dropped|survived) /.test(line))
          expect(lines).toHaveLength(32)
          for (const line of lines) expect(line).toMatch(/^dropped /)
        }
        // The server holds this client's lock and nothing of the flood.
        expect(yield* manager.stats).toMatchObject({ held: 1, pending: 0 })
      })),
    90_000
  )

  it.live(
    "a peer that sends and never reads its answers is dropped once they pile up; other clients keep their locks",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { lock, server, socket } = yield* serverWithKeptLock
        const peer = yield* Effect.acquireRelease(
          Effect.sync(() => Net.createConnection({ path: socket })),
          (peer) => Effect.sync(() => peer.destroy())
        )
        peer.on("error", () => {})
        const closed = Effect.async<void>((resume) => {
          peer.once("close", () => resume(Effect.void))
        })
        // The handshake is answered, then the peer stops reading and sends pings
        // as fast as the server takes them: each is answered with a pong.
        yield* Effect.async<void>((resume) => {
          peer.once("connect", () => peer.write(JSON.stringify(hello()) + "\n"))
          peer.once("data", () => resume(Effect.void))
        })
        peer.pause()
        const pings = Buffer.from((JSON.stringify({ _tag: "Ping" }) + "\n").repeat(4_000))
        let sent = 0
        const pump = () => {
          while (!peer.destroyed && sent < 100 * MAX_FRAME_BYTES) {
            sent += pings.length
            if (!peer.write(pings)) return void peer.once("drain", pump)
          }
        }
        pump()
        yield* within(60_000, "the server drops the peer", closed)
        // Pongs of about 16 bytes: the server kept a bounded backlog, far below what was sent.
        expect(sent).toBeLessThan(100 * MAX_FRAME_BYTES)
        yield* lock.ensureHeld("after the peer was dropped")
        expect(yield* server.manager.stats).toMatchObject({ held: 1, pending: 0 })
      })),
    90_000
  )

  it.live("a request above the frame bound (paths, or paths and modes) fails RequestTooLarge without sending; the connection and its locks stay", () =>
    Effect.scoped(Effect.gen(function*() {
      const { lock, manager, server } = yield* serverWithKeptLock
      const huge = Array.from({ length: 5 }, (_, i) => `/${String(i).repeat(MAX_FRAME_BYTES / 4)}`)
      const exit = yield* Effect.exit(manager.withLockAll(huge)(Effect.void))
      expectReason(exit, "RequestTooLarge")
      // Paths that fit alone, with a read mode each that the frame carries too.
      const count = 350_000
      const paths = Array.from({ length: count }, (_, i) => `/d${String(i).padStart(6, "0")}`)
      expect(Buffer.byteLength(JSON.stringify(paths))).toBeLessThan(MAX_FRAME_BYTES)
      const reads = paths.map((path) => [path, "read"] as const)
      expectReason(yield* Effect.exit(manager.withLockAll(reads)(Effect.void)), "RequestTooLarge")
      yield* lock.ensureHeld("after the refused requests")
      expect(yield* server.manager.stats).toMatchObject({ held: 1, pending: 0 })
    })))

  it.live(
    "a Release ahead of its Acquire ends it ungranted; Releases naming no live request are remembered only up to a bound",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { lock, server, socket } = yield* serverWithKeptLock
        const peer = yield* rawConnection({ path: socket })
        yield* peer.send(hello())
        expect(yield* peer.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Success" } })
        const acquire = (id: number, ticket: number, path: string) =>
          peer.send(request(id, "Acquire", { ticket, mode: "write", paths: [path], all: false }))
        const released = (id: number) => ({ _tag: "Exit", requestId: String(id), exit: { _tag: "Success" } })

        // Released first: the request ends at once with no grant.
        yield* peer.send(request(2, "Release", { ticket: 1 }))
        expect(yield* peer.next).toMatchObject(released(2))
        yield* acquire(3, 1, "/early")
        expect(yield* peer.next).toMatchObject(released(3))

        // One more than the bound, for tickets no request ever had: the oldest is forgotten.
        const first = 10
        const count = REMEMBERED_RELEASES + 1
        yield* peer.sendRaw(
          Array.from({ length: count }, (_, i) =>
            JSON.stringify(request(100 + i, "Release", { ticket: first + i })) + "\n").join("")
        )
        for (let i = 0; i < count; i++) {
          expect(yield* peer.next).toMatchObject(released(100 + i))
        }
        yield* acquire(4, first, "/forgotten")
        expect(yield* peer.next).toMatchObject({
          _tag: "Chunk",
          requestId: "4",
          values: [{ mode: "write", paths: ["/forgotten"] }]
        })
        yield* acquire(5, first + count - 1, "/remembered")
        expect(yield* peer.next).toMatchObject(released(5))

        yield* lock.ensureHeld("after the Releases")
        expect(yield* server.manager.stats).toMatchObject({ held: 2, pending: 0 })
      }))
  )

  // Each open request costs the server tens of kilobytes: a peer that kept
  // sending Acquires grew its memory by gigabytes.
  it.live(
    "a connection's open requests are bounded: the server refuses past the bound, the client refuses itself",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { lock, manager, server, socket } = yield* serverWithKeptLock
        const pendingIs = (n: number) =>
          within(
            30_000,
            `${n} pending requests`,
            Effect.repeat(server.manager.stats, {
              until: (stats) => stats.pending === n,
              schedule: Schedule.spaced("20 millis")
            })
          )
        const extra = 5
        yield* Effect.scoped(Effect.gen(function*() {
          const peer = yield* rawConnection({ path: socket })
          yield* peer.send(hello())
          expect(yield* peer.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Success" } })
          yield* peer.sendRaw(
            Array.from({ length: MAX_OPEN_REQUESTS + extra }, (_, i) =>
              JSON.stringify(
                request(10 + i, "Acquire", { ticket: 10 + i, mode: "read", paths: ["/kept"], all: false })
              ) +
              "\n").join("")
          )
          for (let i = 0; i < extra; i++) {
            const answer = yield* peer.next
            expect(answer).toMatchObject({ _tag: "Exit", exit: { _tag: "Failure" } })
            expect(JSON.stringify(answer)).toContain(`has ${MAX_OPEN_REQUESTS} requests open`)
          }
          yield* pendingIs(MAX_OPEN_REQUESTS)
        }))
        // Its requests went with the connection.
        yield* pendingIs(0)
        // The library's client: the kept lock is one of its open requests.
        const waiters = yield* Effect.forkScoped(
          Effect.forEach(
            Array.from({ length: MAX_OPEN_REQUESTS - 1 }),
            () => manager.withLock("/kept", "read")(Effect.void),
            { concurrency: "unbounded", discard: true }
          )
        )
        yield* pendingIs(MAX_OPEN_REQUESTS - 1)
        const refused = expectReason(yield* Effect.exit(manager.withLock("/other", "write")(Effect.void)), "Rejected")
        expect(refused.detail).toContain(`${MAX_OPEN_REQUESTS} requests open`)
        yield* lock.ensureHeld("after the refusals")
        yield* Fiber.interrupt(waiters)
        yield* pendingIs(0)
        // Once they ended, it takes requests again.
        yield* within(5_000, "a lock after the waiters left", manager.withLock("/other", "write")(Effect.void))
        // Many requests started at once, with the scheduler switching fibers
        // often: each counts from its check, so none gets past the client's own
        // bound to meet the server's refusal.
        yield* lock.ensureHeld("before the burst")
        const burst = yield* Effect.scoped(
          Effect.forEach(
            Array.from({ length: MAX_OPEN_REQUESTS + 50 }, (_, i) => i),
            (i) =>
              Effect.exit(manager.lock(`/burst/${i}`, "write")).pipe(
                Effect.map((exit) =>
                  Exit.isSuccess(exit) ?
                    "held" :
                    Option.match(Cause.failureOption(exit.cause), {
                      onNone: () => "no typed error",
                      onSome: (e) => e._tag === "RemoteLockError" ? `RemoteLockError ${e.reason}` : e._tag
                    })
                )
              ),
            { concurrency: "unbounded" }
          ).pipe(Effect.withMaxOpsBeforeYield(30))
        )
        const counts: Record<string, number> = {}
        for (const outcome of burst) counts[outcome] = (counts[outcome] ?? 0) + 1
        // The kept lock is one of the connection's requests.
        expect(counts).toEqual({ held: MAX_OPEN_REQUESTS - 1, "RemoteLockError Rejected": 51 })
      })),
    60_000
  )

  it.live("garbage after the handshake, or a request before it, drops that connection only", () =>
    Effect.scoped(Effect.gen(function*() {
      const { lock, server, socket } = yield* serverWithKeptLock

      const early = yield* rawConnection({ path: socket })
      yield* early.send(request(1, "Acquire", { ticket: 1, mode: "write", paths: ["/x"], all: false }))
      yield* early.closed

      for (const garbage of ["null\n", "5\n", "\"x\"\n", "[]\n", "{}\n"]) {
        const peer = yield* rawConnection({ path: socket })
        yield* peer.send(hello())
        expect(yield* peer.next).toMatchObject({ _tag: "Exit", exit: { _tag: "Success" } })
        yield* peer.sendRaw(garbage)
        yield* peer.closed
      }
      yield* lock.ensureHeld("after the garbage")
      expect(yield* server.manager.stats).toMatchObject({ held: 1, pending: 0 })
    })))
})

describe("authentication with a shared secret", () => {
  const serverWith = (secret: string | undefined) =>
    LockServer.make(secret === undefined ? { port: 0, gracePeriod: 0 } : { port: 0, gracePeriod: 0, secret }).pipe(
      Effect.map((server) => ({ server, port: server.port! }))
    )

  it.live("the right secret works; none or another fails Unauthorized and takes nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port, server } = yield* serverWith(SECRET)
      const good = yield* LockManager.makeRemote({ port, secret: SECRET })
      const id = yield* good.withLock("/a", "write")((lock) => Effect.succeed(lock.id))
      expect(id).toBeGreaterThan(0)

      const none = yield* LockManager.makeRemote({ port })
      const noneError = expectReason(yield* Effect.exit(Effect.scoped(none.lock("/a", "write"))), "Unauthorized")
      expect(noneError.detail).toMatch(/requires a secret/)

      const wrong = yield* LockManager.makeRemote({ port, secret: SECRET.replace("0", "1") })
      const wrongError = expectReason(yield* Effect.exit(Effect.scoped(wrong.lock("/a", "write"))), "Unauthorized")
      expect(wrongError.detail).toMatch(/refused this client's secret/)
      expect(yield* Effect.exit(wrong.stats)).toMatchObject({ _tag: "Failure" })

      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      expect(yield* good.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a client with a secret refuses a server without one (whoever took the port)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port } = yield* serverWith(undefined)
      const client = yield* LockManager.makeRemote({ port, secret: SECRET })
      const error = expectReason(yield* Effect.exit(Effect.scoped(client.lock("/a", "write"))), "Unauthorized")
      expect(error.detail).toMatch(/cannot prove it knows/)
    })))

  it.live("by hand: skipping Authenticate or a wrong proof gets the connection dropped, nothing held", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port, server } = yield* serverWith(SECRET)

      const skipping = yield* rawConnection({ port })
      yield* skipping.send(hello())
      const answer = yield* skipping.next
      expect(answer).toMatchObject({
        _tag: "Exit",
        exit: { _tag: "Success", value: { challenge: expect.any(String) } }
      })
      yield* skipping.send(request(2, "Acquire", { ticket: 1, mode: "write", paths: ["/x"], all: false }))
      yield* skipping.closed

      const guessing = yield* rawConnection({ port })
      yield* guessing.send(hello())
      yield* guessing.next
      yield* guessing.send(request(2, "Authenticate", { proof: "00".repeat(32) }))
      expect(yield* guessing.next).toMatchObject({
        _tag: "Exit",
        exit: { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "Unauthorized" } } }
      })
      yield* guessing.closed

      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a secret shorter than 16 bytes is refused on both sides", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* Effect.exit(Effect.scoped(LockServer.make({ port: 0, secret: "short" })))
      expect(expectReason(server, "ListenFailed").detail).toMatch(/at least 16 bytes/)
      const { port } = yield* serverWith(SECRET)
      const client = yield* LockManager.makeRemote({ port, secret: "short" })
      const exit = yield* Effect.exit(Effect.scoped(client.lock("/a", "write")))
      expect(expectReason(exit, "Unauthorized").detail).toMatch(/at least 16 bytes/)
    })))
})

describe.runIf(asAnotherUser)("another local user", () => {
  /** Runs the lock-worker `try` role as uid 65534; its first line (`granted <id>` or `refused ...`). */
  const tryAsNobody = (options: LockManager.RemoteOptions, path: string) =>
    Effect.promise(async () => {
      const child = startWorker(worker!.file, ["try", JSON.stringify(options), path], NOBODY)
      const [line] = await child.waitFor(/^(granted \d+|refused .*)$/, 20_000)
      return { child, line }
    })

  it.live(
    "lockd over TCP with a secret (file or environment): uid 65534 without it is refused, never blocks root",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const secretFile = nodePath.join(dir, "lockd.secret")
        nodeFs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 })
        const server = yield* Effect.promise(() => startLockd(["--port", "0", "--secret-file", secretFile]))
        const options = remoteOptions(server.address)

        for (const secret of [undefined, `${SECRET}x`]) {
          const { line } = yield* tryAsNobody(secret === undefined ? options : { ...options, secret }, "/shared")
          expect(line).toBe("refused RemoteLockError Unauthorized")
        }
        // Root is not blocked: the write lock is free.
        const root = yield* LockManager.makeRemote({ ...options, secret: SECRET })
        yield* within(1_000, "root's lock", root.withLock("/shared", "write")(Effect.void))

        // Control: the same user with the secret gets in (so the refusals above are the secret's doing).
        const { child, line } = yield* tryAsNobody({ ...options, secret: SECRET }, "/shared")
        expect(line).toMatch(/^granted \d+$/)
        child.send("release")
        yield* Effect.promise(() => child.waitFor(/^released$/))

        // The secret from the environment instead of a file.
        server.signal("SIGTERM")
        yield* Effect.promise(() => server.closed)
        const fromEnv = yield* Effect.promise(() => startLockd(["--port", "0"], { env: { LOCKD_SECRET: SECRET } }))
        const envOptions = remoteOptions(fromEnv.address)
        expect((yield* tryAsNobody(envOptions, "/shared")).line).toBe("refused RemoteLockError Unauthorized")
        const withSecret = yield* tryAsNobody({ ...envOptions, secret: SECRET }, "/shared")
        expect(withSecret.line).toMatch(/^granted \d+$/)
        withSecret.child.send("release")
        yield* Effect.promise(() => withSecret.child.waitFor(/^released$/))
      })),
    90_000
  )

  it.live(
    "a client without a secret refuses a socket another user owns or could have put there; with one it is not asked",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir(true)
        const socket = nodePath.join(dir, "locks.sock")
        const server = yield* LockServer.make({ socket, mode: 0o666, gracePeriod: 0 })
        const attempt = (options: LockManager.RemoteOptions) =>
          Effect.flatMap(LockManager.makeRemote(options), (client) =>
            Effect.exit(within(5_000, "lock", Effect.scoped(client.lock("/a", "write"))))).pipe(Effect.scoped)
        // Root's socket in a directory only root writes: trusted.
        expect(Exit.isSuccess(yield* attempt({ socket }))).toBe(true)
        // What a squatter's socket looks like: owned by uid 65534.
        nodeFs.chownSync(socket, NOBODY, NOBODY)
        const squatted = expectReason(yield* attempt({ socket }), "Unauthorized")
        expect(squatted.detail).toContain(`${socket} belongs to uid ${NOBODY}, neither root nor this process's user`)
        // So through a link to it.
        nodeFs.symlinkSync(socket, nodePath.join(dir, "link.sock"))
        expectReason(yield* attempt({ socket: nodePath.join(dir, "link.sock") }), "Unauthorized")
        nodeFs.chownSync(socket, 0, 0)
        // A directory others may write, without the sticky bit: whoever can write there could replace the socket.
        nodeFs.chmodSync(dir, 0o777)
        const writable = expectReason(yield* attempt({ socket }), "Unauthorized")
        expect(writable.detail).toContain("may be written by other users (mode 777)")
        // So through a link from a directory only root writes.
        const safe = yield* tempDir()
        nodeFs.symlinkSync(socket, nodePath.join(safe, "link.sock"))
        expect(expectReason(yield* attempt({ socket: nodePath.join(safe, "link.sock") }), "Unauthorized").detail)
          .toContain(`the directory ${dir} may be written by other users`)
        // With the sticky bit (as /tmp), only the socket's owner may remove or replace it.
        nodeFs.chmodSync(dir, 0o1777)
        expect(Exit.isSuccess(yield* attempt({ socket }))).toBe(true)
        // A link on the way that another user owns (they could point it at their own socket).
        nodeFs.symlinkSync(socket, nodePath.join(dir, "hop.sock"))
        nodeFs.lchownSync(nodePath.join(dir, "hop.sock"), NOBODY, NOBODY)
        nodeFs.symlinkSync(nodePath.join(dir, "hop.sock"), nodePath.join(safe, "chain.sock"))
        expect(expectReason(yield* attempt({ socket: nodePath.join(safe, "chain.sock") }), "Unauthorized").detail)
          .toContain(`${nodePath.join(dir, "hop.sock")} belongs to uid ${NOBODY}`)
        // A path that cannot be looked at is the connection's typed failure, not a defect.
        nodeFs.symlinkSync("loop.sock", nodePath.join(safe, "loop.sock"))
        expectReason(yield* attempt({ socket: nodePath.join(safe, "loop.sock") }), "Unreachable")
        expectReason(yield* attempt({ socket: nodePath.join(socket, "below") }), "Unreachable")
        // Nothing was granted to the refused clients.
        expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
        // With a secret the server proves itself: its socket's owner is not looked at.
        const authenticated = nodePath.join(dir, "secret.sock")
        yield* LockServer.make({ socket: authenticated, mode: 0o666, gracePeriod: 0, secret: SECRET })
        nodeFs.chownSync(authenticated, NOBODY, NOBODY)
        expect(Exit.isSuccess(yield* attempt({ socket: authenticated, secret: SECRET }))).toBe(true)
      })),
    30_000
  )

  it.live(
    "lockd's Unix socket is owner-only even under umask 000; --mode 666 opens it",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir(true)
        const socket = nodePath.join(dir, "lockd.sock")
        const closed = yield* Effect.promise(() => startLockd(["--socket", socket], { umask: "000" }))
        expect(nodeFs.lstatSync(socket).mode & 0o777).toBe(0o600)
        const refused = (yield* tryAsNobody({ socket }, "/shared")).line
        expect(refused).toBe("refused RemoteLockError Unreachable")
        closed.signal("SIGTERM")
        yield* Effect.promise(() => closed.closed)

        const open = nodePath.join(dir, "open.sock")
        yield* Effect.promise(() => startLockd(["--socket", open, "--mode", "666"], { umask: "077" }))
        expect(nodeFs.lstatSync(open).mode & 0o777).toBe(0o666)
        const { child, line } = yield* tryAsNobody({ socket: open }, "/shared")
        expect(line).toMatch(/^granted \d+$/)
        child.send("release")
        yield* Effect.promise(() => child.waitFor(/^released$/))
      })),
    90_000
  )
})

describe("lockd's arguments", () => {
  it.live(
    "reads the secret from a pipe (as `--secret-file <(pass show lockd)` gives it)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const pipe = nodePath.join(dir, "secret.pipe")
        expect(childProcess.spawnSync("mkfifo", ["-m", "600", pipe]).status).toBe(0)
        // The writer waits for lockd to open the pipe.
        const writer = nodeFs.promises.writeFile(pipe, `${SECRET}\n`)
        const server = yield* Effect.promise(() => startLockd(["--port", "0", "--secret-file", pipe]))
        yield* Effect.promise(() => writer)
        const options = remoteOptions(server.address)
        const client = yield* LockManager.makeRemote({ ...options, secret: SECRET })
        yield* within(5_000, "lock", client.withLock("/piped", "write")(Effect.void))
        const wrong = yield* LockManager.makeRemote({ ...options, secret: `${SECRET}x` })
        expectReason(yield* Effect.exit(Effect.scoped(wrong.lock("/piped", "write"))), "Unauthorized")
        // A pipe that does not end is read no further than a secret needs.
        const endless = nodeFs.promises.writeFile(pipe, Buffer.alloc(1_000_000, "x")).catch(() => undefined)
        const refused = yield* Effect.promise(() => runLockd(["--port", "0", "--secret-file", pipe]))
        yield* Effect.promise(() => endless)
        expect(refused.code).toBe(1)
        expect(refused.stderr).toContain("holds more than 65536 bytes")
      })),
    60_000
  )

  it.live(
    "refuses --secret on the command line, a secret file others can read, a bad --mode or duration",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir()
        const onCommandLine = yield* Effect.promise(() => runLockd(["--port", "0", "--secret", SECRET]))
        expect(onCommandLine.code).toBe(2)
        expect(onCommandLine.stderr).toMatch(/use --secret-file/)

        const readable = nodePath.join(dir, "readable.secret")
        nodeFs.writeFileSync(readable, SECRET, { mode: 0o644 })
        nodeFs.chmodSync(readable, 0o644)
        const shared = yield* Effect.promise(() => runLockd(["--port", "0", "--secret-file", readable]))
        expect(shared.code).toBe(1)
        expect(shared.stderr.trimEnd().split("\n")).toEqual([
          `lockd: the secret file ${readable} is accessible to other users (mode 644): chmod 600 it`
        ])
        if (process.getuid?.() === 0) {
          // Owner-only, but another user's: that user knows the secret. So through a link to it.
          nodeFs.chmodSync(readable, 0o600)
          nodeFs.chownSync(readable, NOBODY, NOBODY)
          const link = nodePath.join(dir, "link.secret")
          nodeFs.symlinkSync(readable, link)
          for (const file of [readable, link]) {
            const theirs = yield* Effect.promise(() => runLockd(["--port", "0", "--secret-file", file]))
            expect(theirs.code).toBe(1)
            expect(theirs.stderr).toContain(
              `the secret file ${file} belongs to uid ${NOBODY}, neither root nor this user`
            )
          }
          nodeFs.rmSync(link)
        }

        // No more than a secret needs; a directory is no secret file.
        const huge = nodePath.join(dir, "huge.secret")
        nodeFs.writeFileSync(huge, "x".repeat(100_000), { mode: 0o600 })
        const tooMuch = yield* Effect.promise(() => runLockd(["--port", "0", "--secret-file", huge]))
        expect(tooMuch.code).toBe(1)
        expect(tooMuch.stderr).toContain(`the secret file ${huge} holds more than 65536 bytes`)
        nodeFs.rmSync(huge)
        const notAFile = yield* Effect.promise(() => runLockd(["--port", "0", "--secret-file", dir]))
        expect(notAFile.code).toBe(1)
        expect(notAFile.stderr).toContain("is neither a regular file nor a pipe")

        const badMode = yield* Effect.promise(() => runLockd(["--socket", nodePath.join(dir, "s"), "--mode", "999"]))
        expect(badMode.code).toBe(2)

        for (const [flag, value] of [["--grace-period", "soon"], ["--max-heartbeat-deadline", "-1"]]) {
          const bad = yield* Effect.promise(() => runLockd(["--socket", nodePath.join(dir, "s"), flag, value]))
          expect(bad.code).toBe(2)
          expect(bad.stderr).toMatch(new RegExp(`^${flag} must be a duration`))
        }
        for (
          const value of ["0", "000", "x", "1.5", "-3", "1e3", "", " 5", "0x10", "1".repeat(16), "0".repeat(15) + "0"]
        ) {
          const bad = yield* Effect.promise(() =>
            runLockd(["--socket", nodePath.join(dir, "s"), "--max-connections", value])
          )
          expect(bad.code, value).toBe(2)
          expect(bad.stderr).toMatch(/^--max-connections must be a positive integer/)
        }
        expect(nodeFs.readdirSync(dir)).toEqual(["readable.secret"])
      })),
    60_000
  )

  it.live("--max-connections bounds the connections served", () =>
    Effect.scoped(Effect.gen(function*() {
      const socket = nodePath.join(yield* tempDir(), "lockd.sock")
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          startLockd(["--socket", socket, "--grace-period", "0", "--max-connections", "0".repeat(15) + "1"])
        ),
        (server) => Effect.promise(() => (server.signal("SIGTERM"), server.closed))
      )
      const first = yield* LockManager.makeRemote({ socket })
      yield* within(5_000, "the first client's lock", first.lock("/a", "write"))
      const second = yield* LockManager.makeRemote({ socket, connectTimeout: "500 millis" })
      expectReason(yield* within(5_000, "the second refused", Effect.exit(second.lock("/b", "write"))), "Disconnected")
    })))
})
