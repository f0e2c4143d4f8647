/**
 * `LockManager.layerEtcd` with real processes: etcd clusters started on
 * loopback ports with their data in temp directories (test/fixtures/
 * etcd-cluster.ts), and workers bundled from test/fixtures/lock-worker.ts,
 * each with its own manager.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  Cause,
  type Config,
  ConfigProvider,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Scope
} from "effect"
import { Etcd3, type IKeyValue } from "etcd3"
import * as nodeFs from "node:fs"
import * as Http2 from "node:http2"
import * as Net from "node:net"
import * as nodePath from "node:path"
import * as LockManager from "../src/LockManager.js"
import type { RemoteLockError } from "../src/PersistenceError.js"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import { type EtcdCluster, startCluster } from "./fixtures/etcd-cluster.js"
import { type Child, killAll, startWorker } from "./fixtures/lock-processes.js"
import { clientOver, expectRemoteError, holdLock, now, TEMP, tempDir, untilStats, within } from "./utils/remoteLocks.js"

let bundle: Bundle | undefined
let single: EtcdCluster | undefined
let three: EtcdCluster | undefined

beforeAll(async () => {
  ;[bundle, single, three] = await Promise.all([
    bundleFixture("./lock-worker.ts"),
    startCluster({ size: 1, name: "etcd-test-1" }),
    startCluster({ size: 3, name: "etcd-test-3" })
  ])
}, 60_000)

afterAll(async () => {
  await Promise.all([single?.stop(), three?.stop()])
  await killAll()
  bundle?.remove()
})

const worker = (args: ReadonlyArray<string>) => startWorker(bundle!.file, args)

/** A cluster of its own for a test that kills members; stopped with the scope. */
const ownCluster = (size: number, name: string) =>
  Effect.acquireRelease(Effect.promise(() => startCluster({ size, name })), (cluster) => Effect.promise(cluster.stop))

/** A loopback port where nothing listens. */
const closedPort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

type CounterRecord = readonly [value: number, start: number, end: number]
type Grant = readonly [id: number, start: number, end: number]

/**
 * The overlap detector, on what every process reported (wall-clock times of
 * one host):
 * - the grants of the counter's lock whose use completed, in the order they
 *   began, must not overlap (each began after the previous one's use ended)
 *   and must carry increasing lock ids (the fencing token follows the order);
 * - the committed increments, in the order their update functions began,
 *   must have read 0, 1, 2, ... (no lost update, no two holders reading the
 *   same state).
 * Returns the first violation.
 */
const violation = (records: ReadonlyArray<CounterRecord>, grants: ReadonlyArray<Grant>): string | undefined => {
  if (grants.length !== records.length) return `${grants.length} completed grants for ${records.length} increments`
  const byStart = [...grants].sort((a, b) => a[1] - b[1])
  for (let i = 1; i < byStart.length; i++) {
    const [id, start] = byStart[i]
    const [previousId, , previousEnd] = byStart[i - 1]
    if (start < previousEnd) {
      return `grant #${id} began ${(previousEnd - start).toFixed(3)} ms before the use of grant #${previousId} ended`
    }
    if (id <= previousId) return `grant #${id} came after grant #${previousId}`
  }
  const sorted = [...records].sort((a, b) => a[1] - b[1])
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i][0] !== i) return `the increment that began ${i}th read ${sorted[i][0]}`
  }
  return undefined
}

interface CounterRun {
  readonly workers: ReadonlyArray<Child>
  /** Sends `go` to every worker and collects what they report. */
  readonly run: Effect.Effect<
    {
      readonly records: Array<CounterRecord>
      readonly grants: Array<Grant>
      readonly failed: number
      readonly ms: number
    }
  >
}

/** Starts one counter worker per entry of `durable` (true: a durable Client) and waits until they are ready. */
const counterWorkers = (
  options: LockManager.EtcdOptions,
  file: string,
  increments: number,
  durable: ReadonlyArray<boolean>
) =>
  Effect.gen(function*() {
    const workers = durable.map((d) =>
      worker(["counter", JSON.stringify(options), file, String(increments), "1", d ? "durable" : "plain"])
    )
    yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^ready$/))))
    const run = Effect.promise(async () => {
      const started = now()
      for (const w of workers) w.send("go")
      const reports = await Promise.all(workers.map(async (w) => {
        const [, records] = await w.waitFor(/^records (.*)$/, 90_000)
        const [, grants] = await w.waitFor(/^grants (.*)$/, 5_000)
        const [, failed] = await w.waitFor(/^failed (\d+)$/, 5_000)
        await w.waitFor(/^done$/, 5_000)
        return {
          records: JSON.parse(records) as Array<CounterRecord>,
          grants: JSON.parse(grants) as Array<Grant>,
          failed: Number(failed)
        }
      }))
      return {
        records: reports.flatMap((r) => r.records),
        grants: reports.flatMap((r) => r.grants),
        failed: reports.reduce((n, r) => n + r.failed, 0),
        ms: now() - started
      }
    })
    return { workers, run } satisfies CounterRun
  })

afterEach(async () => {
  // Workers only: the clusters of beforeAll live for the whole file.
  await killWorkers()
})

const killWorkers = async () => {
  // killAll would also end the shared clusters' members, so each test's workers end with their test.
  for (const w of started.splice(0)) {
    w.signal("SIGCONT")
    w.signal("SIGKILL")
    await w.closed
  }
}
const started: Array<Child> = []
const track = <C extends Child>(child: C): C => {
  started.push(child)
  return child
}

describe("several processes through one etcd cluster", () => {
  for (
    const [title, durable] of [
      [
        "four processes x 250 Client.modify increments through a 3-member cluster: exactly 1000, one holder at a time",
        [false, false, false, false]
      ],
      ["the same with the Client durable in two of the four processes", [true, false, true, false]]
    ] as const
  ) {
    it.live(title, () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("etcd-locks-")
        const file = nodePath.join(dir, "counter")
        const { run, workers } = yield* counterWorkers({ endpoints: three!.endpoints }, file, 250, durable)
        workers.forEach(track)
        const { failed, grants, ms, records } = yield* run
        console.log(`${title}: 1000 increments (durable: ${durable}) in ${ms.toFixed(0)} ms`)
        expect(failed).toBe(0)
        expect(violation(records, grants)).toBeUndefined()
        expect(records).toHaveLength(1000)
        expect(nodeFs.readFileSync(file, "utf8")).toBe("1000")
      })), 120_000)
  }

  it.live(
    "negative control: the overlap detector sees four processes with their own in-memory managers",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("etcd-locks-")
        const file = nodePath.join(dir, "counter")
        const workers = Array.from({ length: 4 }, () => track(worker(["counter", "local", file, "50", "1"])))
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.waitFor(/^ready$/))))
        for (const w of workers) w.send("go")
        const reports = yield* Effect.promise(() =>
          Promise.all(workers.map(async (w) => {
            const [, records] = await w.waitFor(/^records (.*)$/, 30_000)
            const [, grants] = await w.waitFor(/^grants (.*)$/, 5_000)
            return { records: JSON.parse(records) as Array<CounterRecord>, grants: JSON.parse(grants) as Array<Grant> }
          }))
        )
        const found = violation(reports.flatMap((r) => r.records), reports.flatMap((r) => r.grants))
        console.log(`overlap detector on per-process managers: ${found}`)
        expect(found).toBeDefined()
      })),
    60_000
  )

  it.live(
    "the leader is killed during the load: no lost update, never two holders, every process finishes",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("etcd-locks-")
        const cluster = yield* ownCluster(3, "etcd-leader")
        const file = nodePath.join(dir, "counter")
        const { run, workers } = yield* counterWorkers(
          { endpoints: cluster.endpoints },
          file,
          100,
          [false, true, false, false]
        )
        workers.forEach(track)
        const load = yield* Effect.fork(run)
        // Kill the leader a quarter into the run.
        yield* within(
          60_000,
          "counter progress",
          Effect.iterate(0, {
            while: (value) => value < 100,
            body: () =>
              Effect.zipRight(
                Effect.sleep("10 millis"),
                Effect.sync(() => nodeFs.existsSync(file) ? Number(nodeFs.readFileSync(file, "utf8")) : 0)
              )
          })
        )
        const leader = yield* Effect.promise(() => cluster.leader())
        yield* Effect.promise(() => cluster.kill(leader))
        const killedAt = Number(nodeFs.readFileSync(file, "utf8"))
        const { failed, grants, ms, records } = yield* within(90_000, "the load", Fiber.join(load))
        const final = Number(nodeFs.readFileSync(file, "utf8"))
        console.log(
          `leader m${leader} killed at ${killedAt}/400: ${records.length} increments committed, ${failed} failed ` +
            `with a typed error, ${ms.toFixed(0)} ms`
        )
        expect(violation(records, grants)).toBeUndefined()
        expect(final).toBe(records.length)
        expect(records.length + failed).toBe(400)
        // The survivors kept the cluster going: most increments went through.
        expect(records.length).toBeGreaterThan(killedAt)
      })),
    120_000
  )

  it.live(
    "a holder killed mid-sink (SIGKILL): the next waiter is granted within ttl + 1 s; the target is intact",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("etcd-locks-")
        const options: LockManager.EtcdOptions = { endpoints: single!.endpoints, ttl: "2 seconds", prefix: "/sigkill" }
        const target = nodePath.join(dir, "data", "target")
        nodeFs.mkdirSync(nodePath.dirname(target))
        nodeFs.writeFileSync(target, "old")
        const holder = track(worker(["sink", JSON.stringify(options), target]))
        yield* Effect.promise(() => holder.waitFor(/^holding$/))
        const temps = nodeFs.readdirSync(nodePath.dirname(target)).filter((name) => TEMP.test(name))
        expect(temps).toHaveLength(1)

        const manager = yield* LockManager.makeEtcd(options)
        const waiter = yield* holdLock(manager, target)
        yield* untilStats(manager, (s) => s.pending === 1)
        const killedAt = now()
        holder.signal("SIGKILL")
        const { at } = yield* within(5_000, "acquire after the holder died", Deferred.await(waiter.granted))
        console.log(`acquired ${(at - killedAt).toFixed(0)} ms after SIGKILL of the holder (ttl 2 s)`)
        expect(at - killedAt).toBeLessThan(3_000)
        yield* waiter.release

        const client = yield* clientOver(LockManager.layerEtcd(options))
        expect(yield* client.readString(target)).toBe("old")
        const removed = yield* client.recover(nodePath.dirname(target))
        expect(removed).toEqual([nodePath.join(nodePath.dirname(target), temps[0])])
        expect(nodeFs.readdirSync(nodePath.dirname(target))).toEqual(["target"])
      })),
    60_000
  )

  it.live(
    "a holder paused past its ttl (SIGSTOP, SIGCONT): its lock is reported lost and its pending commit does not happen",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("etcd-locks-")
        const options: LockManager.EtcdOptions = { endpoints: single!.endpoints, ttl: "2 seconds", prefix: "/sigstop" }
        const held = nodePath.join(dir, "held")
        const doc = nodePath.join(dir, "doc")
        nodeFs.writeFileSync(doc, "before")
        const holder = track(worker(["hold", JSON.stringify(options), held]))
        const writer = track(worker(["modify-wait", JSON.stringify(options), doc]))
        const [, heldId] = yield* Effect.promise(() => holder.waitFor(/^holding (\d+)$/))
        yield* Effect.promise(() => writer.waitFor(/^holding$/))

        const manager = yield* LockManager.makeEtcd(options)
        const client = yield* clientOver(LockManager.layerEtcd(options))
        const waiter = yield* holdLock(manager, held)
        const overwrite = yield* Effect.fork(client.modify(doc, () => "waiter"))
        yield* untilStats(manager, (s) => s.pending === 1)

        const stoppedAt = now()
        holder.signal("SIGSTOP")
        writer.signal("SIGSTOP")
        const { at, lock } = yield* within(6_000, "acquire after the holder froze", Deferred.await(waiter.granted))
        console.log(`acquired ${(at - stoppedAt).toFixed(0)} ms after SIGSTOP of the holder (ttl 2 s)`)
        expect(at - stoppedAt).toBeLessThan(3_500)
        expect(lock.id).toBeGreaterThan(Number(heldId))
        yield* within(6_000, "the other process's modify", Fiber.join(overwrite))
        expect(nodeFs.readFileSync(doc, "utf8")).toBe("waiter")

        // Woken up, the holders find out, and the paused commit is refused.
        holder.signal("SIGCONT")
        writer.signal("SIGCONT")
        yield* Effect.promise(() => holder.waitFor(/^lost$/, 5_000))
        holder.send("check")
        yield* Effect.promise(() => holder.waitFor(/^refused LockLostError$/, 5_000))
        writer.send("go")
        yield* Effect.promise(() => writer.waitFor(/^refused LockLostError$/, 5_000))
        expect(nodeFs.readFileSync(doc, "utf8")).toBe("waiter")
        yield* waiter.release
      })),
    60_000
  )
})

describe("etcd unreachable", () => {
  it.live("an endpoint that announces an endless message: refused at its header (Rejected), memory not spent on it", () =>
    Effect.scoped(Effect.gen(function*() {
      // A peer that speaks gRPC: every call answered with a message header
      // claiming 2 GiB, then zeros for as long as the client reads them.
      let sent = 0
      const server = yield* Effect.acquireRelease(
        Effect.async<Http2.Http2Server>((resume) => {
          const server = Http2.createServer()
          server.on("stream", (stream) => {
            stream.on("error", () => {})
            stream.respond({ ":status": 200, "content-type": "application/grpc" })
            stream.write(Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]))
            const zeros = Buffer.alloc(256 * 1024)
            const pump = () => {
              while (!stream.destroyed && !stream.closed && stream.write(zeros)) sent += zeros.length
            }
            stream.on("drain", pump)
            pump()
          })
          server.on("sessionError", () => {})
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const port = (server.address() as Net.AddressInfo).port
      const manager = yield* LockManager.makeEtcd({
        endpoints: [`http://127.0.0.1:${port}`],
        connectTimeout: "5 seconds"
      })
      const error = expectRemoteError(
        yield* Effect.exit(within(10_000, "lock", Effect.scoped(manager.lock("/a", "write")))),
        ["Rejected"]
      )
      expect(error.message).toContain("Received message larger than max")
      // What flow control let through before the call was refused, far below the 64 MiB bound.
      expect(sent).toBeLessThan(16 * 1024 * 1024)
    })))

  it.live("at start: a typed error within the connect timeout, through the manager and the Client", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* closedPort
      const options: LockManager.EtcdOptions = { endpoints: [`http://127.0.0.1:${port}`], connectTimeout: "1 second" }
      const manager = yield* LockManager.makeEtcd(options)
      const started = now()
      const error = expectRemoteError(
        yield* Effect.exit(within(5_000, "lock", Effect.scoped(manager.lock("/a", "write")))),
        ["Unreachable"]
      )
      const elapsed = now() - started
      console.log(`unreachable etcd: ${error.message} after ${elapsed.toFixed(0)} ms`)
      expect(error.address).toBe(`etcd:http://127.0.0.1:${port}`)
      expect(error.message).toContain(`etcd cluster http://127.0.0.1:${port} is unreachable`)
      expect(elapsed).toBeLessThan(2_000)
      const client = yield* clientOver(LockManager.layerEtcd(options))
      const dir = yield* tempDir("etcd-locks-")
      expectRemoteError(
        yield* Effect.exit(within(5_000, "Client.write", client.write(nodePath.join(dir, "f"), "x"))),
        ["Unreachable"]
      )
      expect(nodeFs.readdirSync(dir)).toEqual([])
    })))

  it.live(
    "going away mid-run: waiters fail typed, held locks are reported lost; once back, managers work and ids go on",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* ownCluster(1, "etcd-away")
        const options: LockManager.EtcdOptions = {
          endpoints: cluster.endpoints,
          ttl: "2 seconds",
          connectTimeout: "2 seconds"
        }
        const manager = yield* LockManager.makeEtcd(options)
        const holder = yield* holdLock(manager, "/k")
        const { lock } = yield* Deferred.await(holder.granted)
        yield* lock.ensureHeld("test")
        const waiting = yield* Effect.fork(Effect.scoped(manager.lock("/k", "write")))
        yield* untilStats(manager, (s) => s.pending === 1)

        yield* Effect.promise(() => cluster.kill(0))
        const killedAt = now()
        yield* within(5_000, "lost of the held lock", lock.lost)
        const lostAfter = now() - killedAt
        expect((yield* Effect.flip(lock.ensureHeld("test")))._tag).toBe("LockLostError")
        expectRemoteError(yield* within(8_000, "waiting request", Fiber.await(waiting)), [
          "Disconnected",
          "Timeout",
          "Unreachable"
        ])
        console.log(
          `etcd killed: lock lost after ${lostAfter.toFixed(0)} ms, waiter failed after ${
            (now() - killedAt).toFixed(0)
          } ms`
        )
        yield* holder.release
        const down = now()
        expectRemoteError(
          yield* Effect.exit(within(5_000, "lock while down", Effect.scoped(manager.lock("/z", "read")))),
          [
            "Unreachable",
            "Timeout"
          ]
        )
        expect(now() - down).toBeLessThan(3_000)

        yield* Effect.promise(() => cluster.restart(0))
        const fresh = yield* LockManager.makeEtcd(options)
        const id = yield* within(
          10_000,
          "lock after restart",
          fresh.withLock("/k", "write")((l) => Effect.succeed(l.id))
        )
        // Revisions survive the restart: the fencing token keeps increasing.
        expect(id).toBeGreaterThan(lock.id)
        const again = yield* within(10_000, "old manager", manager.withLock("/k", "write")((l) => Effect.succeed(l.id)))
        expect(again).toBeGreaterThan(id)
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      })),
    60_000
  )
})

/** A manager on the given endpoints that starts on the first (a manager starts on a random one). */
const startingOnFirst = (options: LockManager.EtcdOptions) =>
  Effect.suspend(() => {
    const random = Math.random
    Math.random = () => 0
    return Effect.ensuring(LockManager.makeEtcd(options), Effect.sync(() => Math.random = random))
  })

describe("a frozen member", () => {
  /**
   * A 3-member cluster of its own and one of its followers: its endpoint, the
   * others', and `freeze` (SIGSTOP, with SIGCONT when the scope closes).
   */
  const withFollower = (name: string) =>
    Effect.gen(function*() {
      const cluster = yield* ownCluster(3, name)
      const index = ((yield* Effect.promise(() => cluster.leader())) + 1) % 3
      return {
        follower: cluster.endpoints[index],
        others: cluster.endpoints.filter((_, i) => i !== index),
        freeze: Effect.acquireRelease(
          Effect.promise(() => cluster.kill(index, "SIGSTOP")),
          () => Effect.sync(() => cluster.members[index].child?.signal("SIGCONT"))
        )
      }
    })

  it.live(
    "a follower frozen under a waiter's watch stream: hand-overs move to another member, not a ttl each",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { follower, freeze, others } = yield* withFollower("etcd-frozen-watch")
        const prefix = "/frozen-watch"
        const holder = yield* LockManager.makeEtcd({ endpoints: others, prefix })
        const waiter = yield* startingOnFirst({
          endpoints: [follower, ...others],
          prefix,
          ttl: "10 seconds",
          connectTimeout: "1500 millis"
        })
        /** The holder takes /w, the waiter asks for it, the holder lets go: the waiter's grant comes within 4 s. */
        const handOver = (round: string) =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            yield* holder.lock("/w", "write").pipe(Scope.extend(scope))
            const waiting = yield* Effect.fork(waiter.withLock("/w", "write")(Effect.void))
            yield* untilStats(waiter, (s) => s.pending === 1)
            yield* Scope.close(scope, Exit.void)
            yield* within(4_000, `hand-over ${round}`, Fiber.join(waiting))
          })
        // Opens the waiter's watch stream on the member about to freeze.
        yield* handOver("before the freeze")
        yield* freeze
        for (let i = 0; i < 3; i++) yield* handOver(`${i} after the freeze`)
      })),
    60_000
  )

  it.live(
    "a follower frozen (SIGSTOP) under a manager's keepalive: the lease moves to another member, the lock stays",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { follower, freeze, others } = yield* withFollower("etcd-frozen")
        // On the follower about to freeze.
        const manager = yield* startingOnFirst({
          endpoints: [follower, ...others],
          prefix: "/frozen",
          ttl: "2 seconds"
        })
        const lock = yield* within(5_000, "the lock", manager.lock("/x", "write"))
        yield* freeze
        // Two time-to-lives: without a new stream the lease would have run out.
        for (let i = 0; i < 8; i++) {
          yield* Effect.sleep("500 millis")
          yield* lock.ensureHeld(`check ${i}`)
        }
      })),
    60_000
  )
})

describe("an enqueue whose first attempt went unanswered", () => {
  /**
   * A 3-member cluster of its own, a manager on one of its followers (with a
   * short attempt timeout, and its session open), a client of the other
   * members, and that follower's index.
   */
  const onFollower = (name: string, prefix: string) =>
    Effect.gen(function*() {
      const cluster = yield* ownCluster(3, name)
      const index = ((yield* Effect.promise(() => cluster.leader())) + 1) % 3
      const follower = cluster.endpoints[index]
      const others = cluster.endpoints.filter((_, i) => i !== index)
      const manager = yield* startingOnFirst({
        endpoints: [follower, ...others],
        prefix,
        connectTimeout: "1500 millis"
      })
      yield* manager.withLock("/warm", "write")(Effect.void)
      const etcd = yield* Effect.acquireRelease(
        Effect.sync(() => new Etcd3({ hosts: Array.from(others) })),
        (etcd) => Effect.sync(() => etcd.close())
      )
      return { cluster, index, manager, etcd }
    })

  it.live(
    "a request sent while an earlier one's attempt went unanswered is granted, though that one left first",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const prefix = "/late-enqueue-two"
        const { cluster, etcd, index, manager } = yield* onFollower("etcd-late-enqueue-two", prefix)
        // Both first attempts go to the frozen follower and are retried elsewhere; the first
        // request is granted and leaves while the second's retry is still on its way.
        yield* Effect.promise(() => cluster.kill(index, "SIGSTOP"))
        const first = yield* Effect.fork(manager.withLock("/a", "write")(Effect.void))
        yield* Effect.sleep("150 millis")
        const second = yield* Effect.fork(manager.withLock("/b", "write")(Effect.succeed("granted")))
        yield* within(5_000, "the first request", Fiber.join(first))
        expect(yield* within(5_000, "the second request", Fiber.join(second))).toBe("granted")
        cluster.members[index].child?.signal("SIGCONT")
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
        expect(yield* Effect.promise(() => etcd.getAll().prefix(`${prefix}/`).keys())).toEqual([])
      })),
    60_000
  )

  it.live(
    "a late copy of it, applied after its request left, leaves no key: the session's lease is revoked with that request",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const prefix = "/late-enqueue"
        const { cluster, etcd, index, manager } = yield* onFollower("etcd-late-enqueue", prefix)
        const keysOf = (path: string) =>
          Effect.promise(() =>
            etcd.kv.range({ key: Buffer.from(`${prefix}${path}/#`), range_end: Buffer.from(`${prefix}${path}/$`) })
          )

        // The follower frozen: the enqueue's first attempt is sent and goes unanswered; it is
        // retried on another member and granted there.
        yield* Effect.promise(() => cluster.kill(index, "SIGSTOP"))
        const { key, lease } = yield* Effect.scoped(Effect.gen(function*() {
          yield* within(5_000, "the lock, on another member", manager.lock("/late", "write"))
          const [kv] = (yield* keysOf("/late")).kvs
          return { key: kv.key, lease: kv.lease }
        }))
        cluster.members[index].child?.signal("SIGCONT")
        // The request has left: its key is deleted. A copy of the first attempt applied now (as the
        // frozen follower may pass it on) must not put the key back with a live lease.
        const late = yield* Effect.promise(() =>
          etcd.kv.txn({
            compare: [{ key, target: "Create", result: "Equal", create_revision: 0 }],
            success: [{ request_put: { key, value: Buffer.alloc(0), lease } }],
            failure: []
          }).then(() => "applied", (error: Error) => error.constructor.name)
        )
        expect(late).toBe("EtcdLeaseInvalidError")
        expect((yield* keysOf("/late")).kvs).toEqual([])
        // New requests go on, on a new session.
        const again = yield* within(5_000, "a later lock", manager.withLock("/late", "write")(Effect.void))
        expect(again).toBeUndefined()
        expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      })),
    60_000
  )
})

describe("an interruption during the enqueue", () => {
  it.live(
    "a lock in a longer scope, interrupted while its enqueue is in flight, leaves etcd's queue when the interrupt returns",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* ownCluster(1, "etcd-enqueue-interrupt")
        const prefix = "/enqueue-interrupt"
        const a = yield* LockManager.makeEtcd({ endpoints: cluster.endpoints, prefix })
        const b = yield* LockManager.makeEtcd({ endpoints: cluster.endpoints, prefix })
        // Sessions open, so that the request below is one transaction.
        yield* a.withLock("/warm", "write")(Effect.void)
        yield* b.withLock("/warm", "write")(Effect.void)
        const outer = yield* Scope.make()
        // The member stopped: the enqueue is sent and its answer held back until it runs again.
        yield* Effect.promise(() => cluster.kill(0, "SIGSTOP"))
        const locking = yield* Effect.fork(Scope.extend(a.lock("/e", "write"), outer))
        yield* Effect.sleep("300 millis")
        const interrupted = yield* Effect.fork(Fiber.interrupt(locking))
        cluster.members[0].child?.signal("SIGCONT")
        const exit = yield* within(5_000, "the interrupt", Fiber.join(interrupted))
        expect(Exit.isInterrupted(exit)).toBe(true)
        // The request was granted in etcd, but its caller never got the Lock: it is gone already,
        // not held until the longer scope closes.
        expect(yield* a.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
        const keys = yield* Effect.promise(async () => {
          const etcd = new Etcd3({ hosts: Array.from(cluster.endpoints) })
          try {
            return await etcd.getAll().prefix(`${prefix}/e/`).keys()
          } finally {
            etcd.close()
          }
        })
        expect(keys).toEqual([])
        expect(yield* within(2_000, "another manager's lock", b.withLock("/e", "write")(Effect.succeed("granted"))))
          .toBe("granted")
        yield* Scope.close(outer, Exit.void)
      })),
    60_000
  )
})

describe("in-process", () => {
  const options = () => ({ endpoints: single!.endpoints, prefix: "/in-process" })

  /** As another client of the cluster: `f` with the write requests on `path` newer than lock `id`. */
  const behindTheBack = (path: string, id: number, f: (etcd: Etcd3, newer: Array<IKeyValue>) => Promise<void>) =>
    Effect.promise(async () => {
      const etcd = new Etcd3({ hosts: Array.from(single!.endpoints) })
      try {
        const keys = await etcd.kv.range({
          key: Buffer.from(`/in-process${path}/#w/`),
          range_end: Buffer.from(`/in-process${path}/#w0`)
        })
        await f(etcd, keys.kvs.filter((kv) => Number(kv.create_revision) > id))
      } finally {
        etcd.close()
      }
    })

  it.live("the Client runs unchanged over layerEtcd", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("etcd-locks-")
      const client = yield* clientOver(LockManager.layerEtcd(options()))
      const file = nodePath.join(dir, "a", "doc.txt")
      yield* client.write(file, "one")
      yield* client.modify(file, (current) => Option.getOrThrow(current).length === 3 ? "three" : "?")
      yield* client.rename(file, nodePath.join(dir, "b.txt"))
      expect(yield* client.readString(nodePath.join(dir, "b.txt"))).toBe("three")
      expect(yield* client.collect(dir)).toEqual(expect.arrayContaining(["a", "b.txt"]))
    })))

  it.live("layerEtcdConfig reads PERSISTENCE_ETCD_ENDPOINTS and the optional settings; no endpoints is a ConfigError", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["PERSISTENCE_ETCD_ENDPOINTS", ` ${single!.endpoints.join(" , ")} `],
          ["PERSISTENCE_ETCD_PREFIX", "/from-config"],
          ["PERSISTENCE_ETCD_TTL", "3 seconds"]
        ])
      )
      const id = yield* Effect.flatMap(
        LockManager.LockManager,
        (manager) => manager.withLock("/configured", "write")((lock) => Effect.succeed(lock.id))
      ).pipe(
        Effect.provide(LockManager.layerEtcdConfig().pipe(Layer.provide(Layer.setConfigProvider(provider))))
      )
      expect(id).toBeGreaterThan(0)
      const missing = yield* Effect.exit(
        Layer.build(
          LockManager.layerEtcdConfig().pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))))
        ).pipe(Effect.scoped)
      )
      expect(
        Exit.isFailure(missing) &&
          Cause.failureOption(missing.cause).pipe(Option.map((e) => "_op" in e ? e._op : e._tag))
      ).toEqual(
        Option.some("MissingData")
      )
    }))

  it.live("invalid paths fail before any connection", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* closedPort
      const manager = yield* LockManager.makeEtcd({ endpoints: [`http://127.0.0.1:${port}`] })
      const started = now()
      const error = yield* Effect.flip(Effect.scoped(manager.lock("relative/path", "read")))
      expect(error._tag).toBe("InvalidPathError")
      const empty = yield* Effect.flip(manager.withLockAll([])(Effect.void))
      expect(empty._tag === "InvalidPathError" && empty.reason).toBe("EmptyPathSet")
      const root = yield* Effect.flip(manager.withLock("/", "write")(Effect.void))
      expect(root._tag === "InvalidPathError" && root.reason).toBe("Root")
      expect(now() - started).toBeLessThan(500)
    })))

  // From plain JavaScript: an infinite connectTimeout made every call retry
  // for ever, a string of endpoints was split into characters, NaN or negative
  // durations counted as 1 ms, and missing options threw.
  it.effect("options a manager cannot mean are refused when it is built: InvalidArgumentError, before any connection", () =>
    Effect.gen(function*() {
      const endpoints = ["http://127.0.0.1:1"]
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "options"],
        [{}, "options.endpoints"],
        [{ endpoints: [] }, "options.endpoints"],
        [{ endpoints: endpoints[0] }, "options.endpoints"],
        [{ endpoints: [123] }, "options.endpoints"],
        [{ endpoints: [""] }, "options.endpoints"],
        ...[123, "app/locks", "/app//locks", "//app", "a\0"].map((prefix) =>
          [{ endpoints, prefix }, "options.prefix"] as const
        ),
        ...[Infinity, 1e17, NaN, -1, 0, "x", null, Duration.infinity].map((connectTimeout) =>
          [{ endpoints, connectTimeout }, "options.connectTimeout"] as const
        ),
        ...[NaN, -1, 0, "-1 seconds", null, Infinity].map((ttl) => [{ endpoints, ttl }, "options.ttl"] as const)
      ]
      for (const [options, argument] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(LockManager.makeEtcd(options as LockManager.EtcdOptions)))
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        expect(error, String(JSON.stringify(options))).toMatchObject({ _tag: "InvalidArgumentError", argument })
      }
      const notConfig = yield* Effect.exit(
        Layer.build(LockManager.layerEtcdConfig({ endpoints } as unknown as Config.Config<LockManager.EtcdOptions>))
          .pipe(Effect.scoped)
      )
      expect(Exit.isFailure(notConfig) && Option.getOrUndefined(Cause.failureOption(notConfig.cause))).toMatchObject({
        _tag: "InvalidArgumentError",
        argument: "options"
      })
    }))

  it.live("an interrupted waiter leaves etcd's queue before the interrupt returns; requests behind it go on", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* LockManager.makeEtcd(options())
      const b = yield* LockManager.makeEtcd(options())
      const holder = yield* holdLock(a, "/p")
      yield* Deferred.await(holder.granted)
      const timedOut = yield* Effect.exit(Effect.scoped(Effect.timeout(b.lock("/p/q", "write"), "200 millis")))
      expect(Exit.isFailure(timedOut) && Cause.failureOption(timedOut.cause).pipe(Option.map((e) => e._tag))).toEqual(
        Option.some("TimeoutException")
      )
      expect(yield* b.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
      // A read of /p/q/r arriving now is behind the holder only, not the withdrawn write.
      const reader = yield* Effect.fork(b.withLock("/p/q/r", "read")((lock) => Effect.succeed(lock.id)))
      yield* untilStats(b, (s) => s.pending === 1)
      yield* holder.release
      expect(yield* within(5_000, "reader", Fiber.join(reader))).toBeGreaterThan(0)
      expect(yield* a.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))

  it.live("a fiber that asks again for a path it holds waits for itself (until timed out); its lock stays held", () =>
    Effect.scoped(Effect.gen(function*() {
      const manager = yield* LockManager.makeEtcd(options())
      const lock = yield* manager.lock("/again", "write")
      const exit = yield* Effect.exit(Effect.scoped(Effect.timeout(manager.lock("/again/child", "read"), "300 millis")))
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(
        Option.some("TimeoutException")
      )
      yield* lock.ensureHeld("test")
      expect(yield* manager.stats).toEqual({ held: 1, pending: 0, nodes: 1 })
    })))

  it.live("a lockAll over 100 paths is one request (scanned in several transactions); over 128 it is refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const manager = yield* LockManager.makeEtcd(options())
      const paths = Array.from({ length: 100 }, (_, i) => `/many/p${i}`)
      const holder = yield* Effect.fork(Effect.scoped(Effect.zipRight(manager.lockAll(paths), Effect.never)))
      yield* untilStats(manager, (s) => s.held === 1)
      expect((yield* manager.stats).nodes).toBe(100)
      const blocked = yield* Effect.fork(manager.withLock("/many/p99/x", "read")((l) => Effect.succeed(l.id)))
      yield* untilStats(manager, (s) => s.pending === 1)
      // A path beside the combined request's is free at once.
      const free = yield* manager.withLock("/many/q", "write")((l) => Effect.succeed(l.id))
      expect(yield* manager.stats).toEqual({ held: 1, pending: 1, nodes: 101 })
      yield* Fiber.interrupt(holder)
      // Ids are arrival order: the reader arrived before the free write, and was granted after it.
      expect(yield* within(5_000, "blocked reader", Fiber.join(blocked))).toBeLessThan(free)

      const tooMany = Array.from({ length: 129 }, (_, i) => `/many/r${i}`)
      const refused = expectRemoteError(yield* Effect.exit(manager.withLockAll(tooMany)(Effect.void)), ["Rejected"])
      expect(refused.message).toContain("too many operations")
      expect(yield* manager.withLock("/many/after", "write")((l) => Effect.succeed(l.id))).toBeGreaterThan(0)
    })))

  it.live("a lockAll of long paths is scanned in transactions etcd accepts; puts past its limit are refused alone", () =>
    Effect.scoped(Effect.gen(function*() {
      const manager = yield* LockManager.makeEtcd(options())
      const held = yield* manager.lock("/unrelated", "write")
      // 60 paths: few enough operations for one transaction, too many bytes (each scan about twice a key).
      // 100: scanned in several transactions, which must fit etcd's 1.5 MiB per request as well.
      for (const count of [60, 100]) {
        const paths = Array.from({ length: count }, (_, i) => `/long/${i}-${"x".repeat(12_000)}`)
        const id = yield* within(10_000, `lockAll of ${count}`, manager.withLockAll(paths)((l) => Effect.succeed(l.id)))
        expect(id).toBeGreaterThan(held.id)
      }
      // Puts alone past the limit: refused, and the manager's other lock is kept.
      const huge = Array.from({ length: 100 }, (_, i) => `/long/${i}-${"y".repeat(20_000)}`)
      expectRemoteError(yield* Effect.exit(manager.withLockAll(huge)(Effect.void)), ["Rejected"])
      yield* held.ensureHeld("test")
      expect(yield* manager.stats).toEqual({ held: 1, pending: 0, nodes: 1 })
    })))

  it.live("a waiter whose lease is gone when it wakes fails instead of being granted", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* LockManager.makeEtcd(options())
      const b = yield* LockManager.makeEtcd(options())
      const holder = yield* holdLock(a, "/jepsen")
      const { lock } = yield* Deferred.await(holder.granted)
      const waiting = yield* Effect.fork(b.withLock("/jepsen", "write")((l) => Effect.succeed(l.id)))
      yield* untilStats(b, (s) => s.pending === 1)
      // Revoke b's lease behind its back (as if it had expired) and release the holder.
      yield* behindTheBack("/jepsen", lock.id, async (etcd, newer) => {
        const leases = new Set(newer.map((kv) => kv.lease))
        expect(leases.size).toBe(1)
        for (const lease of leases) await etcd.leaseClient.leaseRevoke({ ID: lease })
      })
      yield* holder.release
      expectRemoteError(yield* within(5_000, "waiter", Fiber.await(waiting)), ["Disconnected"])
      // The next request opens a new session.
      expect(yield* b.withLock("/jepsen", "write")((l) => Effect.succeed(l.id))).toBeGreaterThan(lock.id)
    })))

  // The deleted key is the request's only one, or (a lockAll of /all-a, free, and /all-b, behind the holder) not
  // its first: granted, it would hold /all-b with no key there, and another client could take /all-b too.
  for (
    const [title, held, request] of [
      [
        "a waiting request's key",
        "/deleted",
        (m: LockManager.LockManagerService<RemoteLockError>) => m.withLock("/deleted", "write")
      ],
      [
        "a key of a waiting lockAll other than its first",
        "/all-b",
        (m: LockManager.LockManagerService<RemoteLockError>) => m.withLockAll(["/all-a", "/all-b"])
      ]
    ] as const
  ) {
    it.live(`another client deletes ${title}: that request fails, never granted; the manager's other locks stay`, () =>
      Effect.scoped(Effect.gen(function*() {
        const a = yield* LockManager.makeEtcd(options())
        const b = yield* LockManager.makeEtcd(options())
        const unrelated = yield* b.lock("/kept-by-b", "write")
        const holder = yield* holdLock(a, held)
        const { lock } = yield* Deferred.await(holder.granted)
        const waiting = yield* Effect.fork(request(b)((l) => Effect.succeed(l.id)))
        yield* untilStats(b, (s) => s.pending === 1)
        yield* behindTheBack(held, lock.id, async (etcd, newer) => {
          expect(newer).toHaveLength(1)
          await etcd.kv.deleteRange({ key: newer[0].key })
        })
        yield* holder.release
        const error = expectRemoteError(yield* within(5_000, "waiter", Fiber.await(waiting)), ["Disconnected"])
        expect(error.message).toContain("another client of etcd deleted its key")
        expect(yield* b.stats).toEqual({ held: 1, pending: 0, nodes: 1 })
        yield* unrelated.ensureHeld("test")
        expect(yield* request(b)((l) => Effect.succeed(l.id))).toBeGreaterThan(lock.id)
      })))
  }

  it.live("another client deletes a held lock's key: the holder loses that lock at once, its other locks stay", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* LockManager.makeEtcd({ ...options(), ttl: "30 seconds" })
      const b = yield* LockManager.makeEtcd(options())
      const kept = yield* a.lock("/guard-kept", "write")
      const lock = yield* a.lock("/guarded", "write")
      yield* behindTheBack("/guarded", lock.id - 1, async (etcd, newer) => {
        expect(newer).toHaveLength(1)
        await etcd.kv.deleteRange({ key: newer[0].key })
      })
      // Told by its watch, long before a keepalive (a third of 30 s) could say anything.
      yield* within(5_000, "lost", lock.lost)
      const error = yield* Effect.flip(lock.ensureHeld("test"))
      expect(error._tag).toBe("LockLostError")
      yield* kept.ensureHeld("test")
      // The path is free for others now.
      yield* within(5_000, "B's lock", b.withLock("/guarded", "write")(Effect.void))
      // Deleted and put again (without a lease, as another client would): not the key this request put.
      const again = yield* a.lock("/guarded-again", "write")
      yield* behindTheBack("/guarded-again", again.id - 1, async (etcd, newer) => {
        expect(newer).toHaveLength(1)
        await etcd.kv.deleteRange({ key: newer[0].key })
        await etcd.put(newer[0].key).value("")
      })
      yield* within(5_000, "lost after a put again", again.lost)
      expect((yield* Effect.flip(again.ensureHeld("test")))._tag).toBe("LockLostError")
    })))

  it.live("another client revokes a manager's lease: its held locks are lost at once, not a keepalive later", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* LockManager.makeEtcd({ ...options(), ttl: "30 seconds" })
      const held = yield* Effect.fork(
        a.withLock("/revoked", "write")((lock) =>
          Effect.zipRight(
            within(5_000, "lost", lock.lost),
            Effect.map(Effect.either(lock.ensureHeld("test")), (result) => result._tag)
          )
        )
      )
      yield* untilStats(a, (stats) => stats.held === 1)
      yield* behindTheBack("/revoked", 0, async (etcd, newer) => {
        expect(newer).toHaveLength(1)
        await etcd.leaseClient.leaseRevoke({ ID: newer[0].lease })
      })
      expect(yield* Fiber.join(held)).toBe("Left")
    })))

  it.live("keys another client puts at a manager's likely next request names do not let it skip the queue", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* LockManager.makeEtcd(options())
      const b = yield* LockManager.makeEtcd(options())
      // A's first request shows how it names requests.
      const warm = yield* holdLock(a, "/planted-warm")
      const { lock } = yield* Deferred.await(warm.granted)
      const seen: Array<string> = []
      yield* behindTheBack("/planted-warm", lock.id - 1, async (_, newer) => {
        for (const kv of newer) seen.push(kv.key.toString())
      })
      expect(seen).toHaveLength(1)
      yield* warm.release
      // Its lease and count, and names that follow them, put without a lease.
      const [lease, count] = seen[0].slice(seen[0].lastIndexOf("/") + 1).split(".")
      yield* Effect.promise(async () => {
        const etcd = new Etcd3({ hosts: Array.from(single!.endpoints) })
        try {
          for (let n = Number(count) + 1; n <= Number(count) + 4; n++) {
            await etcd.put(`/in-process/planted/#w/${lease}.${n}`).value("")
          }
        } finally {
          etcd.close()
        }
      })
      const holder = yield* holdLock(a, "/planted")
      yield* Deferred.await(holder.granted)
      // B queues behind A's own key: a grant now would be two writers.
      const waiting = yield* Effect.fork(b.withLock("/planted", "write")(Effect.sync(now)))
      yield* untilStats(b, (stats) => stats.pending === 1 && stats.held === 0)
      const released = now()
      yield* holder.release
      expect(yield* within(5_000, "B after A", Fiber.join(waiting))).toBeGreaterThanOrEqual(released)
    })))

  it.live("keys under the prefix that are not lock requests (no lease, another layout) block nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      yield* Effect.promise(async () => {
        const etcd = new Etcd3({ hosts: Array.from(single!.endpoints) })
        try {
          for (const key of ["/in-process/foreign/#w/stray", "/in-process/foreign/config", "/in-process/#w/stray"]) {
            await etcd.put(key).value("left by something else")
          }
        } finally {
          etcd.close()
        }
      })
      const manager = yield* LockManager.makeEtcd(options())
      const id = yield* within(
        2_000,
        "write lock",
        manager.withLock("/foreign", "write")((lock) => Effect.succeed(lock.id))
      )
      expect(id).toBeGreaterThan(0)
    })))

  it.live("a scan answer over gRPC's default 4 MiB (three 1.4 MB foreign keys) is read: granted, no key left", () =>
    Effect.scoped(Effect.gen(function*() {
      const prefix = "/big-scan"
      const foreign = ["a", "b", "c"].map((c) => `${prefix}/#w/${c.repeat(1_400_000)}`)
      const etcd = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Etcd3({
            hosts: Array.from(single!.endpoints),
            grpcOptions: { "grpc.max_receive_message_length": -1 }
          })
        ),
        (etcd) => Effect.promise(() => etcd.delete().prefix(prefix).then(() => etcd.close()))
      )
      yield* Effect.promise(() => Promise.all(foreign.map((key) => etcd.put(key).value("x"))))
      const manager = yield* LockManager.makeEtcd({ endpoints: single!.endpoints, prefix })
      // Every request scans its ancestors' write keys, the root's among them.
      const id = yield* within(
        5_000,
        "write lock",
        manager.withLock("/doc", "write")((lock) => Effect.succeed(lock.id))
      )
      expect(id).toBeGreaterThan(0)
      const left = yield* Effect.promise(() => etcd.getAll().prefix(prefix).keys())
      expect(left.length === foreign.length && left.every((key) => foreign.includes(key))).toBe(true)
    })))

  it.live("a ttl of 100 days: its keepalives wait as long as a timer can, not 1 ms (no busy loop)", () =>
    Effect.scoped(Effect.gen(function*() {
      const overflows: Array<string> = []
      const onWarning = (warning: Error) => {
        if (warning.name === "TimeoutOverflowWarning") overflows.push(warning.message)
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("warning", onWarning)),
        () => Effect.sync(() => process.off("warning", onWarning))
      )
      const manager = yield* LockManager.makeEtcd({ ...options(), ttl: "100 days" })
      const lock = yield* within(5_000, "the lock", manager.lock("/long-ttl", "write"))
      yield* Effect.sleep("300 millis")
      yield* lock.ensureHeld("test")
      expect(overflows).toEqual([])
    })))

  it.live("closing a manager revokes its lease: its locks go at once, not a ttl later", () =>
    Effect.scoped(Effect.gen(function*() {
      const other = yield* LockManager.makeEtcd(options())
      const taken = yield* Deferred.make<void>()
      const closing = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const manager = yield* LockManager.makeEtcd({ ...options(), ttl: "30 seconds" })
        yield* manager.lock("/revoked", "write")
        yield* Deferred.succeed(taken, void 0)
        return yield* Effect.never
      })))
      yield* within(5_000, "the lock taken", Deferred.await(taken))
      const waiter = yield* Effect.fork(other.withLock("/revoked", "write")((l) => Effect.succeed(l.id)))
      yield* untilStats(other, (s) => s.pending === 1)
      const closedAt = now()
      yield* Fiber.interrupt(closing)
      yield* within(2_000, "waiter", Fiber.join(waiter))
      console.log(`granted ${(now() - closedAt).toFixed(0)} ms after the holder's manager closed (ttl 30 s)`)
    })))
})
