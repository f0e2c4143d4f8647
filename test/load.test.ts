/**
 * 10,000 concurrent fibers doing mixed Client operations over 100 paths on the
 * real Node file system, some of them interrupted at random points.
 *
 * What is checked:
 * - every read (read, readString, stream, and the current value seen by
 *   `modify`) returns a whole value that some write of that path (or of its
 *   rename partner) produced: values are self-identifying,
 *   `v:<id>:<length>:<padding>`, and all of them are generated before the run;
 * - pure counters (`modify` only, never interrupted) end with exactly the number
 *   of increments that succeeded;
 * - ledger counters are incremented by `modify` fibers that may be interrupted.
 *   An interrupted modify may or may not have committed (the interrupt may land
 *   after the rename, inside the commit section), so the count alone would be
 *   ambiguous: each increment appends its id, and the ledger must hold every
 *   succeeded id, only ids of succeeded or interrupted increments, each once,
 *   with a count equal to the number of ids;
 * - `collect` never shows a temp file, and no temp file is left at the end;
 * - at the end no lock is held or pending and the lock index is empty.
 *
 * Seeded: `LOAD_SEED=<n>` replays the plan of one run (the interleaving on a
 * real file system is not replayable); the seed is printed on failure.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Duration, Effect, Exit, Fiber, FiberId, Option, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import { tempDir, tempFiles } from "./utils/client.js"
import { mulberry32 } from "./utils/random.js"

const FIBERS = 10_000
const PATHS = 100
const PURE_COUNTERS = 10
const LEDGERS = 10
const VALUE_PATHS = PATHS - PURE_COUNTERS - LEDGERS
const INTERRUPT_RATE = 0.15
const DURABLE_RATE = 0.01
const LATE_MS = 8000

const encoder = new TextEncoder()
const decoder = new TextDecoder()

type Kind = "value" | "pure" | "ledger"

interface PathInfo {
  readonly index: number
  readonly kind: Kind
  readonly dir: string
  readonly path: string
}

type Op =
  | { readonly _tag: "read"; readonly path: number; readonly as: "bytes" | "string" }
  | { readonly _tag: "stream"; readonly path: number; readonly chunkSize: number }
  | { readonly _tag: "write"; readonly path: number; readonly value: number }
  | { readonly _tag: "sink"; readonly path: number; readonly value: number; readonly pieces: number }
  | { readonly _tag: "modifyValue"; readonly path: number; readonly value: number }
  | { readonly _tag: "increment"; readonly path: number }
  | { readonly _tag: "collect"; readonly dir: string; readonly recursive: boolean }
  | { readonly _tag: "rename"; readonly from: number; readonly to: number }
  | { readonly _tag: "delete"; readonly path: number; readonly force: boolean }

interface Planned {
  readonly id: number
  readonly op: Op
  readonly durable: boolean
  readonly interrupt: Option.Option<Interruption>
}

/**
 * When an interrupted fiber is interrupted: `queued` a few yields after it was
 * forked (usually while it waits for its lock); `late` after a delay spread
 * over the run (anywhere in the operation); `inside` a few yields after the
 * operation reached a point where it holds its lock (the update function of
 * `modify`, the first chunk of a stream or a sink), so that the interruption
 * lands during the temp file write or the read; `insideLater` a few
 * milliseconds after that point, so that it also lands in the commit.
 */
interface Interruption {
  readonly at: "queued" | "late" | "inside" | "insideLater"
  readonly amount: number
}

const hooked: ReadonlyArray<Op["_tag"]> = ["stream", "sink", "modifyValue", "increment"]

const makePlan = (seed: number, root: string) => {
  const random = mulberry32(seed)
  const int = (n: number) => Math.floor(random() * n)
  const paths: Array<PathInfo> = Array.from({ length: PATHS }, (_, index) => {
    const dir = `${root}/n${index % 4}/m${Math.floor(index / 4) % 5}`
    const kind: Kind = index < VALUE_PATHS ? "value" : index < VALUE_PATHS + PURE_COUNTERS ? "pure" : "ledger"
    return { index, kind, dir, path: `${dir}/${kind}${index}` }
  })
  const dirs = Array.from(new Set(paths.map((p) => p.dir)))
  // Every value any write may produce, generated before the run.
  const values = new Map<number, { readonly text: string; readonly origin: number }>()
  const newValue = (id: number, origin: number) => {
    const pad = (id % 36).toString(36).repeat(int(2000))
    const head = `v:${id}:`
    // The length field counts the whole string, itself included.
    let length = head.length + pad.length + 2
    while (`${head}${length}:${pad}`.length !== length) length = `${head}${length}:${pad}`.length
    values.set(id, { text: `${head}${length}:${pad}`, origin })
    return id
  }
  const valuePath = () => int(VALUE_PATHS)
  const plan: Array<Planned> = []
  for (let id = 0; id < FIBERS; id++) {
    const r = random()
    const op: Op = r < 0.22 ?
      { _tag: "read", path: int(PATHS), as: random() < 0.5 ? "bytes" : "string" } :
      r < 0.32 ?
      { _tag: "stream", path: int(PATHS), chunkSize: 64 + int(1024) } :
      r < 0.46 ?
      { _tag: "write", path: valuePath(), value: 0 } :
      r < 0.53 ?
      { _tag: "sink", path: valuePath(), value: 0, pieces: 1 + int(5) } :
      r < 0.59 ?
      { _tag: "modifyValue", path: valuePath(), value: 0 } :
      r < 0.77 ?
      { _tag: "increment", path: VALUE_PATHS + int(PURE_COUNTERS + LEDGERS) } :
      r < 0.82 ?
      { _tag: "collect", dir: random() < 0.8 ? dirs[int(dirs.length)] : root, recursive: random() < 0.3 } :
      r < 0.92 ?
      (() => {
        // Renames stay within a pair of paths (k, k ^ 1) in different directories.
        const from = valuePath()
        return { _tag: "rename", from, to: from ^ 1 }
      })() :
      { _tag: "delete", path: valuePath(), force: random() < 0.5 }
    const withValue: Op = op._tag === "write" || op._tag === "sink" || op._tag === "modifyValue" ?
      { ...op, value: newValue(id, op.path) } :
      op
    const pureIncrement = op._tag === "increment" && paths[op.path].kind === "pure"
    const at = random()
    const interrupt: Option.Option<Interruption> = pureIncrement || random() >= INTERRUPT_RATE ?
      Option.none() :
      hooked.includes(op._tag) && at < 0.6 ?
      Option.some(random() < 0.5 ? { at: "inside", amount: int(30) } : { at: "insideLater", amount: int(5) }) :
      at < 0.8 ?
      Option.some({ at: "queued", amount: int(30) }) :
      Option.some({ at: "late", amount: int(LATE_MS) })
    plan.push({ id, op: withValue, durable: random() < DURABLE_RATE, interrupt })
  }
  return { paths, dirs, values, plan }
}

const group = (path: number) => path >> 1

describe("load", () => {
  it.scopedLive(`${FIBERS} concurrent fibers, mixed operations, random interruptions`, () => {
    const seed = process.env.LOAD_SEED !== undefined ? Number(process.env.LOAD_SEED) : Date.now() % 2 ** 31
    return Effect.gen(function*() {
      const root = yield* tempDir
      const { dirs, paths, plan, values } = makePlan(seed, root)
      for (const dir of dirs) nodeFs.mkdirSync(dir, { recursive: true })
      const manager = yield* LockManager.make
      const makeOne = (durable: boolean) =>
        Client.make({ durable }).pipe(
          Effect.provideService(LockManager.LockManager, manager),
          Effect.provide(NodeFileSystem.layer)
        )
      const fast = yield* makeOne(false)
      const durable = yield* makeOne(true)
      const problems: Array<string> = []
      const problem = (s: string) => {
        if (problems.length < 50) problems.push(s)
      }
      const tempName = /(^|\/)\..*\.[0-9a-z]{20}\.tmp$/

      /** Checks a whole value read at `path`. */
      const checkValue = (where: string, path: number, text: string) => {
        const info = paths[path]
        if (info.kind === "pure") {
          if (!/^(0|[1-9]\d*)$/.test(text)) problem(`${where}: pure counter ${info.path} holds ${JSON.stringify(text)}`)
          return
        }
        if (info.kind === "ledger") {
          if (!/^L:\d+:(\d+(,\d+)*)?$/.test(text)) {
            problem(`${where}: ledger ${info.path} holds ${JSON.stringify(text)}`)
          }
          return
        }
        const match = /^v:(\d+):(\d+):/.exec(text)
        const known = match === null ? undefined : values.get(Number(match[1]))
        if (known === undefined || known.text !== text) {
          problem(`${where}: ${info.path}: not a whole written value: ${JSON.stringify(text.slice(0, 60))}`)
        } else if (group(known.origin) !== group(path)) {
          problem(`${where}: ${info.path}: value ${match![1]} was written to ${paths[known.origin].path}`)
        }
      }

      const pureSucceeded = new Map<number, number>()
      const ledgerSucceeded = new Map<number, Set<number>>()
      const ledgerInterrupted = new Map<number, Set<number>>()
      const add = (map: Map<number, Set<number>>, path: number, id: number) => {
        const set = map.get(path) ?? new Set<number>()
        set.add(id)
        map.set(path, set)
      }
      const parseLedger = (text: string) => {
        const [, count, list] = text.split(":")
        return { count: Number(count), ids: list === "" ? [] : list.split(",").map(Number) }
      }

      // Reached by an operation once it holds its lock (see `Interruption`).
      const hooks = plan.map(() => Deferred.unsafeMake<void>(FiberId.none))
      const reached = (planned: Planned) => Deferred.unsafeDone(hooks[planned.id], Exit.void)

      const run = (planned: Planned): Effect.Effect<unknown, unknown> => {
        const client = planned.durable ? durable : fast
        const op = planned.op
        const where = `#${planned.id} ${op._tag}`
        switch (op._tag) {
          case "read":
            return op.as === "bytes" ?
              Effect.map(
                client.read(paths[op.path].path),
                (bytes) => checkValue(where, op.path, decoder.decode(bytes))
              ) :
              Effect.map(client.readString(paths[op.path].path), (text) => checkValue(where, op.path, text))
          case "stream":
            return client.stream(paths[op.path].path, { chunkSize: op.chunkSize }).pipe(
              Stream.tap(() => Effect.sync(() => reached(planned))),
              Stream.runCollect,
              Effect.map((chunks) => {
                const parts = Chunk.toReadonlyArray(chunks)
                const all = new Uint8Array(parts.reduce((n, c) => n + c.length, 0))
                let offset = 0
                for (const part of parts) {
                  all.set(part, offset)
                  offset += part.length
                }
                checkValue(where, op.path, decoder.decode(all))
              })
            )
          case "write":
            return client.write(paths[op.path].path, values.get(op.value)!.text)
          case "sink": {
            const bytes = encoder.encode(values.get(op.value)!.text)
            const size = Math.ceil(bytes.length / op.pieces)
            const chunks = Array.from({ length: op.pieces }, (_, i) => bytes.subarray(i * size, (i + 1) * size))
            return Stream.fromIterable(chunks).pipe(
              Stream.tap(() => Effect.zipRight(Effect.sync(() => reached(planned)), Effect.yieldNow())),
              Stream.run(client.sink(paths[op.path].path))
            )
          }
          case "modifyValue":
            return client.modify(paths[op.path].path, (current) => {
              reached(planned)
              if (Option.isSome(current)) checkValue(where, op.path, decoder.decode(current.value))
              return values.get(op.value)!.text
            })
          case "increment": {
            const info = paths[op.path]
            if (info.kind === "pure") {
              return client.modify(
                info.path,
                (current) =>
                  String(Number(Option.getOrElse(Option.map(current, (b) => decoder.decode(b)), () => "0")) + 1)
              ).pipe(
                Effect.tap(() => Effect.sync(() => pureSucceeded.set(op.path, (pureSucceeded.get(op.path) ?? 0) + 1)))
              )
            }
            return client.modify(info.path, (current) => {
              reached(planned)
              const text = Option.getOrElse(Option.map(current, (b) => decoder.decode(b)), () => "L:0:")
              checkValue(where, op.path, text)
              const { ids } = parseLedger(text)
              ids.push(planned.id)
              return `L:${ids.length}:${ids.join(",")}`
            }).pipe(Effect.tap(() => Effect.sync(() => add(ledgerSucceeded, op.path, planned.id))))
          }
          case "collect":
            return Effect.map(client.collect(op.dir, { recursive: op.recursive }), (names) => {
              for (const name of names) if (tempName.test(name)) problem(`${where}: collect shows temp file ${name}`)
            })
          case "rename":
            return client.rename(paths[op.from].path, paths[op.to].path)
          case "delete":
            return client.delete(paths[op.path].path, { force: op.force })
        }
      }

      // A missing file is expected everywhere (deleted, renamed away, never written).
      const expectedFailure = (planned: Planned, error: unknown): boolean => {
        const e = error as { _tag?: string; reason?: string }
        return e._tag === "FileSystemError" && e.reason === "NotFound" &&
          ["read", "stream", "rename", "delete"].includes(planned.op._tag)
      }

      const started = Date.now()
      const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
      for (const planned of plan) fibers.push(yield* Effect.fork(run(planned)))
      const killers: Array<Fiber.RuntimeFiber<void>> = []
      for (let i = 0; i < plan.length; i++) {
        const interrupt = plan[i].interrupt
        if (Option.isNone(interrupt)) continue
        const { amount, at } = interrupt.value
        const delay = at === "late" ?
          Effect.sleep(Duration.millis(amount)) :
          at === "inside" ?
          Effect.zipRight(Deferred.await(hooks[i]), Effect.repeatN(Effect.yieldNow(), amount)) :
          at === "insideLater" ?
          Effect.zipRight(Deferred.await(hooks[i]), Effect.sleep(Duration.millis(amount))) :
          Effect.repeatN(Effect.yieldNow(), amount)
        killers.push(yield* Effect.fork(Effect.zipRight(delay, Effect.asVoid(Fiber.interrupt(fibers[i])))))
      }
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      // Killers whose operation ended first (or never reached its hook) have nothing left to do.
      yield* Fiber.interruptAll(killers)
      const elapsed = Date.now() - started

      const outcome = { succeeded: 0, notFound: 0, interrupted: 0 }
      for (let i = 0; i < exits.length; i++) {
        const exit = exits[i]
        const planned = plan[i]
        if (Exit.isSuccess(exit)) {
          outcome.succeeded++
          continue
        }
        if (Cause.isInterruptedOnly(exit.cause)) {
          outcome.interrupted++
          if (planned.op._tag === "increment") add(ledgerInterrupted, planned.op.path, planned.id)
          continue
        }
        const failure = Cause.failureOption(exit.cause)
        if (Option.isSome(failure) && !Cause.isDie(exit.cause) && expectedFailure(planned, failure.value)) {
          outcome.notFound++
          continue
        }
        problem(`#${planned.id} ${planned.op._tag}: ${Cause.pretty(exit.cause)}`)
      }

      // Final state.
      for (const info of paths) {
        const content = nodeFs.existsSync(info.path) ? nodeFs.readFileSync(info.path, "utf8") : undefined
        if (info.kind === "value") {
          if (content !== undefined) checkValue("final", info.index, content)
        } else if (info.kind === "pure") {
          const expected = pureSucceeded.get(info.index) ?? 0
          if ((content ?? "0") !== String(expected)) {
            problem(`pure counter ${info.path}: ${content} after ${expected} successful increments`)
          }
        } else {
          const succeeded = ledgerSucceeded.get(info.index) ?? new Set<number>()
          const interrupted = ledgerInterrupted.get(info.index) ?? new Set<number>()
          const { count, ids } = parseLedger(content ?? "L:0:")
          if (count !== ids.length) problem(`ledger ${info.path}: count ${count} for ${ids.length} ids`)
          if (new Set(ids).size !== ids.length) problem(`ledger ${info.path}: an increment applied twice`)
          for (const id of succeeded) if (!ids.includes(id)) problem(`ledger ${info.path}: lost increment #${id}`)
          for (const id of ids) {
            if (!succeeded.has(id) && !interrupted.has(id)) problem(`ledger ${info.path}: #${id} never ran to commit`)
          }
        }
      }
      const leftovers = tempFiles(root)
      if (leftovers.length > 0) problem(`temp files left: ${leftovers.slice(0, 5)} (${leftovers.length})`)
      const stats = yield* manager.stats

      const ledgerCommittedInterrupted = Array.from(ledgerInterrupted.entries()).reduce((n, [path, ids]) => {
        const content = nodeFs.existsSync(paths[path].path) ? nodeFs.readFileSync(paths[path].path, "utf8") : "L:0:"
        const committed = new Set(parseLedger(content).ids)
        return n + Array.from(ids).filter((id) => committed.has(id)).length
      }, 0)
      console.log(
        `load (LOAD_SEED=${seed}): ${FIBERS} fibers in ${elapsed} ms: ${outcome.succeeded} succeeded, ` +
          `${outcome.notFound} NotFound, ${outcome.interrupted} interrupted ` +
          `(${ledgerCommittedInterrupted} interrupted ledger increments had committed)`
      )
      expect(problems, `LOAD_SEED=${seed}`).toEqual([])
      expect(stats, `LOAD_SEED=${seed}`).toEqual({ held: 0, pending: 0, nodes: 0 })
    }).pipe(
      Effect.tapErrorCause(() => Effect.sync(() => console.error(`load test failed: replay with LOAD_SEED=${seed}`)))
    )
  })
})
