/**
 * Process crashes, for real: a child process replaces a file in a loop
 * (test/fixtures/crash-writer.ts, through `write` and `sink`) and is killed
 * with SIGKILL at a random moment, many times. After every kill the target is
 * exactly one complete version, never empty, truncated or mixed, and no
 * announced commit is lost; `recover` then removes the leftover temp file.
 *
 * CRASH_KILLS sets the number of kills per mode (default 100), CRASH_SEED
 * replays the kill delays and write sizes of a failed run (the seed is in
 * every failure message). Process timing is not replayable, only the choices.
 */
import { afterAll, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import type { ExpectStatic } from "vitest"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import { apiOf, headerOf, type TempPhase, tempPhase, verify } from "./fixtures/crash-content.js"
import { makeClient } from "./utils/client.js"
import { mulberry32 } from "./utils/random.js"

const KILLS = Number(process.env.CRASH_KILLS ?? 100)
const SEED = process.env.CRASH_SEED !== undefined ?
  Number(process.env.CRASH_SEED) :
  Math.floor(Math.random() * 0x100000000)
const TEMP = /^\.target\.[0-9a-z]{20}\.tmp$/

/** Writers started ahead of time, each loading while the current one runs. */
const WARM = 2

let bundle: Bundle | undefined

beforeAll(async () => {
  bundle = await bundleFixture("./crash-writer.ts")
})

afterAll(() => bundle?.remove())

interface Writer {
  /** Starts writing versions from `first`. */
  readonly start: (first: number) => void
  /** Resolves once the first version is committed. */
  readonly ready: Promise<void>
  /** Resolves when the process has exited and its output is fully read. */
  readonly closed: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** The last version the writer announced as committed. */
  readonly lastCommitted: () => number
  readonly kill: () => void
  readonly stderr: () => string
}

/** Spawns a writer that loads and then waits for `start`. */
const spawnWriter = (running: Set<ChildProcess>, target: string, durable: boolean, seed: number): Writer => {
  const child = spawn(process.execPath, [bundle!.file, target, durable ? "1" : "0", String(seed)], {
    stdio: ["pipe", "pipe", "pipe"]
  })
  running.add(child)
  let pending = ""
  let stderr = ""
  let last = 0
  let onReady = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve
    child.on(
      "exit",
      (code, signal) =>
        reject(new Error(`the writer exited before "ready" (code ${code}, signal ${signal}): ${stderr}`))
    )
  })
  // Unobserved until started: a writer killed while waiting must not be an unhandled rejection.
  ready.catch(() => {})
  child.stdout.setEncoding("utf8").on("data", (data: string) => {
    pending += data
    const lines = pending.split("\n")
    pending = lines.pop()!
    for (const line of lines) {
      if (line.startsWith("c ")) last = Number(line.slice(2))
      else if (line === "ready") onReady()
    }
  })
  child.stderr.setEncoding("utf8").on("data", (data: string) => stderr += data)
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  )
  return {
    start: (first) => child.stdin.end(`${first}\n`),
    ready,
    closed,
    lastCommitted: () => last,
    kill: () => child.kill("SIGKILL"),
    stderr: () => stderr
  }
}

/**
 * Kill delays after "ready", spread so kills land in every phase: at once
 * (while the second version starts), within a few writes, and later on.
 */
const killDelay = (random: () => number): number => {
  const bucket = random()
  if (bucket < 0.25) return 0
  if (bucket < 0.5) return random() * 5
  if (bucket < 0.75) return 5 + random() * 35
  return 40 + random() * 110
}

type Landing = "BetweenWrites" | TempPhase

const crashLoop = async (expect: ExpectStatic, durable: boolean) => {
  const mode = durable ? "durable" : "not durable"
  const seed = (SEED + (durable ? 1 : 0)) >>> 0
  const random = mulberry32(seed)
  const dir = nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "persistence-crash-")))
  const target = nodePath.join(dir, "target")
  const { client } = await Effect.runPromise(makeClient({ durable }))
  const landings: Record<Landing, number> = { BetweenWrites: 0, Empty: 0, Partial: 0, Written: 0, Garbage: 0 }
  const inFlight = { write: 0, sink: 0 }
  let commits = 0
  const timing = { ready: 0, delay: 0, exit: 0 }
  let next = 1
  const started = Date.now()
  const running = new Set<ChildProcess>()
  let spawned = 0
  const warm: Array<Writer> = []
  const spawnNext = () => {
    if (spawned++ < KILLS) warm.push(spawnWriter(running, target, durable, Math.floor(random() * 0x100000000)))
  }
  for (let i = 0; i < WARM; i++) spawnNext()
  try {
    for (let kill = 1; kill <= KILLS; kill++) {
      const where = `${mode}, kill ${kill}/${KILLS}; replay with CRASH_SEED=${SEED}`
      const first = next
      const writer = warm.shift()!
      const delay = killDelay(random)
      const t0 = Date.now()
      writer.start(first)
      await writer.ready
      const t1 = Date.now()
      timing.ready += t1 - t0
      // The next writers load while this one runs; they touch nothing until started.
      spawnNext()
      if (delay > 0) await sleep(delay)
      const t2 = Date.now()
      timing.delay += t2 - t1
      writer.kill()
      const { code, signal } = await writer.closed
      timing.exit += Date.now() - t2
      expect(signal, `${where}: the writer died by itself (code ${code}): ${writer.stderr()}`).toBe("SIGKILL")
      const last = writer.lastCommitted()
      commits += last - first + 1

      // Before recovery: the target and at most one temp file, nothing else.
      const names = nodeFs.readdirSync(dir)
      const temps = names.filter((name) => TEMP.test(name))
      expect(names.filter((name) => name !== "target" && !TEMP.test(name)), where).toEqual([])
      expect(temps.length, `${where}: temp files ${temps.join(", ")}`).toBeLessThanOrEqual(1)

      const bytes = nodeFs.readFileSync(target)
      const verdict = verify(bytes)
      if (verdict._tag === "Invalid") expect.fail(`${where}: the target is not one complete version: ${verdict.reason}`)
      // A commit the writer announced survives; at most one more committed before it could say so.
      expect(verdict.version, `${where}: announced commits up to ${last}`).toBeGreaterThanOrEqual(last)
      expect(verdict.version, `${where}: announced commits up to ${last}`).toBeLessThanOrEqual(last + 1)

      if (temps.length === 0) {
        landings.BetweenWrites++
      } else {
        const temp = nodeFs.readFileSync(nodePath.join(dir, temps[0]))
        landings[tempPhase(temp)]++
        inFlight[apiOf(headerOf(temp)?.version ?? verdict.version + 1)]++
      }

      const removed = await Effect.runPromise(client.recover(dir))
      expect(removed.sort(), where).toEqual(temps.map((name) => nodePath.join(dir, name)).sort())
      expect(nodeFs.readdirSync(dir), where).toEqual(["target"])
      expect(nodeFs.readFileSync(target).equals(bytes), `${where}: recover changed the target`).toBe(true)
      next = verdict.version + 1
    }
  } finally {
    const left = Array.from(running, (child) => new Promise((resolve) => child.once("close", resolve)))
    for (const child of running) child.kill("SIGKILL")
    await Promise.all(left)
    nodeFs.rmSync(dir, { recursive: true, force: true })
  }
  const midWrite = landings.Empty + landings.Partial + landings.Written + landings.Garbage
  console.log(
    `crash (${mode}, seed ${SEED}): ${KILLS} kills in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
      `${commits} commits; between writes ${landings.BetweenWrites}, mid-write ${midWrite} ` +
      `(temp empty ${landings.Empty}, partly written ${landings.Partial}, fully written before rename ` +
      `${landings.Written}, garbage ${landings.Garbage}; write ${inFlight.write}, sink ${inFlight.sink}); ` +
      `mean ms per kill: start to ready ${(timing.ready / KILLS).toFixed(0)}, delay ${
        (timing.delay / KILLS).toFixed(0)
      }, kill to exit ${(timing.exit / KILLS).toFixed(0)}`
  )
  expect(landings.Garbage, "a temp file is always a prefix of the version being written").toBe(0)
}

// The two modes run side by side: most of the time goes to starting processes, and there are two cores.
describe.concurrent("process crash (SIGKILL) during atomic replacement", () => {
  const timeout = 30_000 + KILLS * 1_500

  it(
    "not durable: the target is always one complete version, recover removes the leftover temp file",
    async ({ expect }) => {
      await crashLoop(expect, false)
    },
    timeout
  )

  it(
    "durable: the target is always one complete version, recover removes the leftover temp file",
    async ({ expect }) => {
      await crashLoop(expect, true)
    },
    timeout
  )
})
