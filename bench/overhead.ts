/**
 * What the Client itself costs per call, with the file system stubbed out:
 * `npx tsx bench/overhead.ts`. The platform calls a write and a read make
 * (`writeFile` + `rename`, `readFile`) return at once, so what is left is
 * JavaScript: the span, the lock, validation, the replacement logic and the
 * Effect run loop. For each layer it prints microseconds per call (median of
 * 3 rounds of sequential calls) and bytes allocated per call (V8's sampling
 * heap profiler, counting objects already collected too).
 *
 * It is not part of `npm run bench`: there is no baseline to compare with in
 * the same run, only a breakdown of where the JavaScript goes.
 */
import { NodeFileSystem } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import { Session } from "node:inspector/promises"
import * as Client from "../src/Client.js"
import { makeDisk, replace } from "../src/internal/atomic.js"
import * as LockManager from "../src/LockManager.js"

const CALLS = Number(process.env.BENCH_OPS ?? 100_000)
const ROUNDS = 3

const written = new Uint8Array(250)
const read = new Uint8Array(4096)
const target = "/stub/dir/doc.bin"

const node = Effect.runSync(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer))
const fs: FileSystem.FileSystem = {
  ...node,
  writeFile: () => Effect.void,
  rename: () => Effect.void,
  readFile: () => Effect.succeed(read)
}
const manager = Effect.runSync(LockManager.make)
const client = Effect.runSync(
  Client.make().pipe(
    Effect.provideService(LockManager.LockManager, manager),
    Effect.provideService(FileSystem.FileSystem, fs)
  )
)
const disk = makeDisk(fs, { durable: false, tempSuffix: "tmp", groupCommit: true })
// An in-memory lock: never lost.
const held: LockManager.Lock = {
  id: 1,
  mode: "write",
  paths: [target],
  lost: Effect.never,
  ensureHeld: () => Effect.void
}

type Around = (loop: Effect.Effect<void, unknown>) => Effect.Effect<void, unknown>

/** The whole loop with tracing disabled (per call, the FiberRef change would cost what it saves). */
const untraced: Around = (loop) => Effect.withTracerEnabled(loop, false)

const layers: ReadonlyArray<readonly [string, () => Effect.Effect<unknown, unknown>, Around?]> = [
  ["platform writeFile + rename", () => Effect.zipRight(fs.writeFile(`${target}.tmp`, written), fs.rename("a", "b"))],
  ["+ replacement logic", () => replace(disk, "Client.write", target, held, written)],
  [
    "+ withLock",
    () => manager.withLock(target, "write")((lock) => replace(disk, "Client.write", target, lock, written))
  ],
  ["Client.write (+ span, counter, validation)", () => client.write(target, written)],
  ["Client.write, tracing disabled (no span)", () => client.write(target, written), untraced],
  ["platform readFile", () => fs.readFile(target)],
  ["+ withLock", () => manager.withLock(target, "read")(fs.readFile(target))],
  ["Client.read (+ span, counter, validation)", () => client.read(target)]
]

const run = (call: () => Effect.Effect<unknown, unknown>, around: Around = (loop) => loop) =>
  Effect.runPromise(around(Effect.gen(function*() {
    for (let i = 0; i < CALLS; i++) yield* call()
  })))

const allocated = async (
  session: Session,
  call: () => Effect.Effect<unknown, unknown>,
  around?: Around
): Promise<number> => {
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
  await run(call, around)
  const { profile } = await session.post("HeapProfiler.stopSampling")
  let total = 0
  const walk = (node: typeof profile.head): void => {
    total += node.selfSize
    node.children.forEach(walk)
  }
  walk(profile.head)
  return total / CALLS
}

const main = async () => {
  const session = new Session()
  session.connect()
  console.log(`${CALLS} sequential calls per round, file system stubbed; median of ${ROUNDS} rounds`)
  for (const [name, call, around] of layers) {
    await run(call, around) // warm-up
    const times: Array<number> = []
    for (let round = 0; round < ROUNDS; round++) {
      const started = performance.now()
      await run(call, around)
      times.push((performance.now() - started) * 1000 / CALLS)
    }
    const us = [...times].sort((a, b) => a - b)[ROUNDS >> 1]
    const bytes = await allocated(session, call, around)
    console.log(
      `${name.padEnd(44)} ${us.toFixed(2).padStart(6)} us  ${Math.round(bytes).toLocaleString("en-US").padStart(7)} B`
    )
  }
  session.disconnect()
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
