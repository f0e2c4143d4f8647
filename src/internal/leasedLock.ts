/**
 * The `Lock` of a remote authority (a lock server, an etcd cluster): held
 * while the connection or lease it was granted over lives, lost when that
 * ends. Shared by the remote managers.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Lock, LockMode } from "../LockManager.js"
import { LockLostError } from "../PersistenceError.js"

/**
 * A lock held as long as `isHeld()` says; `lost` completes when it is gone.
 *
 * @internal
 */
export const leasedLock = (
  grant: { readonly id: number; readonly mode: LockMode; readonly paths: ReadonlyArray<string> },
  lost: Effect.Effect<void>,
  isHeld: () => boolean
): Lock => ({
  id: grant.id,
  mode: grant.mode,
  paths: grant.paths,
  lost,
  ensureHeld: (operation) =>
    Effect.suspend(() =>
      isHeld() ? Effect.void : Effect.fail(new LockLostError({ operation, paths: grant.paths, lockId: grant.id }))
    )
})
