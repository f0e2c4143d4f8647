import { describe, expect, it, vi } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, FiberRef, Option, TestClock, Tracer } from "effect"
import * as Span from "../src/internal/span.js"
import * as LockManager from "../src/LockManager.js"
import { expectIdle, hold, waitUntil } from "./utils/locks.js"

/** A tracer on top of the current one that keeps every span it makes, in order. */
const recording = Effect.map(Effect.tracer, (native) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: native.context
  })
  return { spans, tracer }
})

const named = (spans: ReadonlyArray<Tracer.Span>, name: string) => spans.filter((s) => s.name === name)

const exitOf = (span: Tracer.Span) => span.status._tag === "Ended" ? span.status.exit : undefined

/** What a user of a tracer sees of an exit: its kind and what it carries. */
const shapeOf = (exit: Exit.Exit<unknown, unknown> | undefined) =>
  exit === undefined ?
    "open" :
    Exit.match(exit, {
      onSuccess: (value) => ({ success: value }),
      onFailure: (cause) =>
        Cause.isInterruptedOnly(cause) ?
          "interrupted" :
          { failures: [...Cause.failures(cause)], defects: [...Cause.defects(cause)] }
    })

const bodies: ReadonlyArray<readonly [string, Effect.Effect<unknown, string>]> = [
  ["success", Effect.succeed(1)],
  ["failure", Effect.fail("boom")],
  ["defect", Effect.die("bug")],
  ["interrupt", Effect.interrupt]
]

describe("the span helper", () => {
  for (const [kind, body] of bodies) {
    it.effect(`runs like Effect.withSpan: parent, attributes, timing, children, exit (${kind})`, () =>
      Effect.gen(function*() {
        const observe = (wrap: (self: Effect.Effect<unknown, string>) => Effect.Effect<unknown, string>) =>
          Effect.gen(function*() {
            const { spans, tracer } = yield* recording
            const inside: Array<string> = []
            const run = Effect.gen(function*() {
              const contextBefore = yield* FiberRef.get(FiberRef.currentContext)
              yield* Effect.exit(wrap(Effect.gen(function*() {
                inside.push((yield* Effect.orDie(Effect.currentSpan)).name)
                yield* Effect.withSpan(Effect.void, "child")
                yield* TestClock.adjust("1 second")
                return yield* body
              })))
              // The caller's context is back, with its own span current.
              expect(yield* FiberRef.get(FiberRef.currentContext)).toBe(contextBefore)
              inside.push((yield* Effect.currentSpan).name)
            }).pipe(Effect.withSpan("caller"), Effect.withTracer(tracer))
            yield* TestClock.adjust("5 seconds")
            yield* run
            const [op] = named(spans, "op")
            const [caller] = named(spans, "caller")
            const [child] = named(spans, "child")
            return {
              spans: spans.map((s) => s.name),
              parent: Option.getOrUndefined(op.parent) === caller,
              childParent: Option.getOrUndefined(child.parent) === op,
              attributes: Object.fromEntries(op.attributes),
              // From the caller's start, and the duration.
              start: op.status.startTime - caller.status.startTime,
              duration: op.status._tag === "Ended" ? op.status.endTime - op.status.startTime : undefined,
              exit: shapeOf(exitOf(op)),
              inside
            }
          })
        const attributes = { "persistence.path": "/a", n: 1 }
        const reference = yield* observe(Effect.withSpan("op", { attributes, captureStackTrace: false }))
        const calls: Array<Exit.Exit<unknown, unknown>> = []
        const ours = yield* observe(Span.around("op", attributes, (exit) => calls.push(exit)))
        expect(ours).toEqual(reference)
        expect(ours.parent && ours.childParent).toBe(true)
        expect(ours.duration).toBe(BigInt(1_000_000_000))
        expect(ours.inside).toEqual(["op", "caller"])
        // Reported once, with the exit the span ended with.
        expect(calls.map(shapeOf)).toEqual([ours.exit])
      }))
  }

  it.effect("makes the span Effect.withSpan makes: annotations, links, a parent that stops propagation, tracing off", () =>
    Effect.gen(function*() {
      const link = yield* Effect.makeSpan("linked")
      const settings: ReadonlyArray<
        readonly [string, <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>]
      > = [
        ["plain", (self) => self],
        ["annotated", (self) => Effect.annotateSpans(self, { annotated: "yes", n: 2 })],
        ["linked", (self) => Effect.linkSpans(self, link, { why: "test" })],
        [
          "under a parent that stops propagation",
          (self) => self.pipe(Effect.withSpan("quiet", { context: Context.make(Tracer.DisablePropagation, true) }))
        ],
        ["tracing off", (self) => Effect.withTracerEnabled(self, false)]
      ]
      for (const [setting, around] of settings) {
        const observe = (wrap: (self: Effect.Effect<Tracer.Span>) => Effect.Effect<Tracer.Span>) =>
          Effect.gen(function*() {
            const { spans, tracer } = yield* recording
            const span = yield* wrap(Effect.orDie(Effect.currentSpan)).pipe(
              around,
              Effect.withSpan("caller"),
              Effect.withTracer(tracer)
            )
            const parents: Array<string> = []
            for (let p: Option.Option<Tracer.AnySpan> = span.parent; Option.isSome(p);) {
              const next: Tracer.AnySpan = p.value
              parents.push(next._tag === "Span" ? next.name : "external")
              p = next._tag === "Span" ? next.parent : Option.none()
            }
            return {
              setting,
              name: span.name,
              recorded: spans.map((s) => s.name),
              parents,
              attributes: Object.fromEntries(span.attributes),
              links: span.links.map((l) => [l.span, l.attributes]),
              sampled: span.sampled,
              kind: span.kind
            }
          })
        const attributes = { "persistence.path": "/a" }
        const reference = yield* observe(Effect.withSpan("op", { attributes, captureStackTrace: false }))
        const ours = yield* observe(Span.around("op", attributes))
        expect(ours).toEqual(reference)
      }
    }))

  it.effect("under Effect's built-in tracer, makes the span Effect.withSpan makes; its ids are drawn when read", () =>
    Effect.gen(function*() {
      const attributes = { "persistence.path": "/a" }
      const observe = (
        wrap: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
        parented: boolean
      ) =>
        Effect.gen(function*() {
          const run = Effect.gen(function*() {
            const caller = yield* Effect.option(Effect.currentSpan)
            const [span, child] = yield* wrap(
              Effect.zip(Effect.orDie(Effect.currentSpan), Effect.orDie(Effect.withSpan(Effect.currentSpan, "child")))
            )
            return { caller: Option.getOrUndefined(caller), span, child }
          })
          // No Effect.withTracer: the built-in tracer.
          const { caller, child, span } = yield* (parented ? Effect.withSpan(run, "caller") : run)
          return {
            name: span.name,
            tag: span._tag,
            kind: span.kind,
            sampled: span.sampled,
            attributes: Object.fromEntries(span.attributes),
            links: span.links,
            status: span.status._tag,
            parent: Option.getOrUndefined(span.parent) === caller,
            traceId: caller === undefined ? /^[0-9a-f]{32}$/.test(span.traceId) : span.traceId === caller.traceId,
            spanId: /^[0-9a-f]{16}$/.test(span.spanId),
            // Read twice: drawn once.
            stable: span.spanId === span.spanId && span.traceId === span.traceId,
            child: Option.getOrUndefined(child.parent) === span && child.traceId === span.traceId &&
              child.spanId !== span.spanId
          }
        })
      for (const parented of [false, true]) {
        const reference = yield* observe(Effect.withSpan("op", { attributes, captureStackTrace: false }), parented)
        const ours = yield* observe(Span.around("op", attributes), parented)
        expect(ours).toEqual(reference)
        expect([ours.parent, ours.traceId, ours.spanId, ours.stable, ours.child].every((holds) => holds)).toBe(true)
      }
      // Ids no one reads are never drawn (Effect's span draws 48 hex digits, one Math.random each).
      const draws = vi.spyOn(Math, "random")
      try {
        const span = yield* Span.around("op", attributes)(Effect.orDie(Effect.currentSpan))
        expect(draws).toHaveBeenCalledTimes(0)
        expect(span.spanId).toMatch(/^[0-9a-f]{16}$/)
        expect(draws).toHaveBeenCalledTimes(16)
      } finally {
        draws.mockRestore()
      }
    }))

  it.effect("a scoped span ends with its scope's exit, as Effect.makeSpanScoped's does, and reports it once", () =>
    Effect.gen(function*() {
      for (const [, body] of bodies) {
        const { spans, tracer } = yield* recording
        const calls: Array<Exit.Exit<unknown, unknown>> = []
        const use = (open: Effect.Effect<Tracer.Span, never, any>) =>
          Effect.exit(Effect.scoped(Effect.zipRight(Effect.zipRight(open, TestClock.adjust("2 seconds")), body)))
        yield* Effect.withTracer(
          Effect.withSpan(
            Effect.zipRight(
              use(Effect.makeSpanScoped("op", { captureStackTrace: false })),
              use(Span.scoped("op", {}, (exit) => calls.push(exit)))
            ),
            "caller"
          ),
          tracer
        )
        const [reference, ours] = named(spans, "op")
        const [caller] = named(spans, "caller")
        expect(Option.getOrUndefined(ours.parent)).toBe(caller)
        expect(shapeOf(exitOf(ours))).toEqual(shapeOf(exitOf(reference)))
        expect(calls.map(shapeOf)).toEqual([shapeOf(exitOf(ours))])
        const duration = (span: Tracer.Span) =>
          span.status._tag === "Ended" ? span.status.endTime - span.status.startTime : undefined
        expect(duration(ours)).toBe(BigInt(2_000_000_000))
      }
    }))
})

describe("the LockManager.wait span", () => {
  it.effect("a contended wait makes exactly one, child of the caller's span, ended before the waiter goes on", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const { spans, tracer } = yield* recording
      const holder = yield* hold(m, "/w/a", "write")
      // What the waiter sees of the wait span when it runs again after the grant.
      let seenAtGrant: unknown = "not run"
      const waiter = yield* Effect.fork(
        m.withLock("/w/a/b", "read")(Effect.sync(() => {
          const [wait] = named(spans, "LockManager.wait")
          seenAtGrant = wait === undefined ? "no span" : shapeOf(exitOf(wait))
        })).pipe(Effect.withSpan("caller"), Effect.withTracer(tracer))
      )
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1), "waiter queued")
      const [open] = named(spans, "LockManager.wait")
      expect(shapeOf(exitOf(open))).toBe("open")
      yield* holder.release
      yield* Fiber.join(waiter)
      const waits = named(spans, "LockManager.wait")
      expect(waits).toHaveLength(1)
      const [wait] = waits
      expect(Option.getOrUndefined(wait.parent)).toBe(named(spans, "caller")[0])
      expect(Object.fromEntries(wait.attributes)).toEqual({ "lock.paths": "/w/a/b", "lock.mode": "read" })
      expect(seenAtGrant).toEqual({ success: expect.objectContaining({ paths: ["/w/a/b"], mode: "read" }) })
      yield* expectIdle(m)
    }))

  it.effect("an interrupted wait ends its span with the interrupt; an uncontended lock makes none", () =>
    Effect.gen(function*() {
      const m = yield* LockManager.make
      const { spans, tracer } = yield* recording
      const traced = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withTracer(effect, tracer)
      yield* traced(m.withLock("/u/a", "write")(Effect.void))
      yield* traced(Effect.scoped(m.lock("/u/b", "read")))
      yield* traced(m.withLockAll(["/u/c", "/u/d"])(Effect.void))
      expect(named(spans, "LockManager.wait")).toEqual([])
      const holder = yield* hold(m, "/u/a", "write")
      const waiter = yield* Effect.fork(traced(Effect.scoped(m.lock("/u/a", "write"))))
      yield* waitUntil(Effect.map(m.stats, (s) => s.pending === 1), "waiter queued")
      yield* Fiber.interrupt(waiter)
      const waits = named(spans, "LockManager.wait")
      expect(waits.map((s) => shapeOf(exitOf(s)))).toEqual(["interrupted"])
      yield* holder.release
      expect(named(spans, "LockManager.wait")).toHaveLength(1)
      yield* expectIdle(m)
    }))
})
