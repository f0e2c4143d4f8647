/**
 * The Promise LockManager: each granted lock lives in its own Scope, kept by
 * id until `release(id)` closes it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { Lock, LockError, LockManagerService, LockMode } from "../../LockManager.js"
import { originalError } from "./errors.js"
import { bagOf, signalOf } from "./options.js"
import { run, runCleanup } from "./run.js"

/**
 * The original library's documented lock types: `collect` reads, `delete`
 * writes. (Its code refused these two with "Unexpected lock type"; the
 * facade follows its documentation, and refuses anything else with the same
 * words.)
 *
 * @internal
 */
export const modeOf = (type: unknown): LockMode => {
  switch (type) {
    case "read":
    case "collect":
      return "read"
    case "write":
    case "delete":
      return "write"
    default:
      throw originalError(`Unexpected lock type: ${String(type)}`)
  }
}

/** @internal */
export class Holds {
  readonly #scopes = new Map<number, Scope.CloseableScope>()

  constructor(readonly service: LockManagerService, readonly onError: (error: Error) => void) {}

  /**
   * Waits for the lock in a fresh scope. On failure or abort the scope is
   * closed (the waiter leaves the queue, or a grant that raced the abort is
   * released); on success the scope is kept under the lock id.
   */
  acquire(take: Effect.Effect<Lock, LockError, Scope.Scope>, options: unknown): Promise<number> {
    const signal = signalOf(bagOf("options", options))
    const scopes = this.#scopes
    return run(
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Scope.make(), (scope) =>
          restore(Scope.extend(take, scope)).pipe(
            Effect.onExit((exit) =>
              Exit.isSuccess(exit) ? Effect.sync(() => scopes.set(exit.value.id, scope)) : Scope.close(scope, exit)
            ),
            Effect.map((lock) => lock.id)
          ))
      ),
      signal
    )
  }

  /** Releases a lock taken through this facade; an unknown (or already released) id is a no-op. */
  release(id: number): boolean {
    const scope = this.#scopes.get(id)
    if (scope === undefined) return false
    this.#scopes.delete(id)
    // The in-memory manager releases synchronously: the lock is free when this returns.
    runCleanup(Scope.close(scope, Exit.void), this.onError)
    return true
  }
}
