/**
 * What the remote lock managers (the lock server's and etcd's) share about
 * their link to the authority: why it failed, as a `RemoteLockError`, and the
 * link itself, opened on first use and again after it was lost.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import { RemoteLockError, type RemoteLockErrorReason } from "../PersistenceError.js"

/**
 * A `RemoteLockError` without its operation: shared by every request over one
 * link.
 *
 * @internal
 */
export interface Failure {
  readonly reason: RemoteLockErrorReason
  readonly detail?: string
  readonly cause?: unknown
}

/** @internal */
export const toError = (operation: string, address: string, failure: Failure): RemoteLockError =>
  new RemoteLockError({
    operation,
    address,
    reason: failure.reason,
    ...(failure.detail !== undefined ? { detail: failure.detail } : {}),
    ...(failure.cause !== undefined ? { cause: failure.cause } : {})
  })

/** @internal */
export interface Link<C> {
  /** The link opened last, live or lost, if any (for the manager's shutdown). */
  readonly current: C | undefined
  /**
   * The live link, or a new one. Concurrent callers share one attempt, which
   * runs in the manager's scope: a caller that gives up (interrupted, timed
   * out) does not abort it for the others.
   */
  readonly get: Effect.Effect<C, Failure>
}

/**
 * A link opened by `open` when first needed and whenever the last one is lost
 * (its `lost` is set) or retired (`retired`: it serves what it has, takes
 * nothing new).
 *
 * @internal
 */
export const make = <C extends { readonly lost: Failure | undefined; readonly retired?: boolean }>(
  open: Effect.Effect<C, Failure>,
  scope: Scope.Scope
): Link<C> => {
  let current: C | undefined
  let connecting: Deferred.Deferred<C, Failure> | undefined
  const get = Effect.uninterruptibleMask((restore) => {
    if (current !== undefined && current.lost === undefined && current.retired !== true) {
      return Effect.succeed(current)
    }
    let attempt = connecting
    if (attempt === undefined) {
      const deferred = Deferred.unsafeMake<C, Failure>(FiberId.none)
      attempt = connecting = deferred
      // Forked from an uninterruptible region: the attempt itself must stay
      // interruptible, or its timeout could not stop it.
      const run = Effect.interruptible(open).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            connecting = undefined
            if (Exit.isSuccess(exit)) current = exit.value
            // Interrupted: the manager's scope closed. Its waiting callers
            // were not interrupted themselves: they get a typed failure.
            Deferred.unsafeDone(
              deferred,
              Exit.isInterrupted(exit) ?
                Exit.fail({ reason: "Disconnected", detail: "the lock manager was shut down" }) :
                exit
            )
          })
        ),
        Effect.forkIn(scope)
      )
      return Effect.zipRight(run, restore(Deferred.await(deferred)))
    }
    return restore(Deferred.await(attempt))
  })
  return {
    get current() {
      return current
    },
    get
  }
}
