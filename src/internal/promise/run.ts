/**
 * Running an Effect as a Promise with an optional `AbortSignal`: an abort
 * interrupts the fiber, so whatever the effect acquired (a lock, a temp file)
 * is released by its own finalizers, and the Promise rejects with an
 * `AbortError`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scheduler from "effect/Scheduler"
import type { CommitError } from "../../PersistenceError.js"
import { commitObserver } from "../atomic.js"
import { abortError, fromCause, invalidArgType } from "./errors.js"

/** @internal */
export const validateSignal = (signal: unknown): AbortSignal | undefined => {
  if (signal === undefined) return undefined
  if (typeof signal !== "object" || signal === null || !("aborted" in signal)) {
    throw invalidArgType("options.signal", "an instance of AbortSignal", signal)
  }
  return signal as AbortSignal
}

/**
 * Forks `effect` and runs it synchronously up to its first real asynchronous
 * step (I/O, waiting for a lock), as `Effect.runSync` does: so a lock request
 * is enqueued when the facade method is called, and requests arrive in call
 * order. (`Effect.runFork` alone starts the fiber at once, but a `Stream.run`
 * forks its channel onto the scheduler, so a sink would enqueue later.)
 *
 * @internal
 */
export const forkNow = <A, E>(effect: Effect.Effect<A, E>): Fiber.RuntimeFiber<A, E> => {
  const scheduler = new Scheduler.SyncScheduler()
  const fiber = Effect.runFork(effect, { scheduler })
  // After this flush the scheduler hands later tasks to the default one.
  scheduler.flush()
  return fiber
}

/**
 * Runs `effect` (started by {@link forkNow}) as a Promise.
 *
 * @internal
 */
export const run = <A, E>(effect: Effect.Effect<A, E>, signal?: AbortSignal): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal))
    const fiber = forkNow(effect)
    const onAbort = () => fiber.unsafeInterruptAsFork(FiberId.none)
    signal?.addEventListener("abort", onAbort, { once: true })
    fiber.addObserver((exit) => {
      signal?.removeEventListener("abort", onAbort)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else reject(fromCause(exit.cause, signal))
    })
  })

/**
 * How a replacement ended, when an abort may have interrupted it after its
 * commit point: then the commit's own outcome counts (see `commitObserver`),
 * done or a `CommitError`, not the interruption.
 *
 * @internal
 */
export const settledExit = (
  exit: Exit.Exit<void, unknown>,
  commit: { readonly failure: CommitError | undefined } | undefined
): Exit.Exit<void, unknown> =>
  commit === undefined || Exit.isSuccess(exit) || !Cause.isInterruptedOnly(exit.cause) ?
    exit :
    commit.failure === undefined ?
    Exit.void :
    Exit.fail(commit.failure)

/**
 * Runs a replacement (`write`, a sink) as {@link run} does, except that an
 * abort that arrives once the rename has happened (it cannot stop it, so the
 * file is replaced) does not make it reject as aborted: the write is done (as
 * the original's is once its temp file is written), or failed after its
 * commit (`committed: true`).
 *
 * @internal
 */
export const runReplacement = (effect: Effect.Effect<void, unknown>, signal?: AbortSignal): Promise<void> => {
  if (signal === undefined) return run(effect)
  let commit: { failure: CommitError | undefined } | undefined
  return runExit(Effect.locally(effect, commitObserver, (failure) => commit = { failure }), signal).then((exit) => {
    const settled = settledExit(exit, commit)
    if (Exit.isFailure(settled)) throw fromCause(settled.cause, signal)
  })
}

/**
 * Runs `effect` (started by {@link forkNow}) and resolves with its exit; an
 * abort interrupts it. A signal that has already fired starts nothing.
 *
 * @internal
 */
export const runExit = <A, E>(effect: Effect.Effect<A, E>, signal?: AbortSignal): Promise<Exit.Exit<A, E>> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve(Exit.interrupt(FiberId.none))
    const fiber = forkNow(effect)
    const onAbort = () => fiber.unsafeInterruptAsFork(FiberId.none)
    signal?.addEventListener("abort", onAbort, { once: true })
    fiber.addObserver((exit) => {
      signal?.removeEventListener("abort", onAbort)
      resolve(exit)
    })
  })

/**
 * Runs a clean-up effect (closing a scope) now, and reports a failure, which
 * has nobody left to receive it, to `onError`.
 *
 * @internal
 */
export const runCleanup = (
  effect: Effect.Effect<void, unknown>,
  onError: (error: Error) => void,
  onDone?: (error: Error | undefined) => void
): void => {
  forkNow(effect).addObserver((exit) => {
    const error = Exit.isFailure(exit) ? fromCause(exit.cause) : undefined
    if (error !== undefined && onDone === undefined) onError(error)
    onDone?.(error)
  })
}

/**
 * Turns a synchronous throw (an invalid argument) into a rejected Promise, as
 * the `fs.promises` functions do.
 *
 * @internal
 */
export const attempt = <A>(f: () => Promise<A>): Promise<A> => {
  try {
    return f()
  } catch (error) {
    return Promise.reject(error)
  }
}
