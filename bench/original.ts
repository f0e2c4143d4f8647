/**
 * The project against the library it replaces: the original "Persistence"
 * 1.22.4 (bench/originalLibrary.ts), side by side in one process, on the
 * workloads of its own API (path locks, atomic writes). The subject is the
 * project; a ratio above 1 means the project is faster. Without the original
 * (a clone without `../shared`), these cases are skipped with a note.
 *
 * The last case is not against the original: it measures what the Client's
 * observability (its span, its operations counter and the lock metrics)
 * costs on a tmpfs write, where the kernel takes the least of the time.
 */
import * as Effect from "effect/Effect"
import type * as Metric from "effect/Metric"
import * as nodeFs from "node:fs"
import * as path from "node:path"
import { makeDisk, replace } from "../src/internal/atomic.js"
import * as Metrics from "../src/internal/metrics.js"
import * as LockManager from "../src/LockManager.js"
import { mulberry32 } from "../test/utils/random.js"
import { type Case, effectRunner, type Extra, type Prepared, type Runner, type Skipped, type Suite } from "./harness.js"
import { loadOriginal, type Original, type OriginalLockManager } from "./originalLibrary.js"
import {
  effectWriters,
  expectFiles,
  fileNames,
  makeClient,
  nodeFileSystem,
  promiseRunner,
  promiseWriters,
  tempBeside,
  workspace
} from "./writers.js"

const SEED = Number.parseInt(process.env.BENCH_SEED ?? "", 10) || 0x5eed

/** Runs `setup` with the original library, or skips the case with the reason it is missing. */
const withOriginal = (setup: (original: Original) => Prepared | Skipped): Prepared | Skipped => {
  const loaded = loadOriginal()
  return "missing" in loaded ? { skipped: loaded.missing } : setup(loaded.original)
}

/** `count` paths of `depth` segments, each segment one of 8 names for its level (as bench/locks.ts draws them). */
const randomPaths = (count: number, depth: number, seed: number): Array<string> => {
  const next = mulberry32(seed)
  return Array.from({ length: count }, () => {
    let p = ""
    for (let level = 0; level < depth; level++) p += `/l${level}n${Math.floor(next() * 8)}`
    return p
  })
}

const expectIdle = async (manager: LockManager.LockManagerService): Promise<void> => {
  const stats = await Effect.runPromise(manager.stats)
  if (stats.held !== 0 || stats.pending !== 0 || stats.nodes !== 0) {
    throw new Error(`lock manager not idle: ${JSON.stringify(stats)}`)
  }
}

/** The original keeps one resolver per lock it granted and has not released (its private `idToRelease`). */
const expectOriginalIdle = (manager: OriginalLockManager): void => {
  const held = (manager as unknown as { idToRelease?: Map<number, unknown> }).idToRelease?.size ?? 0
  if (held !== 0) throw new Error(`original lock manager still holds ${held} lock(s)`)
}

// --- locks ---

const ORIGINAL_LOCK = "original acquire/release"
const UNCONTENDED_FLOOR = "floor: the same loop, an uninterruptible region and no lock"
const CONTENDED_FLOOR = "floor: the same fibers and yields, no lock"

/**
 * The least an interruption-safe lock costs on the Effect runtime, for a
 * floor: the region a `withLock` opens (uninterruptible, the body restored,
 * its outcome observed by one handler frame), with no lock table, no
 * validation, no metrics, and nothing built per call (the handlers are
 * shared). `Effect.exit` + `flatMap` would cost one frame more than the lock
 * itself now makes, so the floor uses `matchCauseEffect` as the lock does.
 */
const bracketOnly = Effect.uninterruptibleMask((restore) =>
  Effect.matchCauseEffect(restore(Effect.void), { onFailure: Effect.failCause, onSuccess: Effect.succeed })
)

const WAKE_UP_FLOOR = "floor: a FIFO read/write lock per path on Effect.async (no hierarchy, no ownership)"

/**
 * The least a lock whose waiters park in `Effect.async` costs, for a floor
 * of the contended case: one FIFO queue per path, reads shared, nothing else
 * (no hierarchy, no ownership, no metrics, no withdrawal of an interrupted
 * waiter). Correct only for this workload: one fiber per loop, never
 * interrupted.
 */
const wakeUpFloor = (paths: ReadonlyArray<string>) => {
  interface Slot {
    readers: number
    writer: boolean
    readonly queue: Array<{ readonly write: boolean; readonly go: () => void }>
  }
  const slots = new Map(paths.map((p): [string, Slot] => [p, { readers: 0, writer: false, queue: [] }]))
  const free = (slot: Slot, write: boolean) => write ? slot.readers === 0 && !slot.writer : !slot.writer
  const take = (slot: Slot, write: boolean) => {
    if (write) slot.writer = true
    else slot.readers++
  }
  const pump = (slot: Slot) => {
    while (slot.queue.length > 0 && free(slot, slot.queue[0].write)) {
      const next = slot.queue.shift()!
      take(slot, next.write)
      next.go()
    }
  }
  const waiter = (write: boolean, go: () => void) => ({ write, go })
  const release = (slot: Slot, write: boolean) => {
    if (write) slot.writer = false
    else slot.readers--
    pump(slot)
  }
  // As the project's lock does: a free lock is taken in the region's first
  // step, a waiter parks in one Effect.async resumed with the body, and one
  // handler frame releases.
  return <A>(path: string, mode: "read" | "write", body: Effect.Effect<A>): Effect.Effect<A> =>
    Effect.uninterruptibleMask((restore) => {
      const slot = slots.get(path)!
      const write = mode === "write"
      let held = body
      if (slot.queue.length === 0 && free(slot, write)) take(slot, write)
      else {
        held = Effect.async<A>((resume) => {
          slot.queue.push(waiter(write, () => resume(body)))
        })
      }
      return Effect.matchCauseEffect(restore(held), {
        onFailure: (cause) => {
          release(slot, write)
          return Effect.failCause(cause)
        },
        onSuccess: (value: A) => {
          release(slot, write)
          return Effect.succeed(value)
        }
      })
    })
}

const uncontended: Case = {
  name: "lock uncontended, depth 4, vs original",
  description: "sequential write withLock on random depth-4 paths (nothing inside) vs the original's " +
    "await acquire(path, \"write\") then release(id), in a plain async loop (target: at least 5x); the floor is " +
    "the same Effect loop with only the uninterruptible region a lock needs",
  setup: ({ size }) =>
    withOriginal((original) => {
      const paths = randomPaths(size(50_000, 200), 4, SEED)
      const manager = Effect.runSync(LockManager.make)
      const theirs = new original.LockManager()
      return {
        subject: effectRunner(
          "LockManager.withLock",
          paths.length,
          Effect.forEach(paths, (p) => manager.withLock(p, "write")(Effect.void), { discard: true })
        ),
        baselines: [
          promiseRunner(ORIGINAL_LOCK, paths.length, async () => {
            for (const p of paths) theirs.release(await theirs.acquire(p, "write"))
          }),
          effectRunner(
            UNCONTENDED_FLOOR,
            paths.length,
            Effect.forEach(paths, () => bracketOnly, { discard: true })
          )
        ],
        ceilings: [{ of: UNCONTENDED_FLOOR, against: ORIGINAL_LOCK }],
        verify: async () => {
          await expectIdle(manager)
          expectOriginalIdle(theirs)
        }
      }
    })
}

const FIBERS = 64
const CONTENDED_PATHS = Array.from({ length: 8 }, (_, i) => `/data/k${i}`)

const contended: Case = {
  name: "lock contended, 64 fibers on 8 paths, vs original",
  description: "64 fibers (64 async loops for the original), 8 sibling paths, 25% writes / 75% reads, one yield " +
    "inside each hold (Effect.yieldNow; for the original, await of a resolved Promise) (target: at least 3x); the " +
    "floors are the same 64 fibers and yields without a lock, and with a minimal FIFO read/write lock per path " +
    "on Effect.async",
  setup: ({ size }) =>
    withOriginal((original) => {
      const perFiber = size(600, 4)
      const next = mulberry32(SEED + 4)
      const work = Array.from({ length: FIBERS }, () =>
        Array.from({ length: perFiber }, () => ({
          path: CONTENDED_PATHS[Math.floor(next() * CONTENDED_PATHS.length)],
          mode: next() < 0.25 ? "write" as const : "read" as const
        })))
      const ops = FIBERS * perFiber
      const manager = Effect.runSync(LockManager.make)
      const theirs = new original.LockManager()
      return {
        subject: effectRunner(
          "LockManager.withLock",
          ops,
          Effect.forEach(
            work,
            (items) =>
              Effect.forEach(items, ({ mode, path }) => manager.withLock(path, mode)(Effect.yieldNow()), {
                discard: true
              }),
            { concurrency: "unbounded", discard: true }
          )
        ),
        baselines: [
          promiseRunner(ORIGINAL_LOCK, ops, async () => {
            await Promise.all(work.map(async (items) => {
              for (const { mode, path } of items) {
                const id = await theirs.acquire(path, mode)
                await Promise.resolve()
                theirs.release(id)
              }
            }))
          }),
          effectRunner(
            CONTENDED_FLOOR,
            ops,
            Effect.forEach(
              work,
              (items) => Effect.forEach(items, () => Effect.yieldNow(), { discard: true }),
              { concurrency: "unbounded", discard: true }
            )
          ),
          effectRunner(
            WAKE_UP_FLOOR,
            ops,
            Effect.suspend(() => {
              const lock = wakeUpFloor(CONTENDED_PATHS)
              return Effect.forEach(
                work,
                (items) =>
                  Effect.forEach(items, ({ mode, path }) => lock(path, mode, Effect.yieldNow()), { discard: true }),
                { concurrency: "unbounded", discard: true }
              )
            })
          )
        ],
        ceilings: [
          { of: CONTENDED_FLOOR, against: ORIGINAL_LOCK },
          { of: WAKE_UP_FLOOR, against: ORIGINAL_LOCK }
        ],
        verify: async () => {
          await expectIdle(manager)
          expectOriginalIdle(theirs)
        }
      }
    })
}

// --- writes ---

const WRITE_SIZE = 250
const WRITERS = 16
const PLATFORM_WRITE = "FileSystem.writeFile wx + rename (platform, no lock)"
const ORIGINAL_WRITE = "original Client.write"

/** `/dev/shm` when it is a tmpfs mount here. */
const tmpfs = (): string | undefined => {
  try {
    return nodeFs.statSync("/dev/shm").isDirectory() ? "/dev/shm" : undefined
  } catch {
    return undefined
  }
}

const writeCase = (storage: "ext4" | "tmpfs"): Case => ({
  name: `write 250 B, 16 writers, ${storage === "ext4" ? "temp dir" : "tmpfs"}, vs original`,
  description: `Client.write (not durable) of ${WRITE_SIZE} B by ${WRITERS} concurrent fibers, each replacing its ` +
    `own file in one directory ${
      storage === "ext4" ? "of the temp dir (see tmpdir above)" : "on tmpfs (/dev/shm)"
    }, vs the original's Client.write (mkdir -p, writeFile of a temp file, rename) by ${WRITERS} async loops ` +
    `(target: at least ${storage === "ext4" ? "1.0" : "1.5"}x), and vs the two platform calls the Client makes, ` +
    "alone (no lock, no span): the ceiling",
  setup: ({ size }) =>
    withOriginal((original): Prepared | Skipped => {
      const under = storage === "tmpfs" ? tmpfs() : undefined
      if (storage === "tmpfs" && under === undefined) return { skipped: "no tmpfs at /dev/shm" }
      const perWriter = size(125, 3)
      const ops = WRITERS * perWriter
      const data = new Uint8Array(WRITE_SIZE).fill(0x67)
      const ws = workspace(`original-write-${storage}`, under)
      const dirs = { client: ws.dir("client"), original: ws.dir("original"), platform: ws.dir("platform") }
      const names = fileNames(WRITERS)
      const target = (dir: string, writer: number) => path.join(dir, names[writer])
      const client = makeClient({})
      const theirs = new original.Client({ manager: new original.LockManager() })
      return {
        subject: effectRunner(
          "Client.write",
          ops,
          effectWriters(WRITERS, perWriter, (w) => client.write(target(dirs.client, w), data))
        ),
        baselines: [
          promiseRunner(
            ORIGINAL_WRITE,
            ops,
            promiseWriters(WRITERS, perWriter, (w) => theirs.write(target(dirs.original, w), data))
          ),
          effectRunner(
            PLATFORM_WRITE,
            ops,
            effectWriters(WRITERS, perWriter, (w) =>
              Effect.suspend(() => {
                const file = target(dirs.platform, w)
                const temp = tempBeside(file)
                return Effect.zipRight(
                  nodeFileSystem.writeFile(temp, data, { flag: "wx" }),
                  nodeFileSystem.rename(temp, file)
                )
              }))
          )
        ],
        ceilings: [{ of: PLATFORM_WRITE, against: ORIGINAL_WRITE }],
        verify: async () => {
          for (const dir of Object.values(dirs)) expectFiles(dir, names, WRITE_SIZE)
        },
        teardown: ws.teardown
      }
    })
})

// --- what the observability costs ---

type AnyMetric = Metric.Metric<unknown, any, unknown>

/** The library's metrics: the operations counter and the three lock metrics. */
const libraryMetrics: ReadonlyArray<AnyMetric> = [
  Metrics.operations,
  Metrics.locksHeld,
  Metrics.locksPending,
  Metrics.lockWaitSeconds
] as ReadonlyArray<unknown> as ReadonlyArray<AnyMetric>

const noop = () => {}

/**
 * Runs `runner` with every update of the library's metrics turned into a
 * no-op (the metric objects are shared: the Client and the lock manager call
 * the same `unsafeUpdate`/`unsafeModify`), restored when the run ends. The
 * computation of the values (a clock read, a label lookup) still runs.
 */
const withoutMetrics = (runner: Runner): Runner => ({
  ...runner,
  run: async () => {
    const saved = libraryMetrics.map((m) => ({ unsafeUpdate: m.unsafeUpdate, unsafeModify: m.unsafeModify }))
    for (const m of libraryMetrics) Object.assign(m, { unsafeUpdate: noop, unsafeModify: noop })
    try {
      return await runner.run()
    } finally {
      libraryMetrics.forEach((m, i) => Object.assign(m, saved[i]))
    }
  }
})

/**
 * Records the milliseconds of each timed run of the runners it wraps, by
 * round (`roundEnded` after the warm-up and after each round, from `verify`),
 * for a statistic the harness does not print: the median over rounds of one
 * runner's time over another's.
 */
const recordRounds = () => {
  const rounds: Array<Map<string, number>> = []
  let current = new Map<string, number>()
  let warmedUp = false
  const wrap = (runner: Runner): Runner => ({
    ...runner,
    run: async () => {
      const ms = await runner.run()
      current.set(runner.name, ms)
      return ms
    }
  })
  return Object.assign(wrap, {
    roundEnded: () => {
      // The first call ends the warm-up, which does not count.
      if (warmedUp) rounds.push(current)
      warmedUp = true
      current = new Map()
    },
    /** Median over rounds of `a`'s throughput over `b`'s. */
    medianRatio: (a: string, b: string): number => {
      const ratios = rounds.map((r) => r.get(b)! / r.get(a)!).sort((x, y) => x - y)
      const mid = ratios.length >> 1
      return ratios.length % 2 === 1 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2
    }
  })
}

const FULL = "Client.write"
const NO_TRACE = "Client.write, tracer disabled, metrics stubbed"
const BARE = "withLock + replace, metrics stubbed (no span helper)"
const WITH_SPAN = "the same in Effect.withSpan (Effect's own span, for a floor)"

const observability: Case = {
  name: "observability share of a tmpfs write",
  description: `Client.write (not durable) of ${WRITE_SIZE} B by ${WRITERS} fibers on tmpfs, as it ships, vs the ` +
    "same Client run under Effect.withTracerEnabled(false) (where a write makes no span) with the updates of the " +
    "operations counter and the lock metrics stubbed out for the run (the same code, nothing copied), and vs the " +
    "steps the Client runs inside its span helper (LockManager.withLock around the internal replace, metrics " +
    "stubbed, no span helper, no path validation), and those steps in Effect.withSpan: what Effect's own span costs " +
    "on them (the floor of a span); the cost share is 1 - subject/baseline (target: at most 10%)",
  setup: ({ size }): Prepared | Skipped => {
    const under = tmpfs()
    if (under === undefined) return { skipped: "no tmpfs at /dev/shm" }
    const perWriter = size(125, 3)
    const ops = WRITERS * perWriter
    const data = new Uint8Array(WRITE_SIZE).fill(0x68)
    const ws = workspace("observability", under)
    const dirs = { full: ws.dir("full"), noTrace: ws.dir("no-trace"), bare: ws.dir("bare"), withSpan: ws.dir("span") }
    const names = fileNames(WRITERS)
    const target = (dir: string, writer: number) => path.join(dir, names[writer])
    const client = makeClient({})
    const manager = Effect.runSync(LockManager.make)
    const disk = makeDisk(nodeFileSystem, { durable: false, tempSuffix: "tmp", groupCommit: true })
    const timed = recordRounds()
    return {
      subject: timed(
        effectRunner(FULL, ops, effectWriters(WRITERS, perWriter, (w) => client.write(target(dirs.full, w), data)))
      ),
      baselines: [
        timed(withoutMetrics(effectRunner(
          NO_TRACE,
          ops,
          Effect.withTracerEnabled(
            effectWriters(WRITERS, perWriter, (w) => client.write(target(dirs.noTrace, w), data)),
            false
          )
        ))),
        timed(withoutMetrics(effectRunner(
          BARE,
          ops,
          effectWriters(WRITERS, perWriter, (w) => {
            const file = target(dirs.bare, w)
            return manager.withLock(file, "write")((lock) => replace(disk, "Client.write", file, lock, data))
          })
        ))),
        timed(withoutMetrics(effectRunner(
          WITH_SPAN,
          ops,
          effectWriters(WRITERS, perWriter, (w) => {
            const file = target(dirs.withSpan, w)
            return manager.withLock(file, "write")((lock) => replace(disk, "Client.write", file, lock, data)).pipe(
              Effect.withSpan("Client.write", { attributes: { "persistence.path": file }, captureStackTrace: false })
            )
          })
        )))
      ],
      verify: async () => {
        for (const dir of Object.values(dirs)) expectFiles(dir, names, WRITE_SIZE)
        await expectIdle(manager)
        timed.roundEnded()
      },
      extra: (): Extra => {
        const share = (baseline: string) => 1 - timed.medianRatio(FULL, baseline)
        const pct = (x: number) => `${(x * 100).toFixed(1)}%`
        return {
          lines: [
            `cost of the span, counter and lock metrics, as a share of a tmpfs Client.write: ${
              pct(share(NO_TRACE))
            } (against the tracer disabled and metrics stubbed), ${
              pct(share(BARE))
            } (against withLock + replace: the span helper and path validation too); target at most 10%`,
            `floor: Effect.withSpan alone costs ${
              pct(1 - timed.medianRatio(WITH_SPAN, BARE))
            } of withLock + replace (the same steps in Effect's own span, metrics stubbed)`
          ],
          data: {
            shareTracerOff: share(NO_TRACE),
            shareNoHelper: share(BARE),
            withSpanShare: 1 - timed.medianRatio(WITH_SPAN, BARE)
          }
        }
      },
      teardown: ws.teardown
    }
  }
}

export const suite: Suite = {
  name: "original",
  cases: [uncontended, contended, writeCase("ext4"), writeCase("tmpfs"), observability]
}
