/**
 * A tiny benchmark harness. A case compares a subject with one or more
 * baselines on the same machine in the same process: after a warm-up, every
 * round runs the subject and each baseline once, so drift (thermal, GC debt,
 * a noisy neighbour) lands on all of them alike. Only ratios travel between
 * machines; the absolute numbers are printed for context.
 *
 * Two things keep the ratio honest on a shared, noisy machine:
 * - The order rotates: round `r` starts with runner `r mod n`. A fixed order
 *   biased the first runner: four identical bare-fs writers, run in a fixed
 *   order, put the first at 0.78x to 0.93x of the second (`.prof` scratch run).
 * - The ratio is the median of per-round ratios (subject over baseline in the
 *   same round, seconds apart), not the ratio of the two medians: when the
 *   machine's load shifts between rounds (it moved throughput 2x within one
 *   case here), the pairs shift together. The ratio of medians is kept in the
 *   JSON as `ratioOfMedians`.
 *
 * Every timed run starts after a full garbage collection: without it, the
 * runner that goes first in a round pays for the garbage of the one before
 * (measured: 2-3x slower in that position on a loaded 2-core machine; with
 * rotation but no collection, four identical runners still spread from 0.92x
 * to 1.16x). The collection is not free either: straight after one, the
 * Effect-based subjects run slower than in steady state (Client.write against
 * bare fs: 0.82x to 0.85x with it, 0.95x to 0.99x without, six alternating
 * runs). The table keeps the collection, the conservative choice;
 * `BENCH_GC=0` turns it off to see the other side.
 *
 * `BENCH_SMOKE=1` runs every case with tiny sizes and one round: it checks
 * that the suite still runs, not how fast.
 *
 * A case may also be skipped (its row then says why: the original library or
 * a C compiler is missing) or measured in a child process that has its own
 * environment (`UV_THREADPOOL_SIZE` and `LD_PRELOAD` act only when a process
 * starts): the child runs the same protocol with `runCase` and hands back its
 * result (bench/child.ts).
 */
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"

/**
 * One side of a comparison: `run` does `ops` operations and resolves with the
 * milliseconds they took (the runner decides what is timed, so set-up work
 * can stay outside the measurement).
 */
export interface Runner {
  readonly name: string
  readonly ops: number
  readonly run: () => Promise<number>
}

/** A runner that runs `effect` once per run and times it, end to end. */
export const effectRunner = <A, E>(name: string, ops: number, effect: Effect.Effect<A, E>): Runner => ({
  name,
  ops,
  run: async () => {
    const started = performance.now()
    await Effect.runPromise(effect)
    return performance.now() - started
  }
})

export interface Prepared {
  readonly subject: Runner
  readonly baselines: ReadonlyArray<Runner>
  /** Runs after the warm-up and after every round, untimed; throws to fail the suite. */
  readonly verify?: () => Promise<void>
  /** Called once after the last round: what the case measured besides throughput (counts, heap sizes). */
  readonly extra?: () => Extra | Promise<Extra>
  /** Called once when the case ends, whether it passed or failed (temp files, handles). */
  readonly teardown?: () => void | Promise<void>
  /**
   * Pairs of baselines to compare with each other, the same way the subject is
   * compared with each (median of per-round ratios). Used for a ceiling: the
   * calls the subject itself makes, with nothing around them, against the
   * target's baseline. The subject does that work and more, so it cannot beat
   * that ratio in the same run.
   */
  readonly ceilings?: ReadonlyArray<Ceiling>
}

/** `of` against `against`: names of two baselines of the case. */
export interface Ceiling {
  readonly of: string
  readonly against: string
}

export interface CeilingResult extends Ceiling {
  /** Median over rounds of `of` ops/s over `against` ops/s in the same round. */
  readonly ratio: number
}

/** Findings of a case besides throughput. */
export interface Extra {
  /** Printed under the case's description, one line each. */
  readonly lines: ReadonlyArray<string>
  /** Stored with the case in the JSON report. */
  readonly data: Readonly<Record<string, unknown>>
}

export interface Profile {
  readonly smoke: boolean
  /** Timed rounds of this run (after the warm-up). */
  readonly rounds: number
  /** The full size, or the smoke size in smoke mode. */
  readonly size: (full: number, smoke: number) => number
}

/** What a case cannot run without is missing: its row says why instead of giving numbers. */
export interface Skipped {
  readonly skipped: string
}

/** The numbers of a case, measured elsewhere (a child process) with the same protocol. */
export type Measurement = Pick<CaseResult, "subject" | "baselines" | "ceilings" | "extra">

/** A case measured in another process: its result, as the child's harness produced it. */
export interface MeasuredElsewhere {
  readonly measured: Measurement
}

export interface Case {
  readonly name: string
  /** What is compared with what, printed under the table. */
  readonly description: string
  /** Builds the inputs; called once, right before the case runs, so listing cases costs nothing. */
  readonly setup: (
    profile: Profile,
    options: Options
  ) => Prepared | Skipped | MeasuredElsewhere | Promise<Prepared | Skipped | MeasuredElsewhere>
}

export interface Suite {
  readonly name: string
  readonly cases: ReadonlyArray<Case>
}

export interface Options {
  readonly smoke: boolean
  /** Whether a full collection precedes every timed run (see `settle`). */
  readonly gc: boolean
  readonly rounds: number
  readonly warmup: number
  /** Runs only the cases whose `suite: name` contains this text (`BENCH_ONLY`). */
  readonly only?: string | undefined
}

export interface RunnerResult {
  readonly name: string
  readonly ops: number
  /** Throughput of each round, ops/s, in round order. */
  readonly rounds: ReadonlyArray<number>
  readonly median: number
  readonly min: number
  readonly max: number
}

export interface BaselineResult extends RunnerResult {
  /** Median over rounds of subject ops/s over baseline ops/s in the same round: above 1, the subject is faster. */
  readonly ratio: number
  /** Median subject ops/s over median baseline ops/s (drifts with the machine's load between rounds). */
  readonly ratioOfMedians: number
}

export interface CaseResult {
  readonly suite: string
  readonly name: string
  readonly description: string
  readonly subject: RunnerResult
  readonly baselines: ReadonlyArray<BaselineResult>
  readonly ceilings?: ReadonlyArray<CeilingResult>
  readonly extra?: Extra
}

export interface SkippedCase {
  readonly suite: string
  readonly name: string
  readonly description: string
  /** Why the case did not run. */
  readonly skipped: string
}

export const isSkipped = (result: CaseResult | SkippedCase): result is SkippedCase => "skipped" in result

export interface Machine {
  readonly cpus: number
  readonly cpuModel: string
  readonly node: string
  readonly platform: string
  readonly tmpdir: string
  readonly tmpdirFilesystem: string
}

export interface Report {
  readonly timestamp: string
  readonly options: Options
  readonly machine: Machine
  readonly cases: ReadonlyArray<CaseResult | SkippedCase>
}

export const HEADER = ["case", "runner", "ops/run", "median ops/s", "min..max ops/s", "subject/baseline"] as const

// `npm run bench` cannot pass `--expose-gc`; the flag still works when set
// before the first `gc` is looked up.
export const collectGarbage: (() => void) | undefined = (() => {
  const global = (globalThis as { gc?: () => void }).gc
  if (typeof global === "function") return global
  try {
    v8.setFlagsFromString("--expose-gc")
    const gc: unknown = vm.runInNewContext("gc")
    return typeof gc === "function" ? () => gc() : undefined
  } catch {
    return undefined
  }
})()

/** Starts a timed run on a clean slate: no garbage and no pending macrotask from the previous run. */
const settle = async (gc: boolean): Promise<void> => {
  if (gc) collectGarbage?.()
  await new Promise<void>((resolve) => setImmediate(resolve))
}

export const optionsFromEnv = (env: NodeJS.ProcessEnv = process.env): Options => {
  const smoke = env.BENCH_SMOKE === "1"
  const only = env.BENCH_ONLY === undefined || env.BENCH_ONLY === "" ? {} : { only: env.BENCH_ONLY }
  const int = (value: string | undefined, fallback: number) => {
    const n = value === undefined ? NaN : Number.parseInt(value, 10)
    return Number.isFinite(n) && n >= 0 ? n : fallback
  }
  return smoke ?
    { smoke, gc: collectGarbage !== undefined, rounds: 1, warmup: 1, ...only } :
    {
      ...only,
      smoke,
      gc: collectGarbage !== undefined && env.BENCH_GC !== "0",
      rounds: Math.max(1, int(env.BENCH_ROUNDS, 7)),
      warmup: int(env.BENCH_WARMUP, 2)
    }
}

export const machine = (): Machine => {
  const cpus = os.cpus()
  const tmpdir = os.tmpdir()
  let tmpdirFilesystem = "unknown"
  const run = (command: string, args: ReadonlyArray<string>) =>
    execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5_000 }).trim()
  try {
    // The mount's type: `stat -f` names ext4 "ext2/ext3" (they share a magic number).
    tmpdirFilesystem = run("findmnt", ["-n", "-o", "FSTYPE", "--target", tmpdir]) || "unknown"
  } catch {
    try {
      tmpdirFilesystem = run("stat", ["-f", "-c", "%T", tmpdir]) || "unknown"
    } catch {
      // Neither util-linux nor GNU stat (macOS, Windows): the field is informative only.
    }
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    tmpdir,
    tmpdirFilesystem
  }
}

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const throughput = (ops: number, ms: number): number => ops / (Math.max(ms, 1e-6) / 1000)

const summarise = (runner: Runner, rounds: ReadonlyArray<number>): RunnerResult => ({
  name: runner.name,
  ops: runner.ops,
  rounds,
  median: median(rounds),
  min: Math.min(...rounds),
  max: Math.max(...rounds)
})

/** Runs one case with the protocol above (also what a child process runs for its parent). */
export const runCase = async (suite: Suite, bench: Case, options: Options): Promise<CaseResult | SkippedCase> => {
  const profile: Profile = {
    smoke: options.smoke,
    rounds: options.rounds,
    size: (full, smoke) => options.smoke ? smoke : full
  }
  const prepared = await bench.setup(profile, options)
  const about = { suite: suite.name, name: bench.name, description: bench.description }
  if ("skipped" in prepared) return { ...about, skipped: prepared.skipped }
  if ("measured" in prepared) return { ...about, ...prepared.measured }
  try {
    return await measure(suite, bench, options, prepared)
  } finally {
    await prepared.teardown?.()
  }
}

const measure = async (suite: Suite, bench: Case, options: Options, prepared: Prepared): Promise<CaseResult> => {
  const runners = [prepared.subject, ...prepared.baselines]
  const verify = async (when: string) => {
    try {
      await prepared.verify?.()
    } catch (error) {
      throw new Error(`${bench.name}: check failed ${when}: ${error instanceof Error ? error.message : error}`, {
        cause: error
      })
    }
  }

  // Round `round` runs the runners starting from `round mod n`.
  const order = (round: number) => runners.map((_, k) => (k + round) % runners.length)

  for (let round = 0; round < options.warmup; round++) {
    for (const i of order(round)) {
      await settle(options.gc)
      await runners[i].run()
    }
  }
  await verify("after the warm-up")

  const samples: Array<Array<number>> = runners.map(() => [])
  for (let round = 0; round < options.rounds; round++) {
    for (const i of order(round)) {
      await settle(options.gc)
      samples[i].push(throughput(runners[i].ops, await runners[i].run()))
    }
    await verify(`after round ${round + 1}`)
  }

  const subject = summarise(prepared.subject, samples[0])
  const extra = await prepared.extra?.()
  const roundsOf = (name: string) => {
    const i = prepared.baselines.findIndex((runner) => runner.name === name)
    if (i < 0) throw new Error(`${bench.name}: no baseline named ${name}`)
    return samples[i + 1]
  }
  const perRound = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => median(a.map((ops, round) => ops / b[round]))
  const ceilings = prepared.ceilings?.map((c) => ({ ...c, ratio: perRound(roundsOf(c.of), roundsOf(c.against)) }))
  return {
    suite: suite.name,
    name: bench.name,
    description: bench.description,
    subject,
    baselines: prepared.baselines.map((runner, i) => {
      const result = summarise(runner, samples[i + 1])
      return {
        ...result,
        ratio: perRound(samples[0], result.rounds),
        ratioOfMedians: subject.median / result.median
      }
    }),
    ...(ceilings === undefined ? {} : { ceilings }),
    ...(extra === undefined ? {} : { extra })
  }
}

/** How a ceiling is printed under its case. */
export const formatCeiling = (c: CeilingResult): string =>
  `ceiling: ${c.of} at ${fmtRatio(c.ratio)}x of ${c.against} (the subject makes these calls, and more)`

const fmtOps = (n: number): string => Math.round(n).toLocaleString("en-US")

const fmtRatio = (n: number): string => n >= 10 ? n.toFixed(1) : n.toFixed(2)

export const formatTable = (results: ReadonlyArray<CaseResult | SkippedCase>): string => {
  const rows: Array<ReadonlyArray<string>> = [HEADER]
  for (const r of results) {
    if (isSkipped(r)) {
      rows.push([r.name, `skipped: ${r.skipped}`, "", "", "", ""])
      continue
    }
    const line = (result: RunnerResult, label: string, ratio: string) =>
      rows.push([
        label,
        result.name,
        fmtOps(result.ops),
        fmtOps(result.median),
        `${fmtOps(result.min)}..${fmtOps(result.max)}`,
        ratio
      ])
    line(r.subject, r.name, "")
    for (const b of r.baselines) line(b, "", fmtRatio(b.ratio))
  }
  const widths = HEADER.map((_, c) => Math.max(...rows.map((row) => row[c].length)))
  // Text columns flush left, numbers flush right.
  const cell = (text: string, c: number) => c < 2 ? text.padEnd(widths[c]) : text.padStart(widths[c])
  const render = (row: ReadonlyArray<string>) => row.map(cell).join("  ").trimEnd()
  return [render(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(render)].join("\n")
}

export const formatMachine = (m: Machine, options: Options): string =>
  [
    `cpus: ${m.cpus} x ${m.cpuModel}`,
    `node: ${m.node} (${m.platform})`,
    `tmpdir: ${m.tmpdir} (${m.tmpdirFilesystem})`,
    `mode: ${
      options.smoke ? "smoke (tiny sizes, 1 round)" : "full"
    }, warm-up ${options.warmup}, rounds ${options.rounds}, ` +
    `gc before each run: ${options.gc ? "yes" : "no"}`,
    "order: rotates each round; subject/baseline: median of the per-round ratios"
  ].join("\n")

const resultsDir = fileURLToPath(new URL("./results/", import.meta.url))

/**
 * Writes `<timestamp>.json` and `latest.json` (a `BENCH_ONLY` run: `<timestamp>-only.json`; a run without the GC
 * before each timed run: `<timestamp>-nogc.json`); a smoke run writes only `smoke.json`, so checking that the suite
 * runs never replaces real numbers.
 */
export const writeReport = (report: Report): ReadonlyArray<string> => {
  fs.mkdirSync(resultsDir, { recursive: true })
  const json = JSON.stringify(report, null, 2) + "\n"
  const stamp = report.timestamp.replace(/[:.]/g, "-")
  // A filtered run (BENCH_ONLY) is not the whole table, and a run without the GC is not the table's protocol:
  // neither becomes latest.json.
  const names = report.options.smoke ?
    ["smoke.json"] :
    report.options.only !== undefined ?
    [`${stamp}-only.json`] :
    !report.options.gc ?
    [`${stamp}-nogc.json`] :
    [`${stamp}.json`, "latest.json"]
  return names.map((name) => {
    const file = path.join(resultsDir, name)
    fs.writeFileSync(file, json)
    return file
  })
}

/** Whether a run with `options` runs the case (`BENCH_ONLY`). */
export const isSelected = (suite: string, name: string, options: Options): boolean =>
  options.only === undefined || `${suite}: ${name}`.includes(options.only)

export const runSuites = async (suites: ReadonlyArray<Suite>, options: Options = optionsFromEnv()): Promise<Report> => {
  const info = machine()
  const timestamp = new Date().toISOString()
  console.log(formatMachine(info, options))
  const results: Array<CaseResult | SkippedCase> = []
  for (const suite of suites) {
    for (const bench of suite.cases) {
      if (!isSelected(suite.name, bench.name, options)) continue
      const started = performance.now()
      process.stdout.write(`running ${suite.name}: ${bench.name} ... `)
      results.push(await runCase(suite, bench, options))
      console.log(`${((performance.now() - started) / 1000).toFixed(1)} s`)
    }
  }
  console.log()
  console.log(formatTable(results))
  console.log()
  for (const r of results) {
    console.log(`${r.name}: ${r.description}`)
    if (isSkipped(r)) {
      console.log(`  skipped: ${r.skipped}`)
      continue
    }
    for (const c of r.ceilings ?? []) console.log(`  ${formatCeiling(c)}`)
    for (const line of r.extra?.lines ?? []) console.log(`  ${line}`)
  }
  const report: Report = { timestamp, options, machine: info, cases: results }
  const files = writeReport(report)
  console.log()
  console.log(`results: ${files.map((f) => path.relative(process.cwd(), f)).join(", ")}`)
  return report
}
