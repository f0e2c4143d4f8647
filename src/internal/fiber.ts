/**
 * The current fiber, read without a step of the run loop where that is safe.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"

/**
 * Runs `f` with the current fiber. Called while the fiber runs one of its own
 * steps (an `uninterruptibleMask` callback, a `suspend`), it reads the fiber
 * at once, sparing the step `Effect.withFiberRuntime` costs; anywhere else it
 * is `withFiberRuntime`.
 *
 * @internal
 */
export const withFiber = <A, E, R>(
  f: (fiber: Fiber.RuntimeFiber<unknown, unknown>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const current = Fiber.getCurrentFiber()
  return Option.isSome(current) ? f(current.value) : Effect.withFiberRuntime(f)
}
