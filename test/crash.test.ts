/**
 * Process crashes, for real: a child process replaces a file in a loop
 * (test/fixtures/crash-writer.ts, through `write` and `sink`) and is killed
 * with SIGKILL at a random moment, many times. After every kill the target is
 * exactly one complete version, never empty, truncated or mixed, and no
 * announced commit is lost; `recover` then removes the leftover temp file.
 *
 * The same loop runs a writer that goes through `Client.layerKeyValueStore`
 * (`set` and `modifyUint8Array` on three keys in turn, one of them in nested
 * directories): after every kill each key holds one complete version.
 *
 * CRASH_KILLS sets the number of kills per mode (default 100; the store's
 * loops get a fifth of it, or CRASH_KV_KILLS), CRASH_SEED replays the kill
 * delays and write sizes of a failed run (the seed is in every failure
 * message). Process timing is not replayable, only the choices.
 */
import { afterAll, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import type { ExpectStatic } from "vitest"
import { encodeKey } from "../src/internal/keyValueStore.js"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import { apiOf, headerOf, KV_KEYS, kvApiOf, type TempPhase, tempPhase, verify } from "./fixtures/crash-content.js"
import { makeClient } from "./utils/client.js"
import { mulberry32 } from "./utils/random.js"

const KILLS = Number(process.env.CRASH_KILLS ?? 100)
const KV_KILLS = Number(process.env.CRASH_KV_KILLS ?? Math.ceil(KILLS / 5))
const SEED = process.env.CRASH_SEED !== undefined ?
  Number(process.env.CRASH_SEED) :
  Math.floor(Math.random() * 0x100000000)
/** A temp file of the Client, next to the file it replaces. */
const TEMP = /^\..+\.[0-9a-z]{20}\.tmp$/

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

/**
 * What a writer replaces: version `v` goes to `files[v % files.length]`
 * (relative to the crash directory), through `apiOf(v)`.
 */
interface Scenario {
  readonly name: string
  readonly kills: number
  /** Extra arguments of the writer. */
  readonly args: ReadonlyArray<string>
  readonly files: ReadonlyArray<string>
  readonly apiOf: (version: number) => string
}

const clientScenario: Scenario = { name: "", kills: KILLS, args: [], files: ["target"], apiOf }

const kvScenario: Scenario = {
  name: "KeyValueStore, ",
  kills: KV_KILLS,
  args: ["kv"],
  files: KV_KEYS.map((key) => encodeKey(key).pipe(Either.getOrThrow)),
  apiOf: kvApiOf
}

/** Spawns a writer that loads and then waits for `start`. */
const spawnWriter = (
  running: Set<ChildProcess>,
  target: string,
  durable: boolean,
  seed: number,
  args: ReadonlyArray<string>
): Writer => {
  const child = spawn(process.execPath, [bundle!.file, target, durable ? "1" : "0", String(seed), ...args], {
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

/** The regular files below `dir`, relative, sorted. */
const filesBelow = (dir: string): Array<string> =>
  nodeFs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) =>
    nodePath.relative(dir, nodePath.join(entry.parentPath, entry.name))
  ).sort()

const crashLoop = async (expect: ExpectStatic, durable: boolean, scenario: Scenario) => {
  const kills = scenario.kills
  const mode = `${scenario.name}${durable ? "durable" : "not durable"}`
  const seed = (SEED + (durable ? 1 : 0) + (scenario.args.length > 0 ? 2 : 0)) >>> 0
  const random = mulberry32(seed)
  const dir = nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "persistence-crash-")))
  const target = nodePath.join(dir, "target")
  const { client } = await Effect.runPromise(makeClient({ durable }))
  const landings: Record<Landing, number> = { BetweenWrites: 0, Empty: 0, Partial: 0, Written: 0, Garbage: 0 }
  const inFlight: Record<string, number> = {}
  /** The last version each file is known to hold (0: never written). */
  const known = scenario.files.map(() => 0)
  let commits = 0
  const timing = { ready: 0, delay: 0, exit: 0 }
  let next = 1
  const started = Date.now()
  const running = new Set<ChildProcess>()
  let spawned = 0
  const warm: Array<Writer> = []
  const spawnNext = () => {
    if (spawned++ < kills) {
      warm.push(spawnWriter(running, target, durable, Math.floor(random() * 0x100000000), scenario.args))
    }
  }
  for (let i = 0; i < WARM; i++) spawnNext()
  try {
    for (let kill = 1; kill <= kills; kill++) {
      const where = `${mode}, kill ${kill}/${kills}; replay with CRASH_SEED=${SEED}`
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

      // Before recovery: the files and at most one temp file, nothing else.
      const names = filesBelow(dir)
      const temps = names.filter((name) => TEMP.test(nodePath.basename(name)))
      expect(names.filter((name) => !scenario.files.includes(name) && !temps.includes(name)), where).toEqual([])
      expect(temps.length, `${where}: temp files ${temps.join(", ")}`).toBeLessThanOrEqual(1)

      // Each file holds one complete version of its own: the last one announced for it, or (for the one
      // file written next) the version that may have committed before the writer could say so.
      const contents = new Map<string, Buffer>()
      for (const [i, file] of scenario.files.entries()) {
        let announced = known[i]
        for (let v = last; v >= first && v > known[i]; v--) {
          if (v % scenario.files.length === i) {
            announced = v
            break
          }
        }
        const unannounced = (last + 1) % scenario.files.length === i ? last + 1 : announced
        const at = `${where}, ${file}: announced commits up to ${announced}`
        if (!names.includes(file)) {
          expect(announced, `${at}, but the file is missing`).toBe(0)
          continue
        }
        const bytes = nodeFs.readFileSync(nodePath.join(dir, file))
        contents.set(file, bytes)
        const verdict = verify(bytes)
        if (verdict._tag === "Invalid") expect.fail(`${at}: not one complete version: ${verdict.reason}`)
        // A commit the writer announced survives; at most one more committed before it could say so.
        expect(verdict.version, at).toBeGreaterThanOrEqual(announced)
        expect([announced, unannounced], at).toContain(verdict.version)
        known[i] = verdict.version
      }

      if (temps.length === 0) {
        landings.BetweenWrites++
      } else {
        const temp = nodeFs.readFileSync(nodePath.join(dir, temps[0]))
        landings[tempPhase(temp)]++
        const api = scenario.apiOf(headerOf(temp)?.version ?? Math.max(...known) + 1)
        inFlight[api] = (inFlight[api] ?? 0) + 1
      }

      const removed = await Effect.runPromise(client.recover(dir, { recursive: true }))
      expect(removed.sort(), where).toEqual(temps.map((name) => nodePath.join(dir, name)).sort())
      expect(filesBelow(dir), where).toEqual(Array.from(contents.keys()).sort())
      for (const [file, bytes] of contents) {
        expect(nodeFs.readFileSync(nodePath.join(dir, file)).equals(bytes), `${where}: recover changed ${file}`).toBe(
          true
        )
      }
      next = Math.max(...known) + 1
    }
  } finally {
    const left = Array.from(running, (child) => new Promise((resolve) => child.once("close", resolve)))
    for (const child of running) child.kill("SIGKILL")
    await Promise.all(left)
    nodeFs.rmSync(dir, { recursive: true, force: true })
  }
  const midWrite = landings.Empty + landings.Partial + landings.Written + landings.Garbage
  console.log(
    `crash (${mode}, seed ${SEED}): ${kills} kills in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
      `${commits} commits; between writes ${landings.BetweenWrites}, mid-write ${midWrite} ` +
      `(temp empty ${landings.Empty}, partly written ${landings.Partial}, fully written before rename ` +
      `${landings.Written}, garbage ${landings.Garbage}; ${
        Object.entries(inFlight).map(([api, n]) => `${api} ${n}`).join(", ")
      }); ` +
      `mean ms per kill: start to ready ${(timing.ready / kills).toFixed(0)}, delay ${
        (timing.delay / kills).toFixed(0)
      }, kill to exit ${(timing.exit / kills).toFixed(0)}`
  )
  expect(landings.Garbage, "a temp file is always a prefix of the version being written").toBe(0)
}

// The modes run side by side: most of the time goes to starting processes, and there are two cores.
describe.concurrent("process crash (SIGKILL) during atomic replacement", () => {
  const timeout = 30_000 + KILLS * 1_500

  it(
    "not durable: the target is always one complete version, recover removes the leftover temp file",
    async ({ expect }) => {
      await crashLoop(expect, false, clientScenario)
    },
    timeout
  )

  it(
    "durable: the target is always one complete version, recover removes the leftover temp file",
    async ({ expect }) => {
      await crashLoop(expect, true, clientScenario)
    },
    timeout
  )

  it(
    "KeyValueStore set and modify, not durable: every key is always one complete version",
    async ({ expect }) => {
      await crashLoop(expect, false, kvScenario)
    },
    // Generous: a hang detector (process starts take seconds on a loaded machine).
    60_000 + KV_KILLS * 3_000
  )

  it(
    "KeyValueStore set and modify, durable: every key is always one complete version",
    async ({ expect }) => {
      await crashLoop(expect, true, kvScenario)
    },
    // Generous: a hang detector (process starts take seconds on a loaded machine).
    60_000 + KV_KILLS * 3_000
  )
})
