import { Effect, Exit, Metric, type Tracer } from "effect"
import * as Client from "../../src/Client.js"

/** The outcomes the Client counts an operation with. */
export const outcomes = ["success", "failure", "interrupted"] as const

/** How many times `operation` was counted with `outcome`. */
export const count = (operation: string, outcome: string) =>
  Metric.value(Client.operations.pipe(Metric.tagged("operation", operation), Metric.tagged("outcome", outcome))).pipe(
    Effect.map((state) => state.count)
  )

/** The counts of `operation`, one per outcome, in the order of `outcomes`. */
export const counts = (operation: string) => Effect.all(outcomes.map((outcome) => count(operation, outcome)))

/** The outcome a span ended with, or "open". */
export const outcomeOf = (span: Tracer.Span) =>
  span.status._tag !== "Ended" ?
    "open" :
    Exit.isSuccess(span.status.exit) ?
    "success" :
    Exit.isInterrupted(span.status.exit) ?
    "interrupted" :
    "failure"
