/**
 * Cases that need a process of their own: `UV_THREADPOOL_SIZE` and
 * `LD_PRELOAD` act only when a process starts. The parent calls
 * `measureInChild` with the cases that share one environment; it starts this
 * file under the same Node and loader flags with that environment, and here
 * the cases run one after another with the parent's options through the
 * harness's `runCase` (same protocol, same checks). Their results go back as
 * JSON through a file. (One child per environment rather than per case: each
 * child spends seconds loading the sources, which the smoke run cannot afford
 * eight times over.)
 *
 * A module that has such cases exports `childCase(params)`, which builds the
 * in-process case from the JSON parameters its parent passed.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { type Case, isSkipped, type Measurement, type Options, runCase } from "./harness.js"

/** The modules that have child cases (a fixed list: the child imports nothing it is merely told to). */
const modules = {
  durable: () => import("./durable.js")
} as const satisfies Record<string, () => Promise<{ readonly childCase: (params: unknown) => Case }>>

export type ChildModule = keyof typeof modules

interface Request {
  readonly module: ChildModule
  /** The parameters of each case to run, in order. */
  readonly cases: ReadonlyArray<unknown>
  readonly options: Options
  readonly out: string
}

const script = fileURLToPath(import.meta.url)

/** Output kept from a child for an error message. */
const TAIL = 4_000

/**
 * Runs the cases `module.childCase(params)` in one child process with `env`
 * added to this one's environment; kills it after `timeoutMs` (a hang must not
 * stall the suite). Resolves with the child's measurements, in order.
 */
export const measureInChild = async (spec: {
  readonly module: ChildModule
  readonly cases: ReadonlyArray<unknown>
  readonly options: Options
  readonly env: Readonly<Record<string, string>>
  readonly timeoutMs: number
}): Promise<ReadonlyArray<Measurement>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-persistence-bench-child-"))
  try {
    const request: Request = {
      module: spec.module,
      cases: spec.cases,
      options: spec.options,
      out: path.join(dir, "result.json")
    }
    const child = spawn(process.execPath, [...process.execArgv, script], {
      env: { ...process.env, ...spec.env, BENCH_CHILD: JSON.stringify(request) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    const keep = (chunk: Buffer) => output = (output + chunk.toString("utf8")).slice(-TAIL)
    child.stdout.on("data", keep)
    child.stderr.on("data", keep)
    const timer = setTimeout(() => child.kill("SIGKILL"), spec.timeoutMs)
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once("error", reject)
      child.once("close", (code, signal) => resolve([code, signal]))
    }).finally(() => clearTimeout(timer))
    if (code !== 0) {
      const how = signal === null ? `exited with ${code}` : `was killed (${signal}) after ${spec.timeoutMs} ms or less`
      throw new Error(`child for ${JSON.stringify(spec.cases)} ${how}:\n${output}`)
    }
    return JSON.parse(fs.readFileSync(request.out, "utf8")) as ReadonlyArray<Measurement>
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const main = async (request: Request) => {
  const module = await modules[request.module]()
  const measurements: Array<Measurement> = []
  for (const params of request.cases) {
    const bench = module.childCase(params)
    const result = await runCase({ name: request.module, cases: [bench] }, bench, request.options)
    if (isSkipped(result)) throw new Error(`a child case cannot skip itself: ${result.skipped}`)
    measurements.push({
      subject: result.subject,
      baselines: result.baselines,
      ...(result.ceilings === undefined ? {} : { ceilings: result.ceilings }),
      ...(result.extra === undefined ? {} : { extra: result.extra })
    })
  }
  fs.writeFileSync(request.out, JSON.stringify(measurements))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const raw = process.env.BENCH_CHILD
  if (raw === undefined) {
    console.error("bench/child.ts runs a case for a parent bench run (BENCH_CHILD unset)")
    process.exitCode = 2
  } else {
    main(JSON.parse(raw) as Request).catch((error) => {
      console.error(error)
      process.exitCode = 1
    })
  }
}
