import { Effect, Tracer } from "effect"

/** Runs `effect` under a tracer that records every span it creates (on top of the current tracer). */
export const recordSpans = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const spans: Array<Tracer.Span> = []
    const native = yield* Effect.tracer
    const recording = Tracer.make({
      span: (...args) => {
        const span = native.span(...args)
        spans.push(span)
        return span
      },
      context: native.context
    })
    const result = yield* Effect.withTracer(effect, recording)
    return { result, spans }
  })
