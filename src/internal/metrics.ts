/**
 * The library's metrics. Updated synchronously (`unsafeModify`/`unsafeUpdate`)
 * from the lock manager's bookkeeping so the hot path pays no extra effects.
 *
 * @internal
 */
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"

/**
 * The tags of an untagged synchronous update.
 *
 * @internal
 */
export const noTags: ReadonlyArray<never> = []

/** @internal */
export const lockWaitSeconds = Metric.histogram(
  "persistence_lock_wait_seconds",
  MetricBoundaries.exponential({ start: 0.0001, factor: 4, count: 10 }),
  "Time from a lock request to its grant (0 when granted at once)"
)

/** @internal */
export const locksHeld = Metric.gauge("persistence_locks_held", {
  description: "Locks granted and not released, over all in-memory managers of the process"
})

/** @internal */
export const locksPending = Metric.gauge("persistence_locks_pending", {
  description: "Lock requests waiting, over all in-memory managers of the process"
})

/** @internal */
export const operations = Metric.counter("persistence_operations_total", {
  description: "Client operations by name and outcome (success, failure, interrupted)",
  incremental: true
})

const labels = new Map<string, Record<"success" | "failure" | "interrupted", ReadonlyArray<MetricLabel.MetricLabel>>>()

const labelsFor = (operation: string) => {
  let found = labels.get(operation)
  if (found === undefined) {
    const op = MetricLabel.make("operation", operation)
    found = {
      success: [op, MetricLabel.make("outcome", "success")],
      failure: [op, MetricLabel.make("outcome", "failure")],
      interrupted: [op, MetricLabel.make("outcome", "interrupted")]
    }
    labels.set(operation, found)
  }
  return found
}

/** @internal */
export const countOperation = (operation: string, exit: Exit.Exit<unknown, unknown>): void => {
  const outcome = Exit.isSuccess(exit) ? "success" : Exit.isInterrupted(exit) ? "interrupted" : "failure"
  operations.unsafeUpdate(1, labelsFor(operation)[outcome])
}
