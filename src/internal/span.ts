/**
 * The spans of the library's operations, and the one place where an
 * operation's outcome is recorded (`onEnd`: the Client counts it).
 *
 * - `around`: a one-shot operation (an effect), as `Effect.withSpan` runs it,
 *   in one uninterruptible region (with tracing disabled, not made where
 *   nothing of the caller's runs in it: see `Inside`).
 * - `scoped`: a span for the lifetime of a scope (streams and sinks: the
 *   operation lasts as long as its consumer keeps it open).
 * - `wait`: a span around a callback wait (`Effect.async`) that the waker ends
 *   at once, with no frame of its own while the wait is not contended.
 *
 * In each, ending the span and `onEnd` happen in one step with the same exit,
 * so a span is never ended with another outcome than the one recorded, and an
 * interrupt cannot fall between the two.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import { setFiberRef, withFiber } from "./fiber.js"

/** Called once with the exit a span ended with. */
export type OnEnd = (exit: Exit.Exit<unknown, unknown>) => void

const none: OnEnd = () => {}

/** How a span's end is timed, read from the fiber that opened it (as `Effect.withSpan` does). */
interface Timing {
  readonly clock: Clock.Clock
  readonly timed: boolean
}

const timingOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Timing => ({
  clock: Context.get(fiber.currentDefaultServices, Clock.Clock),
  timed: fiber.getFiberRef(FiberRef.currentTracerTimingEnabled)
})

/**
 * Ends `span` with `exit` unless something ended it already, and reports the
 * exit. Reported whatever the span's state: with tracing disabled the span is
 * a no-op one, born ended, and code that holds the span may end it early;
 * the operation still ended once, with this exit. Each caller calls it once
 * per operation (a wait twice, with nothing to report).
 */
const finish = (span: Tracer.Span, timing: Timing, exit: Exit.Exit<unknown, unknown>, onEnd: OnEnd): void => {
  if (span.status._tag !== "Ended") span.end(timing.timed ? timing.clock.unsafeCurrentTimeNanos() : BigInt(0), exit)
  onEnd(exit)
}

/** @internal */
export const optionsOf = (attributes: Record<string, unknown>): Tracer.SpanOptions => ({
  attributes,
  // A stack trace per span costs ~3 us of a 4 KiB read, for a frame that
  // names the library, not the caller.
  captureStackTrace: false
})

/**
 * Runs `self` in a span named `name`, as `Effect.withSpan` does (parent: the
 * caller's span; the span is the parent of what runs inside; the caller's
 * context is restored on every exit before the span ends), in one
 * uninterruptible region where `withSpan` and an `onExit` take three.
 *
 * @internal
 */
export const around = (
  name: string,
  attributes: Record<string, unknown>,
  onEnd: OnEnd = none,
  inside: Inside = "caller"
) => {
  const options = optionsOf(attributes)
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => run(name, options, onEnd, self, inside)
}

/**
 * What runs in a one-shot operation's span: `"caller"` when code the caller
 * gave runs inside it (a function, a schema), which may ask for the current
 * span; `"library"` when only the library and its services do. With tracing
 * disabled (`Effect.withTracerEnabled(false)`), where `Effect.withSpan` makes
 * a span that records nothing, a `"library"` operation makes none: the
 * region only reports the exit. Making it (the span, the context set and
 * restored: two copies of the fiber's FiberRefs) is most of the JavaScript a
 * stubbed write or read costs, which a caller that turned tracing off asked
 * not to pay.
 *
 * @internal
 */
export type Inside = "caller" | "library"

/**
 * `around` for one call: the options made by the caller with `optionsOf`
 * (attributes only: the span made here reads no parent, root, kind or links
 * option), no closure per call beyond the region's own.
 *
 * The span is made in the region's first step, as `Effect.makeSpan` makes
 * it (the fiber's tracer, parent, links, annotations, then the attributes),
 * without the three steps of its own that `makeSpan` takes; when tracing is
 * disabled or the parent stops propagation, `makeSpan` makes it (rare).
 *
 * @internal
 */
export const run = <A, E, R>(
  name: string,
  options: Tracer.SpanOptions,
  onEnd: OnEnd,
  self: Effect.Effect<A, E, R>,
  inside: Inside = "caller"
): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    // The mask's callback runs in the fiber's own step: the fiber is read at once.
    withFiber((fiber) => region(fiber, name, options, onEnd, restore(self), inside))
  )

const region = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  name: string,
  options: Tracer.SpanOptions,
  onEnd: OnEnd,
  self: Effect.Effect<A, E, R>,
  inside: Inside
): Effect.Effect<A, E, R> => {
  if (inside === "library" && !fiber.getFiberRef(FiberRef.currentTracerEnabled)) return reported(onEnd, self)
  const span = plainSpan(fiber, name, options)
  return span === undefined ?
    Effect.flatMap(Effect.makeSpan(name, options), (span) => inSpan(fiber, span, onEnd, self)) :
    inSpan(fiber, span, onEnd, self)
}

/** `self`, with its exit reported to `onEnd` in the step it ends in (already uninterruptible). */
const reported = <A, E, R>(onEnd: OnEnd, self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.matchCauseEffect(self, {
    onFailure: (cause) => {
      const exit = Exit.failCause(cause)
      onEnd(exit)
      return exit
    },
    onSuccess: (value) => {
      const exit = Exit.succeed(value)
      onEnd(exit)
      return exit
    }
  })

/** `length` random lowercase hex digits, as Effect's built-in tracer draws span ids. */
const randomHex = (length: number): string => {
  let result = ""
  for (let i = 0; i < length; i++) result += "abcdef0123456789".charAt(Math.floor(Math.random() * 16))
  return result
}

/**
 * The span Effect's built-in tracer makes (its `NativeSpan`: the same fields,
 * status, attributes, events and links), except that its ids are drawn when
 * first read: a trace id is the parent's, or 32 random hex digits; a span id,
 * 16. They stay the same once read. Under the built-in tracer, which exports
 * nothing, most operations' ids are never read; drawing them, digit by digit,
 * was a tenth of a traced `Client.write`'s JavaScript with the file system
 * stubbed. (They are accessors, so a spread or `Object.keys` of the span does
 * not list them.)
 */
class BuiltInSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = true
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly events: Array<[name: string, startTime: bigint, attributes: Record<string, unknown>]> = []
  readonly links: Array<Tracer.SpanLink>
  private drawnSpanId: string | undefined = undefined
  private drawnTraceId: string | undefined = undefined
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: Iterable<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.status = { _tag: "Started", startTime }
    this.links = Array.from(links)
  }
  get spanId(): string {
    return this.drawnSpanId ??= randomHex(16)
  }
  get traceId(): string {
    return this.drawnTraceId ??= Option.isSome(this.parent) ? this.parent.value.traceId : randomHex(32)
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", endTime, exit, startTime: this.status.startTime }
  }
  attribute(key: string, value: unknown): void {
    this.attributes.set(key, value)
  }
  event(name: string, startTime: bigint, attributes?: Record<string, unknown>): void {
    this.events.push([name, startTime, attributes ?? {}])
  }
  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    this.links.push(...links)
  }
}

/** Effect's built-in tracer: it records spans in memory and exports nothing. */
const nativeTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/**
 * What `Effect.makeSpan` makes, made at once, when tracing is enabled and
 * the parent (if any) propagates (under the built-in tracer, a
 * `BuiltInSpan`); `undefined` otherwise.
 */
const plainSpan = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  name: string,
  options: Tracer.SpanOptions
): Tracer.Span | undefined => {
  if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return undefined
  const parent = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
  if (Option.isSome(parent) && Context.get(parent.value.context, Tracer.DisablePropagation)) return undefined
  const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
  const links = Chunk.toReadonlyArray(fiber.getFiberRef(FiberRef.currentTracerSpanLinks))
  const startTime = fiber.getFiberRef(FiberRef.currentTracerTimingEnabled) ? clock.unsafeCurrentTimeNanos() : BigInt(0)
  const tracer = fiber.currentTracer
  const span = tracer === nativeTracer ?
    new BuiltInSpan(name, parent, Context.empty(), links, startTime, "internal") :
    tracer.span(name, parent, Context.empty(), links, startTime, "internal", options)
  HashMap.forEach(fiber.getFiberRef(FiberRef.currentTracerSpanAnnotations), (value, key) => span.attribute(key, value))
  if (options.attributes !== undefined) {
    for (const key in options.attributes) span.attribute(key, options.attributes[key])
  }
  return span
}

/**
 * Runs `self` with `span` as the parent of what runs in it; then restores
 * the caller's context and ends the span, in that order. Called in a step
 * of `fiber` (the region's first, or `makeSpan`'s continuation): the context
 * is set at once, and restored by the handler frame that sees `self` end, so
 * the region adds no step of its own to `self`'s.
 */
const inSpan = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  span: Tracer.Span,
  onEnd: OnEnd,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const outer = fiber.currentContext
  const timing = timingOf(fiber)
  setFiberRef(fiber, FiberRef.currentContext, Context.add(outer, Tracer.ParentSpan, span))
  const end = <X extends Exit.Exit<A, E>>(exit: X): X => {
    setFiberRef(fiber, FiberRef.currentContext, outer)
    finish(span, timing, exit, onEnd)
    return exit
  }
  return Effect.matchCauseEffect(self, {
    onFailure: (cause) => end(Exit.failCause(cause)),
    onSuccess: (value) => end(Exit.succeed(value))
  })
}

/**
 * A span that lasts as long as the current scope: opened now, ended with the
 * scope's exit (`onEnd` with it). The caller makes it the parent of what runs
 * in the scope (`Tracer.ParentSpan`).
 *
 * @internal
 */
export const scoped = (
  name: string,
  attributes: Record<string, unknown>,
  onEnd: OnEnd = none
): Effect.Effect<Tracer.Span, never, Scope.Scope> => {
  const options = optionsOf(attributes)
  return Effect.uninterruptible(
    Effect.flatMap(
      Effect.makeSpan(name, options),
      (span) =>
        Effect.withFiberRuntime<Tracer.Span, never, Scope.Scope>((fiber) => {
          const timing = timingOf(fiber)
          return Effect.as(Effect.addFinalizer((exit) => Effect.sync(() => finish(span, timing, exit, onEnd))), span)
        })
    )
  )
}

/**
 * Whether a wait of `fiber` gets a span (see `wait`): a tracer other than
 * Effect's built-in one is installed and tracing is enabled. Lets a waiter
 * that is not traced park in one plain `Effect.async`.
 *
 * @internal
 */
export const tracesWait = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  Context.get(fiber.currentDefaultServices, Tracer.Tracer) !== nativeTracer &&
  fiber.getFiberRef(FiberRef.currentTracerEnabled)

/**
 * A callback wait in a span: `register` receives `done`, which ends the span
 * with success and resumes the waiter with the value, in that order, so the
 * span is ended before the waiter runs again. An interrupted wait ends it with
 * its interrupt. What registers runs synchronously, as in `Effect.async`.
 *
 * Nothing runs inside a wait, so its span is no one's parent: under Effect's
 * built-in tracer (no tracer installed), which exports nothing, the span has
 * no reader at all and is not made. Making it (span ids drawn digit by digit
 * from `Math.random`) was most of the cost of a contended lock.
 *
 * @internal
 */
export const wait = <A>(
  name: string,
  attributes: Record<string, unknown>,
  register: (done: (value: A) => void) => void
): Effect.Effect<A> =>
  Effect.withFiberRuntime<A>((fiber) => {
    if (!tracesWait(fiber)) {
      return Effect.async<A>((resume) => register((value) => resume(Effect.succeed(value))))
    }
    const timing = timingOf(fiber)
    return Effect.flatMap(Effect.makeSpan(name, optionsOf(attributes)), (span) =>
      Effect.onExit(
        Effect.async<A>((resume) => {
          register((value) => {
            finish(span, timing, Exit.succeed(value), none)
            resume(Effect.succeed(value))
          })
        }),
        (exit) => Effect.sync(() => finish(span, timing, exit, none))
      ))
  })
