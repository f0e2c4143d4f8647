/**
 * Durable writes where a flush costs what it costs on real storage. This
 * machine's disk (a virtual disk) completes an fsync in about 0.2 ms; an
 * SSD's cache flush takes milliseconds. Each case runs in a child process
 * (bench/child.ts) started with the LD_PRELOAD shim of bench/slowfsync.c,
 * which adds an emulated device flush of 2 or 8 ms after every real fsync,
 * and with 4 (libuv's default) or 16 libuv threads: a blocked fsync holds a
 * pool thread for the whole flush, so the pool size decides how many flushes
 * can wait at once, and whether the quick calls (open, write, rename) queue
 * behind them.
 *
 * Flush modes (see the shim): `merge` is the main one. On Linux, a journaling
 * file system commits one transaction at a time and everything that arrives
 * during a commit waits for the next (ext4's jbd2, XFS's log), and the block
 * layer merges cache flushes the same way: concurrent fsyncs on an SSD share
 * flushes. `parallel` (flushes overlap: storage that serves independent
 * requests side by side, as some virtual and network disks do) and `serial`
 * (one flush per call, one at a time: no merging anywhere, the worst case
 * for fsync-heavy code) bound it on either side.
 *
 * Each writer fiber (or async loop, for the original) replaces its own file
 * in one shared directory, one write after another: a durable write returns
 * only once its rename is durable, so a writer's next write waits for it.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Client from "../src/Client.js"
import * as GroupCommit from "../src/internal/groupCommit.js"
import { measureInChild } from "./child.js"
import {
  type Case,
  effectRunner,
  type Extra,
  isSelected,
  type Measurement,
  type Options,
  type Prepared,
  type Runner,
  type Suite
} from "./harness.js"
import { loadOriginal } from "./originalLibrary.js"
import { slowFsync } from "./slowFsync.js"
import {
  countingFileSystem,
  countRuns,
  effectWriters,
  expectFiles,
  fileNames,
  makeClient,
  nodeFileSystem,
  promiseRunner,
  promiseWriters,
  type SyncCounts,
  totals,
  workspace
} from "./writers.js"

export type FlushMode = "merge" | "parallel" | "serial"

export interface Params {
  readonly writers: number
  /** The emulated flush, in milliseconds. */
  readonly flushMs: number
  readonly mode: FlushMode
  /** UV_THREADPOOL_SIZE of the child. */
  readonly threads: number
}

const WRITE_SIZE = 250

/** Writes per timed run, over all writers: about the same time per run at either flush. */
const opsPerRun = (flushMs: number) => flushMs <= 2 ? 480 : 160

const GROUP = "Client.write durable"
const ORIGINAL = "original Client.write durable"
const NO_GROUP = "Client.write durable, groupCommit: false"
const FLOOR = "platform calls alone (open, writeAll, sync, close, rename, group-committed directory fsync)"

const caseName = (p: Params) => `durable ${p.writers} writers, ${p.flushMs} ms ${p.mode} flush, ${p.threads} threads`

/** The counters of the shim in this process, if it runs here (see bench/slowfsync.c). */
const shimCounters = (): (() => ShimCounts) | undefined => {
  const file = process.env.SLOWFSYNC_COUNTERS
  if (file === undefined || file === "") return undefined
  return () => {
    const bytes = nodeFs.readFileSync(file)
    return { calls: Number(bytes.readBigInt64LE(0)), flushes: Number(bytes.readBigInt64LE(8)) }
  }
}

interface ShimCounts {
  readonly calls: number
  readonly flushes: number
}

interface RunCosts extends ShimCounts {
  /** CPU time of the whole process (every thread, user and system), microseconds. */
  readonly cpu: number
}

/** Wraps a runner to record, over each of its runs, the shim's counts and the process's CPU time. */
const instrument = (runner: Runner, read: (() => ShimCounts) | undefined) => {
  const runs: Array<RunCosts> = []
  const none: ShimCounts = { calls: 0, flushes: 0 }
  return {
    /** Per write, over every run but the first (or the only one). */
    perWrite: (): RunCosts => {
      const counted = runs.length > 1 ? runs.slice(1) : runs
      const writes = counted.length * runner.ops
      const sum = (key: keyof RunCosts) => counted.reduce((total, run) => total + run[key], 0)
      return { calls: sum("calls") / writes, flushes: sum("flushes") / writes, cpu: sum("cpu") / writes }
    },
    runner: {
      ...runner,
      run: async () => {
        const before = read?.() ?? none
        const cpu = process.cpuUsage()
        const ms = await runner.run()
        const used = process.cpuUsage(cpu)
        const after = read?.() ?? none
        runs.push({
          calls: after.calls - before.calls,
          flushes: after.flushes - before.flushes,
          cpu: used.user + used.system
        })
        return ms
      }
    } satisfies Runner
  }
}

/** The case as the child runs it, in its own process. */
export const childCase = (raw: unknown): Case => {
  const p = raw as Params
  return {
    name: caseName(p),
    description: "",
    setup: ({ size }): Prepared => {
      // The shim reads these at every fsync; none is in flight between cases.
      process.env.SLOWFSYNC_DELAY_US = String(p.flushMs * 1000)
      process.env.SLOWFSYNC_MODE = p.mode
      const read = shimCounters()
      const perWriter = size(Math.max(1, Math.round(opsPerRun(p.flushMs) / p.writers)), 1)
      const ops = p.writers * perWriter
      const data = new Uint8Array(WRITE_SIZE).fill(0x66)
      const ws = workspace(`durable-${p.writers}-${p.flushMs}-${p.mode}`)
      const names = fileNames(p.writers)
      const loaded = loadOriginal()
      const dirs = {
        group: ws.dir("group"),
        single: ws.dir("single"),
        floor: ws.dir("floor"),
        ...("original" in loaded ? { original: ws.dir("original") } : {})
      }
      const target = (dir: string, writer: number) => path.join(dir, names[writer])
      const groupCounts: SyncCounts = { directories: 0, files: 0, other: 0 }
      const singleCounts: SyncCounts = { directories: 0, files: 0, other: 0 }
      const client = (options: Client.ClientOptions, counts: SyncCounts) =>
        makeClient(options, countingFileSystem(nodeFileSystem, counts))
      const group = client({ durable: true }, groupCounts)
      const single = client({ durable: true, groupCommit: false }, singleCounts)
      const subject = countRuns(
        effectRunner(GROUP, ops, effectWriters(p.writers, perWriter, (w) => group.write(target(dirs.group, w), data))),
        groupCounts
      )
      const noGroup = countRuns(
        effectRunner(
          NO_GROUP,
          ops,
          effectWriters(p.writers, perWriter, (w) => single.write(target(dirs.single, w), data))
        ),
        singleCounts
      )
      const costs = new Map<string, ReturnType<typeof instrument>>()
      const counted = (runner: Runner) => {
        const wrapped = instrument(runner, read)
        costs.set(runner.name, wrapped)
        return wrapped.runner
      }
      // The floor: the subject's platform calls in its order, the directory
      // fsyncs shared by the same group commit, and nothing around them (no
      // lock, span, counter or checks of the input).
      const floorDir = dirs.floor
      const floorSync = GroupCommit.make((dir) =>
        Effect.map(nodeFileSystem.open(dir, { flag: "r" }), (file: FileSystem.File) => file.sync)
      )
      let floorTemps = 0
      const floorWrite = (writer: number) =>
        Effect.flatMap(Scope.make(), (scope) => {
          const temp = path.join(floorDir, `.floor-${floorTemps++}.tmp`)
          return Effect.flatMap(Scope.extend(nodeFileSystem.open(temp, { flag: "wx" }), scope), (file) =>
            file.writeAll(data).pipe(
              Effect.zipRight(file.sync),
              Effect.zipRight(Scope.close(scope, Exit.void)),
              Effect.zipRight(nodeFileSystem.rename(temp, target(floorDir, writer))),
              Effect.zipRight(floorSync(floorDir))
            ))
        })
      const floor = effectRunner(FLOOR, ops, effectWriters(p.writers, perWriter, floorWrite))
      const baselines: Array<Runner> = [counted(noGroup.runner), counted(floor)]
      if ("original" in loaded && dirs.original !== undefined) {
        const { Client: OriginalClient, LockManager: OriginalLockManager } = loaded.original
        const original = new OriginalClient({ manager: new OriginalLockManager(), durable: true })
        const dir = dirs.original
        baselines.unshift(counted(
          promiseRunner(
            ORIGINAL,
            ops,
            promiseWriters(p.writers, perWriter, (w) => original.write(target(dir, w), data))
          )
        ))
      }
      return {
        subject: counted(subject.runner),
        baselines,
        ...("original" in loaded ? { ceilings: [{ of: FLOOR, against: ORIGINAL }] } : {}),
        verify: async () => {
          for (const dir of Object.values(dirs)) expectFiles(dir, names, WRITE_SIZE)
          const last = noGroup.runs[noGroup.runs.length - 1]
          if (last !== undefined && last.directories < last.writes) {
            throw new Error(`groupCommit: false made ${last.directories} directory fsyncs for ${last.writes} writes`)
          }
        },
        extra: (): Extra => {
          const withGroup = totals(subject.runs)
          const without = totals(noGroup.runs)
          const perWrite = Object.fromEntries([...costs].map(([name, c]) => [name, c.perWrite()]))
          if (read !== undefined && Object.values(perWrite).some((c) => !(c.calls > 0))) {
            // Without the shim the case measures this machine's fast fsync, not the flush it claims.
            throw new Error(`${caseName(p)}: the fsync shim saw no call (LD_PRELOAD not honoured?)`)
          }
          const fmt = (n: number) => n.toFixed(3)
          const each = (f: (name: string, c: RunCosts) => string) =>
            Object.entries(perWrite).map(([name, c]) => f(name, c)).join(", ")
          const lines = [
            `directory fsyncs per write: group commit ${fmt(withGroup.directoryFsyncsPerWrite)}, ` +
            `groupCommit: false ${fmt(without.directoryFsyncsPerWrite)}` +
            ("missing" in loaded ? `; original: skipped, ${loaded.missing}` : ", original 1"),
            `process CPU per write (all threads): ${each((name, c) => `${name} ${Math.round(c.cpu)} us`)}`
          ]
          if (read !== undefined) {
            lines.push(
              `emulated flushes per write (fsyncs per write): ${
                each((name, c) => `${name} ${fmt(c.flushes)} (${fmt(c.calls)})`)
              }`
            )
          }
          return { lines, data: { ...p, groupCommit: withGroup, noGroupCommit: without, perWrite } }
        },
        teardown: ws.teardown
      }
    }
  }
}

/** One child per pool size (and so per process environment): the cases of this run that it runs, by name. */
const children = new Map<number, Promise<ReadonlyMap<string, Measurement>>>()

const measureGroup = (threads: number, options: Options): Promise<ReadonlyMap<string, Measurement>> => {
  let measured = children.get(threads)
  if (measured === undefined) {
    const cases = allParams.filter((p) => p.threads === threads && isSelected(suite.name, caseName(p), options))
    measured = slowFsync().then(async (shim) => {
      if ("missing" in shim) return new Map()
      const counters = nodeFs.mkdtempSync(path.join(os.tmpdir(), "effect-persistence-slowfsync-"))
      try {
        const results = await measureInChild({
          module: "durable",
          cases,
          options,
          env: {
            LD_PRELOAD: [shim.path, process.env.LD_PRELOAD].filter(Boolean).join(" "),
            UV_THREADPOOL_SIZE: String(threads),
            // fsync must run on the pool, where the shim sees it, not through io_uring.
            UV_USE_IO_URING: "0",
            // Set now, so that changing them later in the child replaces a value in place.
            SLOWFSYNC_DELAY_US: "0",
            SLOWFSYNC_MODE: "parallel",
            SLOWFSYNC_COUNTERS: path.join(counters, "counters")
          },
          timeoutMs: options.smoke ? 180_000 : 60 * 60_000
        })
        return new Map(cases.map((p, i) => [caseName(p), results[i]]))
      } finally {
        nodeFs.rmSync(counters, { recursive: true, force: true })
      }
    })
    children.set(threads, measured)
  }
  return measured
}

/** The case as the suite lists it: measured in the child of its pool size, with the shim. */
const durableCase = (p: Params): Case => ({
  name: caseName(p),
  description: `Client.write durable (group commit) of ${WRITE_SIZE} B by ${p.writers} writers, each replacing its ` +
    `own file in one directory of the temp dir, every fsync followed by an emulated ${p.flushMs} ms device flush ` +
    `(${p.mode}), UV_THREADPOOL_SIZE=${p.threads}; vs the original library's durable Client.write (file fsync, ` +
    "rename, directory fsync per write) and vs the same Client with groupCommit: false",
  setup: async (_, options) => {
    const shim = await slowFsync()
    if ("missing" in shim) return { skipped: shim.missing }
    const measured = (await measureGroup(p.threads, options)).get(caseName(p))
    if (measured === undefined) throw new Error(`${caseName(p)}: its child did not run it`)
    return { measured }
  }
})

const grid = (mode: FlushMode): Array<Params> =>
  [2, 8].flatMap((flushMs) =>
    [4, 16].flatMap((threads) => [16, 64].map((writers) => ({ writers, flushMs, mode, threads })))
  )

const modes = (process.env.BENCH_FSYNC_MODES ?? "merge").split(",").filter((m): m is FlushMode =>
  m === "merge" || m === "parallel" || m === "serial"
)
const allParams: ReadonlyArray<Params> = modes.flatMap(grid)

export const suite: Suite = {
  name: "durable",
  cases: allParams.map(durableCase)
}
