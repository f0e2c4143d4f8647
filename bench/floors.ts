/**
 * What a 4 KiB read costs below the Client, on this machine: `npx tsx bench/floors.ts`.
 * Rounds of sequential reads of one file, alternating:
 *
 * - `fs.promises.readFile` (the target's baseline);
 * - Node's callback `fs.readFile`;
 * - `Effect.async` around the callback `fs.readFile`, no AbortSignal;
 * - the platform's `FileSystem.readFile` (what the Client calls).
 *
 * It prints reads/s and each one's ratio to `fs.promises.readFile`. It is not
 * part of `npm run bench`: it measures the platform, not the library.
 */
import { NodeFileSystem } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as nodeFs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const READS = Number(process.env.BENCH_OPS ?? 8_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), "effect-persistence-floors-"))
const file = path.join(dir, "doc.bin")
nodeFs.writeFileSync(file, new Uint8Array(4096).fill(1))

const callbackRead = () =>
  new Promise<Buffer>((resolve, reject) => nodeFs.readFile(file, (e, data) => e ? reject(e) : resolve(data)))

const asyncRead = Effect.async<Buffer, NodeJS.ErrnoException>((resume) => {
  nodeFs.readFile(file, (e, data) => resume(e ? Effect.fail(e) : Effect.succeed(data)))
})

const platform = Effect.runSync(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer))

const loop = (read: () => Promise<unknown>) => async () => {
  for (let i = 0; i < READS; i++) await read()
}
const effectLoop = <A, E>(read: Effect.Effect<A, E>) => () =>
  Effect.runPromise(Effect.forEach(Array.from({ length: READS }), () => read, { discard: true }))

const runners: ReadonlyArray<readonly [string, () => Promise<unknown>]> = [
  ["fs.promises.readFile", loop(() => fsp.readFile(file))],
  ["callback fs.readFile", loop(callbackRead)],
  ["Effect.async(callback fs.readFile)", effectLoop(asyncRead)],
  ["platform FileSystem.readFile", effectLoop(platform.readFile(file))]
]

const main = async () => {
  const rates = runners.map((): Array<number> => [])
  for (let round = 0; round < ROUNDS + 1; round++) {
    for (let i = 0; i < runners.length; i++) {
      const started = performance.now()
      await runners[i][1]()
      // Round 0 is the warm-up.
      if (round > 0) rates[i].push(READS / ((performance.now() - started) / 1000))
    }
  }
  const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const base = median(rates[0])
  console.log(`${READS} sequential 4 KiB reads per run, ${ROUNDS} rounds; median reads/s, ratio to the first`)
  runners.forEach(([name], i) => {
    const m = median(rates[i])
    console.log(`${name.padEnd(36)} ${Math.round(m).toLocaleString("en-US").padStart(8)}  ${(m / base).toFixed(2)}`)
  })
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
}).finally(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
