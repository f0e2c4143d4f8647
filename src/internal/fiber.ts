/**
 * The current fiber, read and updated without a step of the run loop where
 * that is safe.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as FiberRef from "effect/FiberRef"
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

/** The setter every fiber has, which its public interface does not list. */
interface Settable {
  setFiberRef<X>(fiberRef: FiberRef.FiberRef<X>, value: X): void
}

/**
 * Sets `fiberRef` on `fiber` at once: what `FiberRef.set` does, without the
 * two steps of its own it takes (`FiberRef.set` calls this very setter). As
 * there, only the fiber itself may call it, in one of its own steps: an
 * `uninterruptibleMask` callback, a continuation.
 *
 * @internal
 */
export const setFiberRef = <X>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  fiberRef: FiberRef.FiberRef<X>,
  value: X
): void => (fiber as unknown as Settable).setFiberRef(fiberRef, value)
