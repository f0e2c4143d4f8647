/**
 * What confinement costs per call: `npx tsx bench/confined.ts`. Three Clients
 * on one directory of the real file system: unconfined; confined to it the
 * way a confined Client works on Linux (each write creates and renames its
 * temp file through a handle on the opened directory, each read checks the
 * opened file, see src/internal/pin.ts); and confined by path only (the
 * handles switched off by a file system that hides `/proc`, which is what a
 * confined Client does where there is no `/proc`).
 *
 * Every round runs the three in a rotating order, each after a full garbage
 * collection, and the script prints the median of the per-round ratios (as
 * `npm run bench` does). `BENCH_OPS` (default 2,000 sequential calls per
 * run) and `BENCH_ROUNDS` (default 9) change the sizes.
 *
 * It is not part of `npm run bench`: a breakdown of one feature's cost.
 */
import { NodeFileSystem } from "@effect/platform-node"
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import { collectGarbage } from "./harness.js"

const OPS = Number(process.env.BENCH_OPS ?? 2_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9)

const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "persistence-confined-")))
const node = Effect.runSync(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer))
// No `/proc` as far as the Client can tell: it confines by path alone.
const withoutProc: FileSystem.FileSystem = {
  ...node,
  readLink: (p) =>
    p.startsWith("/proc/") ?
      Effect.fail(
        new PlatformError.SystemError({
          reason: "NotFound",
          module: "FileSystem",
          method: "readLink",
          pathOrDescriptor: p
        })
      ) :
      node.readLink(p)
}

// Confined, `make` opens a directory to probe for `/proc`: asynchronous.
const make = (options: Client.ClientOptions, fileSystem: FileSystem.FileSystem) =>
  Effect.runPromise(
    Effect.flatMap(LockManager.make, (manager) =>
      Client.make(options).pipe(
        Effect.provideService(LockManager.LockManager, manager),
        Effect.provideService(FileSystem.FileSystem, fileSystem)
      ))
  )

const names = ["unconfined", "confined, through handles", "confined, by path only"] as const

const data = new Uint8Array(250).fill(97)
fs.mkdirSync(`${dir}/w`)
fs.writeFileSync(`${dir}/r`, new Uint8Array(4096))

const cases: ReadonlyArray<
  readonly [string, (client: Client.ClientService, i: number) => Effect.Effect<unknown, unknown>]
> = [
  ["write 250 B", (client, i) => client.write(`${dir}/w/f${i % 16}`, data)],
  ["read 4 KiB", (client) => client.read(`${dir}/r`)]
]

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const main = async () => {
  const variants: ReadonlyArray<readonly [string, Client.ClientService]> = [
    [names[0], await make({}, node)],
    [names[1], await make({ root: dir }, node)],
    [names[2], await make({ root: dir }, withoutProc)]
  ]
  for (const [label, op] of cases) {
    const rates = new Map<string, Array<number>>(variants.map(([name]) => [name, []]))
    for (let round = -1; round < ROUNDS; round++) {
      for (let k = 0; k < variants.length; k++) {
        const [name, client] = variants[(k + Math.max(round, 0)) % variants.length]
        collectGarbage?.()
        const started = performance.now()
        await Effect.runPromise(Effect.forEach(Array.from({ length: OPS }, (_, i) => i), (i) => op(client, i), {
          discard: true
        }))
        const rate = OPS / ((performance.now() - started) / 1000)
        if (round >= 0) rates.get(name)!.push(rate)
      }
    }
    const base = rates.get("unconfined")!
    console.log(`${label}, ${OPS} sequential calls, ${ROUNDS} rounds:`)
    for (const [name] of variants) {
      const own = rates.get(name)!
      const ratio = median(own.map((r, i) => r / base[i]))
      console.log(
        `  ${name.padEnd(28)} ${Math.round(median(own)).toLocaleString("en")}/s  ${ratio.toFixed(2)}x unconfined`
      )
    }
    const pinned = rates.get("confined, through handles")!
    const byPath = rates.get("confined, by path only")!
    console.log(`  handles / by path: ${median(pinned.map((r, i) => r / byPath[i])).toFixed(2)}x`)
  }
}

main().finally(() => fs.rmSync(dir, { recursive: true, force: true }))
