/**
 * Every Client mutation, failed at each of its file system calls in turn with
 * each fault kind, in durable and non-durable mode: the failure is typed, the
 * disk is in the old state (or the new one for a `CommitError`), no temp file
 * or lock is left, and the next operation on the same path works.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Option, Schema, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import type * as Client from "../src/Client.js"
import * as FaultFileSystem from "../src/testing/FaultFileSystem.js"
import { leftoverName, makeClient, snapshot, tempFiles } from "./utils/client.js"

type Snapshot = Record<string, string>

interface Case {
  readonly name: string
  /** Creates the fixture below `dir` (synchronously, outside the faulty file system). */
  readonly setup: (dir: string) => void
  readonly run: (client: Client.ClientService, dir: string) => Effect.Effect<unknown, unknown>
  /** The next operation on the same path(s), run without faults: must succeed. */
  readonly next: (client: Client.ClientService, dir: string) => Effect.Effect<unknown, unknown>
  /**
   * For `modify`: the file read first. An injected ENOENT on that read makes
   * the file look missing, so `f(None)` is written: also a correct outcome.
   */
  readonly reads?: string
  /** Each file change may independently be done or not (`recover` removes one by one). */
  readonly partial?: boolean
}

const Doc = Schema.Struct({ n: Schema.Number })
const bytesOf = (s: string) => new TextEncoder().encode(s)
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

const writeAndReadBack = (client: Client.ClientService, path: string) =>
  Effect.gen(function*() {
    yield* client.write(path, "next")
    const back = yield* client.readString(path)
    if (back !== "next") return yield* Effect.dieMessage(`read back ${JSON.stringify(back)}`)
  })

/** Leftover temp files of crashed writers: the same names in every run of the recover case. */
const leftovers = { keep: leftoverName("keep"), x: leftoverName("x"), y: leftoverName("y") }

const cases: ReadonlyArray<Case> = [
  {
    name: "write new file",
    setup: (dir) => nodeFs.mkdirSync(`${dir}/d`),
    run: (client, dir) => client.write(`${dir}/d/new.txt`, "new content"),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/new.txt`)
  },
  {
    name: "write replacing",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/f.txt`, "old content")
    },
    run: (client, dir) => client.write(`${dir}/d/f.txt`, bytesOf("new content")),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/f.txt`)
  },
  {
    name: "write creating missing parents",
    setup: (dir) => nodeFs.mkdirSync(`${dir}/d`),
    run: (client, dir) => client.write(`${dir}/d/a/b/c.txt`, "new content"),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/a/b/c.txt`)
  },
  {
    name: "sink",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/f.bin`, "old content")
    },
    run: (client, dir) =>
      Stream.make("new ", "con", "tent").pipe(Stream.map(bytesOf), Stream.run(client.sink(`${dir}/d/f.bin`))),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/f.bin`)
  },
  {
    name: "sink creating missing parents",
    setup: (dir) => nodeFs.mkdirSync(`${dir}/d`),
    run: (client, dir) =>
      Stream.make("new ", "content").pipe(Stream.map(bytesOf), Stream.run(client.sink(`${dir}/d/x/f.bin`))),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/x/f.bin`)
  },
  {
    name: "modify",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/counter`, "5")
    },
    run: (client, dir) =>
      client.modify(
        `${dir}/d/counter`,
        (current) => String(Number(Option.getOrElse(Option.map(current, text), () => "0")) + 1)
      ),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/counter`),
    reads: "d/counter"
  },
  {
    name: "modify missing file",
    setup: (dir) => nodeFs.mkdirSync(`${dir}/d`),
    run: (client, dir) => client.modify(`${dir}/d/counter`, Option.match({ onNone: () => "1", onSome: () => "bad" })),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/counter`),
    reads: "d/counter"
  },
  {
    name: "writeJson",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/doc.json`, JSON.stringify({ n: 1 }))
    },
    run: (client, dir) => client.writeJson(`${dir}/d/doc.json`, Doc, { n: 2 }),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/doc.json`)
  },
  {
    name: "modifyJson",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/doc.json`, JSON.stringify({ n: 1 }))
    },
    run: (client, dir) =>
      client.modifyJson(
        `${dir}/d/doc.json`,
        Doc,
        (current) => ({ n: Option.getOrElse(current, () => ({ n: 0 })).n + 1 })
      ),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/doc.json`),
    reads: "d/doc.json"
  },
  {
    name: "rename in the same directory",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/from`, "payload")
      nodeFs.writeFileSync(`${dir}/d/to`, "old content")
    },
    run: (client, dir) => client.rename(`${dir}/d/from`, `${dir}/d/to`),
    next: (client, dir) =>
      Effect.zipRight(writeAndReadBack(client, `${dir}/d/to`), writeAndReadBack(client, `${dir}/d/from`))
  },
  {
    name: "rename across directories with missing parents",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/from`, "payload")
    },
    run: (client, dir) => client.rename(`${dir}/d/from`, `${dir}/e/x/y/to`),
    next: (client, dir) =>
      Effect.zipRight(writeAndReadBack(client, `${dir}/e/x/y/to`), writeAndReadBack(client, `${dir}/d/from`))
  },
  {
    name: "copy replacing",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/src`, "payload")
      nodeFs.writeFileSync(`${dir}/d/dst`, "old content")
    },
    run: (client, dir) => client.copy(`${dir}/d/src`, `${dir}/d/dst`),
    next: (client, dir) =>
      Effect.zipRight(writeAndReadBack(client, `${dir}/d/dst`), writeAndReadBack(client, `${dir}/d/src`))
  },
  {
    name: "copy creating missing parents",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/src`, "payload")
    },
    run: (client, dir) => client.copy(`${dir}/d/src`, `${dir}/e/x/dst`),
    next: (client, dir) => writeAndReadBack(client, `${dir}/e/x/dst`)
  },
  {
    name: "makeDirectory creating missing parents",
    setup: (dir) => nodeFs.mkdirSync(`${dir}/d`),
    run: (client, dir) => client.makeDirectory(`${dir}/d/a/b/c`),
    next: (client, dir) =>
      Effect.zipRight(client.makeDirectory(`${dir}/d/a/b/c`), writeAndReadBack(client, `${dir}/d/a/b/c/f`))
  },
  {
    name: "delete file",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d`)
      nodeFs.writeFileSync(`${dir}/d/f`, "doomed")
      nodeFs.writeFileSync(`${dir}/d/g`, "kept")
    },
    run: (client, dir) => client.delete(`${dir}/d/f`),
    next: (client, dir) => writeAndReadBack(client, `${dir}/d/f`)
  },
  {
    name: "delete directory recursively",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d/sub/deeper`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/d/sub/a`, "a")
      nodeFs.writeFileSync(`${dir}/d/sub/deeper/b`, "b")
      nodeFs.writeFileSync(`${dir}/d/kept`, "kept")
    },
    run: (client, dir) => client.delete(`${dir}/d/sub`, { recursive: true }),
    next: (client, dir) =>
      Effect.zipRight(
        client.delete(`${dir}/d/sub`, { recursive: true, force: true }),
        writeAndReadBack(client, `${dir}/d/sub/a`)
      )
  },
  {
    name: "recover",
    setup: (dir) => {
      nodeFs.mkdirSync(`${dir}/d/sub`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/d/keep`, "kept")
      nodeFs.writeFileSync(`${dir}/d/${leftovers.keep}`, "partial")
      nodeFs.writeFileSync(`${dir}/d/sub/${leftovers.x}`, "partial")
      nodeFs.writeFileSync(`${dir}/d/sub/${leftovers.y}`, "partial")
    },
    run: (client, dir) => client.recover(`${dir}/d`, { recursive: true }),
    next: (client, dir) =>
      Effect.flatMap(
        client.recover(`${dir}/d`, { recursive: true }),
        () =>
          client.collect(`${dir}/d`, { recursive: true, includeTemp: true }).pipe(
            Effect.flatMap((names) =>
              names.some((name) => name.endsWith(".tmp")) ? Effect.dieMessage(`left: ${names}`) : Effect.void
            )
          )
      ),
    partial: true
  }
]

const reasonOf: Record<Exclude<FaultFileSystem.Fault, "interrupt">, string> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  ENOSPC: "NoSpace",
  EIO: "IoError"
}

const isDir = (key: string) => key.endsWith("/")
const files = (s: Snapshot) => Object.fromEntries(Object.entries(s).filter(([k]) => !isDir(k)))
const dirs = (s: Snapshot) => Object.keys(s).filter(isDir)

/**
 * `actual` is the state `expected`, allowing directories that the operation
 * would have created (missing parents are created before the commit and stay).
 */
const matches = (actual: Snapshot, expected: Snapshot, old: Snapshot, next: Snapshot): boolean => {
  if (JSON.stringify(files(actual)) !== JSON.stringify(files(expected))) return false
  const allowed = new Set([...dirs(old), ...dirs(next)])
  const present = new Set(dirs(actual))
  return dirs(expected).every((d) => present.has(d)) && dirs(actual).every((d) => allowed.has(d))
}

/** Each file is in its old or its new state; files the operation does not change are unchanged. */
const between = (actual: Snapshot, old: Snapshot, next: Snapshot): boolean => {
  const keys = new Set([...Object.keys(old), ...Object.keys(next), ...Object.keys(actual)])
  for (const k of keys) {
    if (isDir(k)) continue
    if (actual[k] !== old[k] && actual[k] !== next[k]) return false
  }
  return true
}

const show = (s: Snapshot) => JSON.stringify(s)

interface Totals {
  checked: number
  failed: number
  committed: number
  recovered: number
  interruptedOld: number
  interruptedNew: number
  absorbed: number
  withSiblingInterrupts: number
}
const totals: Totals = {
  checked: 0,
  failed: 0,
  committed: 0,
  recovered: 0,
  interruptedOld: 0,
  interruptedNew: 0,
  absorbed: 0,
  withSiblingInterrupts: 0
}
const perOperation: Array<string> = []

afterAll(() => {
  if (totals.checked === 0) return
  console.log(
    `fault cases checked (operation, mode, fault, N): ${totals.checked}: ` +
      `${totals.failed} typed failures with the old state, ${totals.committed} CommitErrors with the new state, ` +
      `${totals.recovered} recovered (ENOENT retried) with the new state, ` +
      `${totals.interruptedOld} interruptions with the old state, ${totals.interruptedNew} with the new state, ` +
      `${totals.absorbed} interruptions absorbed by an uninterruptible fiber (success, new state); ` +
      `${totals.withSiblingInterrupts} typed failures also carried interruptions of sibling fibers\n` +
      perOperation.join("\n")
  )
})

const MAX_CALLS = 100

/**
 * The sweep runs a few thousand operations, a third of them durable: on a
 * RAM-backed file system when there is one (fsync costs nothing there, and
 * what is checked here does not depend on what fsync does).
 */
const scratchDir = Effect.acquireRelease(
  Effect.sync(() => {
    const parent = nodeFs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir()
    return nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(parent, "persistence-faults-")))
  }),
  (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
)

describe("FaultFileSystem", () => {
  const layer = (plan?: FaultFileSystem.FaultPlan) =>
    FaultFileSystem.layer(plan).pipe(Layer.provideMerge(NodeFileSystem.layer))

  it.scopedLive("counts calls, including calls on open files, and fails exactly the N-th with the errno", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir
      const fs = yield* FileSystem.FileSystem
      const faults = yield* FaultFileSystem.FaultFileSystem
      const writeFile = Effect.scoped(
        Effect.flatMap(
          fs.open(`${dir}/f`, { flag: "w" }),
          (file) => Effect.zipRight(file.writeAll(bytesOf("x")), file.sync)
        )
      )
      yield* writeFile
      expect(yield* faults.calls).toBe(3)
      expect(yield* faults.hit).toEqual(Option.none())

      yield* faults.reset({ failAt: 2, fault: "ENOSPC" })
      const error = yield* Effect.flip(writeFile)
      expect(error).toMatchObject({ _tag: "SystemError", reason: "Unknown", method: "File.writeAll" })
      expect((error as { cause?: { code?: string } }).cause?.code).toBe("ENOSPC")
      expect(Option.getOrThrow(yield* faults.hit)).toMatchObject({ call: 2, method: "File.writeAll", deferred: false })
      // Only the N-th call fails.
      yield* writeFile
      expect(yield* faults.calls).toBe(5)

      yield* faults.reset({ failAt: 1, fault: "ENOENT" })
      expect(yield* Effect.flip(fs.readFileString(`${dir}/f`))).toMatchObject({ reason: "NotFound" })
      expect(yield* fs.readFileString(`${dir}/f`)).toBe("x")
    }).pipe(Effect.provide(layer())))

  // A plan that names no call or no known fault injected nothing: a test on it passed without testing anything.
  it.effect("a plan that would inject nothing is a defect naming what is wrong, in layer, make and reset (wrap throws)", () =>
    Effect.gen(function*() {
      const nodeFileSystem = yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
      const bad: ReadonlyArray<unknown> = [
        null,
        "x",
        { failAt: 0, fault: "ENOENT" },
        { failAt: -1, fault: "ENOENT" },
        { failAt: 1.5, fault: "ENOENT" },
        { failAt: "1", fault: "ENOENT" },
        { failAt: NaN, fault: "ENOENT" },
        { failAt: 1, fault: "EFOO" },
        { failAt: 1 }
      ]
      const defect = (exit: Exit.Exit<unknown, unknown>) =>
        Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
      for (const plan of bad) {
        const built = yield* Effect.exit(Layer.build(layer(plan as FaultFileSystem.FaultPlan)).pipe(Effect.scoped))
        expect(String(defect(built)), JSON.stringify(plan)).toMatch(
          /^RuntimeException: FaultFileSystem: (a FaultPlan|FaultPlan\.)/
        )
        const reset = yield* Effect.exit(
          Effect.flatMap(FaultFileSystem.FaultFileSystem, (faults) => faults.reset(plan as FaultFileSystem.FaultPlan))
            .pipe(Effect.provide(layer()))
        )
        expect(String(defect(reset)), JSON.stringify(plan)).toMatch(/^RuntimeException: FaultFileSystem: /)
        // wrap is synchronous: it throws.
        expect(() => FaultFileSystem.wrap(nodeFileSystem, plan as FaultFileSystem.FaultPlan), JSON.stringify(plan))
          .toThrow(
            /^FaultFileSystem: /
          )
      }
      // Good plans, and none, still build.
      for (
        const plan of [undefined, { failAt: 1, fault: "interrupt" as const }, { failAt: 3, fault: "EIO" as const }]
      ) {
        expect(Exit.isSuccess(yield* Effect.exit(Layer.build(layer(plan)).pipe(Effect.scoped)))).toBe(true)
      }
    }))

  it.scopedLive("interrupt: skips the call where interruptible, defers the interruption where not", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir
      const fs = yield* FileSystem.FileSystem
      const faults = yield* FaultFileSystem.FaultFileSystem
      const skipped = yield* Fiber.await(yield* Effect.fork(fs.makeDirectory(`${dir}/a`)))
      expect(Exit.isInterrupted(skipped)).toBe(true)
      expect(nodeFs.existsSync(`${dir}/a`)).toBe(false)

      yield* faults.reset({ failAt: 1, fault: "interrupt" })
      const deferred = yield* Fiber.await(
        yield* Effect.fork(
          Effect.zipRight(Effect.uninterruptible(fs.makeDirectory(`${dir}/b`)), fs.makeDirectory(`${dir}/c`))
        )
      )
      expect(Exit.isInterrupted(deferred)).toBe(true)
      expect(nodeFs.existsSync(`${dir}/b`)).toBe(true)
      expect(nodeFs.existsSync(`${dir}/c`)).toBe(false)
      expect(Option.getOrThrow(yield* faults.hit)).toMatchObject({ call: 1, method: "makeDirectory", deferred: true })
    }).pipe(Effect.provide(layer({ failAt: 1, fault: "interrupt" }))))
})

describe("injected faults", () => {
  for (const durable of [false, true]) {
    for (const c of cases) {
      const mode = durable ? "durable" : "non-durable"
      it.scopedLive(`${c.name} (${mode})`, () =>
        Effect.gen(function*() {
          const base = yield* scratchDir
          const faulty = yield* Effect.provide(FaultFileSystem.make(), NodeFileSystem.layer)
          const { client, manager } = yield* makeClient(
            { durable },
            Layer.succeed(FileSystem.FileSystem, faulty.fileSystem)
          )
          let runs = 0
          const fresh = () => {
            const dir = `${base}/${runs++}`
            nodeFs.mkdirSync(dir)
            c.setup(dir)
            return dir
          }

          // Reference runs without faults: the old and new states, and (for
          // modify) the state written when the file looked missing.
          const refDir = fresh()
          const old = snapshot(refDir)
          const planted = tempFiles(refDir)
          yield* faulty.reset()
          yield* c.run(client, refDir)
          const calls = yield* faulty.calls
          const next = snapshot(refDir)
          let ifMissing: Snapshot | undefined
          if (c.reads !== undefined) {
            const missingDir = fresh()
            nodeFs.rmSync(`${missingDir}/${c.reads}`, { force: true })
            yield* c.run(client, missingDir)
            ifMissing = snapshot(missingDir)
          }

          const problems: Array<string> = []
          let checked = 0
          for (const fault of FaultFileSystem.faults) {
            for (let n = 1; n <= MAX_CALLS; n++) {
              const dir = fresh()
              yield* faulty.reset({ failAt: n, fault })
              const fiber = yield* Effect.fork(c.run(client, dir))
              const exit = yield* Fiber.await(fiber)
              const hit = yield* faulty.hit
              yield* faulty.reset()
              const where = `${fault} at call ${n}${
                Option.match(hit, {
                  onNone: () => "",
                  onSome: (h) => ` (${h.method}${h.deferred ? ", deferred" : ""})`
                })
              }`
              const problem = (what: string) => problems.push(`${where}: ${what}`)
              const actual = snapshot(dir)

              if (Option.isNone(hit)) {
                // The operation finished before call n: the sweep is complete.
                if (Exit.isFailure(exit)) problem(`failed without a fault: ${Cause.pretty(exit.cause)}`)
                else if (!matches(actual, next, old, next)) problem(`not the new state: ${show(actual)}`)
                break
              }
              checked++
              totals.checked++

              if (Exit.isSuccess(exit)) {
                const readMissing = fault === "ENOENT" && hit.value.method === "readFile" && ifMissing !== undefined
                if (fault === "interrupt") {
                  // A deferred interruption of a fiber that stays uninterruptible to its
                  // end (a child forked inside a commit section) never takes effect.
                  if (!hit.value.deferred) problem("succeeded although interrupted where interruptible")
                  else if (!matches(actual, next, old, next)) problem(`succeeded but left ${show(actual)}`)
                  else totals.absorbed++
                } else if (fault !== "ENOENT") problem("succeeded: the injected error was swallowed")
                else if (
                  !matches(actual, next, old, next) && !(readMissing && matches(actual, ifMissing!, old, next))
                ) {
                  problem(`succeeded but left ${show(actual)}`)
                } else totals.recovered++
              } else if (fault === "interrupt") {
                if (!Cause.isInterruptedOnly(exit.cause)) problem(`not an interruption: ${Cause.pretty(exit.cause)}`)
                if (c.partial ? between(actual, old, next) : matches(actual, old, old, next)) totals.interruptedOld++
                else if (matches(actual, next, old, next)) totals.interruptedNew++
                else problem(`interrupted, left neither the old nor the new state: ${show(actual)}`)
              } else {
                const failure = Cause.failureOption(exit.cause)
                const error = Option.getOrUndefined(failure) as
                  | { _tag?: string; reason?: string; code?: string; cause?: unknown }
                  | undefined
                // Concurrent directory fsyncs fail as a whole: the siblings of the failed
                // call are interrupted and their interruptions sit next to the error.
                if (Cause.isInterrupted(exit.cause)) totals.withSiblingInterrupts++
                if (error === undefined || Cause.isDie(exit.cause)) {
                  problem(`not a typed failure: ${Cause.pretty(exit.cause)}`)
                } else if (error._tag === "FileSystemError") {
                  if (error.code !== fault || error.reason !== reasonOf[fault]) {
                    problem(`FileSystemError ${error.reason} (${error.code}), expected ${reasonOf[fault]}`)
                  }
                  if (c.partial ? between(actual, old, next) : matches(actual, old, old, next)) totals.failed++
                  else problem(`FileSystemError but not the old state: ${show(actual)}`)
                } else if (error._tag === "CommitError") {
                  const cause = error.cause as { code?: string } | undefined
                  if (cause?.code !== fault) problem(`CommitError caused by ${String(cause?.code)}`)
                  if (matches(actual, next, old, next)) totals.committed++
                  else problem(`CommitError but not the new state: ${show(actual)}`)
                } else {
                  problem(`unexpected error ${String(error._tag)}: ${String(error)}`)
                }
              }

              const leftover = tempFiles(dir).filter((t) => !planted.includes(t))
              if (leftover.length > 0) problem(`temp files left: ${leftover}`)
              const stats = yield* manager.stats
              if (stats.held + stats.pending + stats.nodes !== 0) {
                problem(`locks left: ${JSON.stringify(stats)}`)
                continue
              }
              const after = yield* Effect.exit(c.next(client, dir))
              if (Exit.isFailure(after)) problem(`next operation failed: ${Cause.pretty(after.cause)}`)
              if (n === MAX_CALLS) problem(`still hitting the fault after ${MAX_CALLS} calls`)
            }
          }
          perOperation.push(`  ${c.name} (${mode}): ${calls} calls, ${checked} cases`)
          const stats = yield* manager.stats
          expect(stats).toEqual({ held: 0, pending: 0, nodes: 0 })
          expect(problems).toEqual([])
        }).pipe(Effect.orDie))
    }
  }
})
