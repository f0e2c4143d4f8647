import { NodeFileSystem } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import {
  Context,
  Effect,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  Layer,
  Metric,
  Option,
  RuntimeFlags,
  RuntimeFlagsPatch,
  Stream,
  Supervisor,
  Tracer
} from "effect"
import * as nodeFs from "node:fs"
import * as LockManager from "../src/LockManager.js"
import { makeClient, tempDir } from "./utils/client.js"
import { expectIdle, hold, waitUntil } from "./utils/locks.js"
import { count, counts, outcomeOf, outcomes } from "./utils/observability.js"
import { recordSpans } from "./utils/tracing.js"

/**
 * Runs `effect` in a fiber of its own and interrupts that fiber at its
 * `at`-th step of the run loop, as an interrupt arriving while the fiber runs
 * would. The step hook is a supervisor (the run loop calls `onEffect` once per
 * step). `traced`: under a tracer that records the spans; otherwise with
 * tracing disabled. Also returns how many steps the fiber took.
 */
const interruptAtStep = <A, E>(effect: Effect.Effect<A, E>, at: number, traced: boolean) =>
  Effect.gen(function*() {
    const spans: Array<Tracer.Span> = []
    const native = yield* Effect.tracer
    let target: unknown = undefined
    let steps = 0
    class Stepper extends Supervisor.AbstractSupervisor<void> {
      readonly value = Effect.void
      override onEffect(fiber: Fiber.RuntimeFiber<any, any>) {
        if (fiber === target && ++steps === at) fiber.unsafeInterruptAsFork(FiberId.none)
      }
    }
    const recording = Tracer.make({
      span: (...args) => {
        const span = native.span(...args)
        spans.push(span)
        return span
      },
      context: native.context
    })
    // A forked fiber starts once this one yields: `target` is set by then.
    const fiber = yield* Effect.fork(
      Effect.supervised(effect, new Stepper()).pipe(
        traced ? Effect.withTracer(recording) : Effect.withTracerEnabled(false),
        Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
      )
    )
    target = fiber
    const exit = yield* Fiber.await(fiber)
    return { exit, spans, steps }
  })

class CallerService extends Context.Tag("CallerService")<CallerService, string>() {}

/** A file system that records, at each read and write, the name of the span current in it. */
const spyingSpans = (seen: Array<string>) => {
  const current = Effect.map(
    Effect.option(Effect.currentSpan),
    (span) => seen.push(Option.match(span, { onNone: () => "none", onSome: (s) => s.name }))
  )
  return Layer.effect(
    FileSystem.FileSystem,
    Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
      ...fs,
      readFile: (path) => Effect.zipRight(current, fs.readFile(path)),
      writeFile: (path, data, options) => Effect.zipRight(current, fs.writeFile(path, data, options))
    }))
  ).pipe(Layer.provide(NodeFileSystem.layer))
}

describe("observability", () => {
  it.scoped("Client operations are counted by name and outcome", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const before = {
        write: yield* count("Client.write", "success"),
        readFailure: yield* count("Client.read", "failure"),
        stream: yield* count("Client.stream", "success")
      }
      yield* client.write(`${dir}/a`, "a")
      yield* client.write(`${dir}/b`, "b")
      yield* Effect.flip(client.read(`${dir}/missing`))
      yield* Stream.runDrain(client.stream(`${dir}/a`))
      expect((yield* count("Client.write", "success")) - before.write).toBe(2)
      expect((yield* count("Client.read", "failure")) - before.readFailure).toBe(1)
      expect((yield* count("Client.stream", "success")) - before.stream).toBe(1)
      yield* expectIdle(manager)
    }))

  it.scoped("lock waits are measured and visible as spans; the gauges follow held and pending locks", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const waitsBefore = (yield* Metric.value(LockManager.lockWaitSeconds)).count
      const heldBefore = (yield* Metric.value(LockManager.locksHeld)).value
      const pendingBefore = (yield* Metric.value(LockManager.locksPending)).value
      const holder = yield* hold(m, "/obs/a", "write")
      const { spans } = yield* recordSpans(
        Effect.gen(function*() {
          const waiter = yield* Effect.fork(m.withLock("/obs/a/b", "read")(Effect.void))
          yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1))
          expect((yield* Metric.value(LockManager.locksPending)).value - pendingBefore).toBe(1)
          expect((yield* Metric.value(LockManager.locksHeld)).value - heldBefore).toBe(1)
          yield* holder.release
          yield* Fiber.join(waiter)
        })
      )
      const wait = spans.find((s) => s.name === "LockManager.wait")
      expect(wait?.attributes.get("lock.paths")).toBe("/obs/a/b")
      expect(wait?.attributes.get("lock.mode")).toBe("read")
      expect((yield* Metric.value(LockManager.lockWaitSeconds)).count - waitsBefore).toBe(2)
      expect((yield* Metric.value(LockManager.locksHeld)).value).toBe(heldBefore)
      expect((yield* Metric.value(LockManager.locksPending)).value).toBe(pendingBefore)
      yield* expectIdle(m)
    }))

  it.scoped("an operation's span is the parent of what runs in it, ends with its outcome, and is counted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The file system records the span current at each call.
      const seen: Array<string> = []
      const spying = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs): FileSystem.FileSystem => ({
          ...fs,
          readFile: (path) =>
            Effect.zipRight(
              Effect.tap(Effect.option(Effect.currentSpan), (span) =>
                Effect.sync(() =>
                  seen.push(Option.match(span, { onNone: () => "none", onSome: (s) => s.name }))
                )),
              fs.readFile(path)
            )
        }))
      ).pipe(Layer.provide(NodeFileSystem.layer))
      const { client, manager } = yield* makeClient(undefined, spying)
      yield* client.write(`${dir}/a`, "a")
      const interruptedBefore = yield* count("Client.write", "interrupted")
      const holder = yield* hold(manager, `${dir}/b`, "write")
      const { spans } = yield* recordSpans(
        Effect.gen(function*() {
          yield* client.read(`${dir}/a`)
          yield* Effect.flip(client.read(`${dir}/missing`))
          // A write that waits for its lock, then one interrupted while waiting.
          const waiting = yield* Effect.fork(client.write(`${dir}/b`, "b"))
          yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1))
          yield* holder.release
          yield* Fiber.join(waiting)
          const again = yield* hold(manager, `${dir}/b`, "write")
          const interrupted = yield* Effect.fork(client.write(`${dir}/b`, "c"))
          yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1))
          yield* Fiber.interrupt(interrupted)
          yield* again.release
        })
      )
      expect(seen).toEqual(["Client.read", "Client.read"])
      const named = (name: string) => spans.filter((s) => s.name === name)
      const [ok, missing] = named("Client.read")
      const exitOf = (span: Tracer.Span) => span.status._tag === "Ended" ? span.status.exit : undefined
      expect(Exit.isSuccess(exitOf(ok)!)).toBe(true)
      expect(Exit.isFailure(exitOf(missing)!)).toBe(true)
      const [waited, interrupted] = named("Client.write")
      const [wait] = named("LockManager.wait")
      expect(Option.getOrUndefined(wait.parent)).toBe(waited)
      expect(Exit.isSuccess(exitOf(waited)!)).toBe(true)
      const cut = exitOf(interrupted)!
      expect(Exit.isInterrupted(cut)).toBe(true)
      expect((yield* count("Client.write", "interrupted")) - interruptedBefore).toBe(1)
      // The caller's context is back as it was: no span of the Client is left current.
      expect(Option.isNone(yield* Effect.option(Effect.currentSpan))).toBe(true)
      expect(nodeFs.readFileSync(`${dir}/b`, "utf8")).toBe("b")
      yield* expectIdle(manager)
    }))

  it.scoped("after an operation the caller's context is exactly as before, whatever the outcome", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const operations: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
        client.write(`${dir}/a`, "a"),
        client.read(`${dir}/missing`),
        client.modify(`${dir}/m`, () => Effect.die("boom")),
        client.modify(`${dir}/m`, () => Effect.interrupt),
        // User code that changes the context inside the operation.
        client.modify(
          `${dir}/m`,
          () => Effect.as(FiberRef.update(FiberRef.currentContext, Context.omit(CallerService)), "changed")
        )
      ]
      for (const operation of operations) {
        yield* Effect.gen(function*() {
          const before = yield* FiberRef.get(FiberRef.currentContext)
          yield* Effect.exit(operation)
          expect(yield* FiberRef.get(FiberRef.currentContext)).toBe(before)
          expect((yield* Effect.currentSpan).name).toBe("caller")
          expect(yield* CallerService).toBe("service")
        }).pipe(Effect.withSpan("caller"), Effect.provideService(CallerService, "service"))
      }
      yield* expectIdle(manager)
    }))

  it.scoped("with tracing disabled, only operations that run the caller's code make a span; all are counted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const seen: Array<string> = []
      const { client, manager } = yield* makeClient(undefined, spyingSpans(seen))
      const inModify: Array<string> = []
      const before = { write: yield* counts("Client.write"), read: yield* counts("Client.read") }
      yield* Effect.gen(function*() {
        yield* client.write(`${dir}/a`, "a")
        yield* client.read(`${dir}/a`)
        yield* Effect.flip(client.read(`${dir}/missing`))
        const holder = yield* hold(manager, `${dir}/b`, "write")
        const waiting = yield* Effect.fork(client.write(`${dir}/b`, "b"))
        yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1))
        yield* Fiber.interrupt(waiting)
        yield* holder.release
        // The caller's function may ask for the operation's span: it is made.
        yield* client.modify(`${dir}/a`, () =>
          Effect.map(Effect.currentSpan, (span) => {
            inModify.push(span.name)
            return "m"
          }))
      }).pipe(Effect.withSpan("caller"), Effect.withTracerEnabled(false))
      // Nothing but the library ran in the write and the reads: the file
      // system saw the caller's (no-op) span. The modify's read and write ran
      // in its own, a no-op span too, as Effect.withSpan makes with tracing off.
      expect(seen).toEqual(["caller", "caller", "caller", "Client.modify", "Client.modify"])
      expect(inModify).toEqual(["Client.modify"])
      const delta = (now: ReadonlyArray<number>, then: ReadonlyArray<number>) => now.map((n, i) => n - then[i])
      expect(delta(yield* counts("Client.write"), before.write)).toEqual([1, 0, 1])
      expect(delta(yield* counts("Client.read"), before.read)).toEqual([1, 1, 0])
      expect(nodeFs.readFileSync(`${dir}/a`, "utf8")).toBe("m")
      expect(nodeFs.existsSync(`${dir}/b`)).toBe(false)
      // With tracing on (Effect's built-in tracer, no tracer installed), every operation makes its span.
      seen.length = 0
      yield* Effect.zipRight(client.write(`${dir}/a`, "a"), client.read(`${dir}/a`)).pipe(Effect.withSpan("caller"))
      expect(seen).toEqual(["Client.write", "Client.read"])
      yield* expectIdle(manager)
    }))

  for (const traced of [true, false]) {
    it.scoped(
      `an interrupt at any step of an operation: it is counted once, with the outcome its span ends with (${
        traced ? "traced" : "tracing disabled: no span"
      })`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const { client, manager } = yield* makeClient()
          const target = `${dir}/doc`
          nodeFs.writeFileSync(target, "old")
          const write = client.write(target, "new")
          const { steps } = yield* interruptAtStep(write, Infinity, traced)
          expect(steps).toBeGreaterThan(10)
          const seen = new Set<string>()
          // Steps before the operation begins count nothing; every later one counts.
          let began = false
          for (let at = 1; at <= steps + 1; at++) {
            nodeFs.writeFileSync(target, "old")
            const before = yield* counts("Client.write")
            const { exit, spans } = yield* interruptAtStep(write, at, traced)
            const delta = (yield* counts("Client.write")).map((n, i) => n - before[i])
            const counted = outcomes.filter((_, i) => delta[i] !== 0)
            const mine = spans.filter((span) => span.name === "Client.write").map(outcomeOf)
            const outcome = Exit.isSuccess(exit) ? "success" : Exit.isInterrupted(exit) ? "interrupted" : "failure"
            const content = nodeFs.readFileSync(target, "utf8")
            if (counted.length === 0) {
              // Interrupted before the operation began: no span, nothing counted, nothing written.
              expect({ at, began, outcome, content, mine }).toEqual({
                at,
                began: false,
                outcome: "interrupted",
                content: "old",
                mine: []
              })
            } else {
              began = true
              // Counted once: a success (the interrupt may land after the
              // operation, in the fiber that ran it) or an interrupt.
              expect({ at, delta: delta.reduce((a, b) => a + b, 0) }).toEqual({ at, delta: 1 })
              expect(outcome === "success" ? [["success"]] : [["success"], ["interrupted"]]).toContainEqual(counted)
              // Traced, the span ended once, with the outcome counted.
              expect({ at, mine }).toEqual({ at, mine: traced ? counted : [] })
              expect(counted[0] === "success" ? ["new"] : ["old", "new"]).toContain(content)
              seen.add(counted[0])
            }
            yield* expectIdle(manager)
          }
          expect([...seen].sort()).toEqual(["interrupted", "success"])
        })
    )
  }

  it.scoped("nothing is logged by default", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient({ durable: true })
      const logged: Array<unknown> = []
      const original = { log: console.log, error: console.error, warn: console.warn, info: console.info }
      for (const key of ["log", "error", "warn", "info"] as const) console[key] = (...args) => logged.push(args)
      yield* Effect.gen(function*() {
        yield* client.write(`${dir}/x/y`, "1")
        yield* Effect.flip(client.read(`${dir}/nope`))
        yield* client.delete(`${dir}/x`, { recursive: true })
      }).pipe(Effect.ensuring(Effect.sync(() => Object.assign(console, original))))
      expect(logged).toEqual([])
      expect(nodeFs.readdirSync(dir)).toEqual([])
    }))
})
