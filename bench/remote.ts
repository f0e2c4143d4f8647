/**
 * Remote lock round trips: `withLock` through a lock server process (`lockd`)
 * over a Unix domain socket and over TCP on loopback, and through etcd
 * clusters of 1 and 3 members on loopback (`LockManager.makeEtcd`), against
 * the in-process manager. One fiber measures the round-trip latency (every op
 * waits for the previous one); several fibers on distinct paths measure
 * throughput.
 *
 *   npx tsx bench/remote.ts
 *
 * `BENCH_OPS` sets the operations per run (default 5000), `BENCH_ETCD_OPS`
 * those of the etcd runs (default 1000: each is two etcd transactions),
 * `BENCH_FIBERS` the concurrent fibers (default 16), `BENCH_SMOKE=1` runs tiny
 * sizes. The etcd rows are skipped, with a note, when `etcd` is not
 * installed; their members keep their data in `ETCD_DATA_ROOT` (default: the
 * system's temp directory, a disk, as etcd is deployed; etcd fsyncs every
 * commit). The servers are separate processes, so on a 2-core machine they
 * compete with the client for the cores; the numbers include every side's CPU
 * work, the round trips and the event-loop hops.
 */
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as LockManager from "../src/LockManager.js"
import { etcdAvailable, type EtcdCluster, startCluster } from "../test/fixtures/etcd-cluster.js"
import { killAll } from "../test/fixtures/lock-processes.js"

const smoke = process.env.BENCH_SMOKE === "1"
const OPS = smoke ? 200 : Number(process.env.BENCH_OPS ?? 5_000)
const FIBERS = Number(process.env.BENCH_FIBERS ?? 16)
const ETCD_OPS = smoke ? 16 : Number(process.env.BENCH_ETCD_OPS ?? 1_000)
const WARMUP = Math.max(100, Math.floor(OPS / 10))

const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

interface Server {
  readonly address: string
  readonly stop: () => Promise<void>
}

/** Starts lockd (in its own process group: tsx runs the program in a child). */
const startLockd = (args: ReadonlyArray<string>): Promise<Server> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(tsx, ["src/bin/lockd.ts", "--grace-period", "0", ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
      detached: true
    })
    let out = ""
    child.once("exit", (code) => reject(new Error(`lockd exited (${code}) before listening: ${out}`)))
    child.stdout!.setEncoding("utf8").on("data", (data: string) => {
      out += data
      const match = out.match(/lockd listening on (\S+)/)
      if (match === null) return
      const exited = new Promise<void>((done) => child.once("exit", () => done()))
      resolve({
        address: match[1],
        stop: () => {
          process.kill(-child.pid!, "SIGTERM")
          return exited
        }
      })
    })
  })

const optionsOf = (address: string): LockManager.RemoteOptions => {
  if (address.startsWith("unix:")) return { socket: address.slice(5) }
  const [, host, port] = address.match(/^tcp:(.*):(\d+)$/)!
  return { host, port: Number(port) }
}

interface Result {
  readonly runner: string
  readonly fibers: number
  readonly ops: number
  readonly opsPerSecond: number
  readonly p50: number
  readonly p99: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]

/** `ops` withLock round trips split over `fibers` fibers, each on its own path. */
const measure = (
  runner: string,
  manager: LockManager.LockManagerService<unknown>,
  fibers: number,
  ops: number
) =>
  Effect.gen(function*() {
    const perFiber = Math.ceil(ops / fibers)
    const warmup = Math.min(WARMUP, Math.max(fibers, Math.floor(ops / 10)))
    const loop = (path: string, count: number, latencies: Array<number> | undefined) =>
      Effect.gen(function*() {
        const op = manager.withLock(path, "write")(Effect.void)
        for (let i = 0; i < count; i++) {
          const started = performance.now()
          yield* op
          latencies?.push(performance.now() - started)
        }
      })
    const paths = Array.from({ length: fibers }, (_, i) => `/bench/remote/f${i}`)
    yield* Effect.forEach(paths, (path) => loop(path, Math.ceil(warmup / fibers), undefined), {
      concurrency: "unbounded"
    })
    const latencies: Array<number> = []
    const started = performance.now()
    yield* Effect.forEach(paths, (path) => loop(path, perFiber, latencies), { concurrency: "unbounded" })
    const elapsed = performance.now() - started
    latencies.sort((a, b) => a - b)
    const stats = yield* manager.stats
    if (stats.held !== 0 || stats.pending !== 0 || stats.nodes !== 0) {
      return yield* Effect.dieMessage(`${runner}: manager not idle after the run: ${JSON.stringify(stats)}`)
    }
    return {
      runner,
      fibers,
      ops: latencies.length,
      opsPerSecond: latencies.length / (elapsed / 1000),
      p50: percentile(latencies, 0.5) * 1000,
      p99: percentile(latencies, 0.99) * 1000
    } satisfies Result
  })

const format = (results: ReadonlyArray<Result>): string => {
  const header = ["runner", "fibers", "ops", "ops/s", "p50 µs", "p99 µs", "vs in-process"]
  const base = new Map(results.filter((r) => r.runner === "in-process").map((r) => [r.fibers, r.opsPerSecond]))
  const rows = results.map((r) => [
    r.runner,
    String(r.fibers),
    String(r.ops),
    Math.round(r.opsPerSecond).toLocaleString("en-US"),
    r.p50.toFixed(1),
    r.p99.toFixed(1),
    r.runner === "in-process" ? "" : `1/${(base.get(r.fibers)! / r.opsPerSecond).toFixed(0)}`
  ])
  const widths = header.map((_, c) => Math.max(header[c].length, ...rows.map((row) => row[c].length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const main = async () => {
  const dir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "lockd-bench-"))
  const servers: Array<Server> = []
  const clusters: Array<EtcdCluster> = []
  try {
    const unix = await startLockd(["--socket", nodePath.join(dir, "lockd.sock")])
    servers.push(unix)
    const tcp = await startLockd(["--port", "0"])
    servers.push(tcp)
    const etcd = etcdAvailable()
    if (etcd) {
      // On disk unless told otherwise: etcd's fsync per commit is part of its cost.
      if (!smoke) process.env.ETCD_DATA_ROOT ??= os.tmpdir()
      clusters.push(await startCluster({ size: 1, name: "etcd-bench-1" }))
      clusters.push(await startCluster({ size: 3, name: "etcd-bench-3" }))
    }
    console.log(
      `cpus: ${os.cpus().length} x ${os.cpus()[0]?.model.trim()}; node ${process.version}; load ${
        os.loadavg()[0].toFixed(1)
      }`
    )
    console.log(`servers: ${unix.address}, ${tcp.address}; ${OPS} ops per run, warm-up ${WARMUP}`)
    console.log(
      etcd ?
        `etcd: ${
          clusters.map((c) => `${c.members.length} member(s), data in ${nodePath.dirname(c.dir)}`).join("; ")
        }; ` +
        `${ETCD_OPS} ops per run\n` :
        "etcd rows skipped: `etcd` is not installed (apt-get install etcd-server)\n"
    )
    const results = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const runners: ReadonlyArray<readonly [string, LockManager.LockManagerService<unknown>, number]> = [
        ["in-process", yield* LockManager.make, OPS],
        ["unix socket", yield* LockManager.makeRemote(optionsOf(unix.address)), OPS],
        ["tcp loopback", yield* LockManager.makeRemote(optionsOf(tcp.address)), OPS],
        ...(yield* Effect.forEach(clusters, (cluster) =>
          Effect.map(
            LockManager.makeEtcd({ endpoints: cluster.endpoints, prefix: "/bench" }),
            (manager) =>
              [
                `etcd ${cluster.members.length} member${cluster.members.length > 1 ? "s" : ""}`,
                manager,
                ETCD_OPS
              ] as const
          )))
      ]
      const out: Array<Result> = []
      for (const fibers of [1, FIBERS]) {
        for (const [name, manager, ops] of runners) out.push(yield* measure(name, manager, fibers, ops))
      }
      return out
    })))
    console.log(format(results))
    console.log(
      "\nfibers 1: each withLock waits for the previous one (round-trip latency); " +
        `fibers ${FIBERS}: concurrent withLocks on distinct paths (throughput).`
    )
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
    await Promise.all(clusters.map((cluster) => cluster.stop()))
    await killAll()
    nodeFs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
