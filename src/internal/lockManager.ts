/** @internal */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import type * as Api from "../LockManager.js"
import type { Lock, LockManagerService, LockMode } from "../LockManager.js"
import type { InvalidPathError } from "../PersistenceError.js"
import { invalidPath } from "./errors.js"
import { LockTable, type Request } from "./lockTable.js"
import { locksHeld, locksPending, lockWaitSeconds } from "./metrics.js"
import { normalize, ROOT, topMost } from "./path.js"

/** @internal */
export const TypeId: typeof Api.TypeId = Symbol.for("effect-persistence/LockManager") as typeof Api.TypeId

/**
 * A validated lock request. Shared with the remote manager, so that bad input
 * fails the same way there, before any network I/O.
 *
 * @internal
 */
export interface Plan {
  readonly mode: LockMode
  /** What the lock table locks: top-most paths only. */
  readonly locked: ReadonlyArray<string>
  /** What the caller sees on the `Lock`. */
  readonly paths: ReadonlyArray<string>
  /** A combined request (`lockAll`). */
  readonly all: boolean
}

/** @internal */
export const planOne = (operation: string, path: string, mode: LockMode): Either.Either<Plan, InvalidPathError> => {
  const normal = normalize(path)
  if (Either.isLeft(normal)) return Either.left(invalidPath(operation, path, normal.left))
  // The root may be read (listed), never written: a write on it would
  // exclude every path there is.
  if (mode === "write" && normal.right === ROOT) return Either.left(invalidPath(operation, path, "Root"))
  const paths = [normal.right]
  return Either.right({ mode, locked: paths, paths, all: false })
}

/** @internal */
export const planAll = (operation: string, input: Iterable<string>): Either.Either<Plan, InvalidPathError> => {
  const paths: Array<string> = []
  for (const path of input) {
    const normal = normalize(path)
    if (Either.isLeft(normal)) return Either.left(invalidPath(operation, path, normal.left))
    if (normal.right === ROOT) return Either.left(invalidPath(operation, path, "Root"))
    if (!paths.includes(normal.right)) paths.push(normal.right)
  }
  if (paths.length === 0) return Either.left(invalidPath(operation, [], "EmptyPathSet"))
  return Either.right({ mode: "write", locked: topMost(paths), paths, all: true })
}

const noTags: ReadonlyArray<never> = []

// An in-memory lock cannot be lost: it lives as long as its holder.
const neverLost = (_operation: string) => Effect.void

/** @internal */
export const unsafeMake = (): LockManagerService => {
  const table = new LockTable()

  const toLock = (request: Request, plan: Plan): Lock => ({
    id: request.id,
    mode: plan.mode,
    paths: plan.paths,
    lost: Effect.never,
    ensureHeld: neverLost
  })

  // The gauges follow the table: a leave may grant other requests, so it is
  // accounted by difference.
  const enqueue = (plan: Plan): Request => {
    const request = table.enqueue(plan.mode, plan.locked)
    if (request.state === "held") {
      locksHeld.unsafeModify(1, noTags)
      lockWaitSeconds.unsafeUpdate(0, noTags)
    } else {
      locksPending.unsafeModify(1, noTags)
      request.waitStart = performance.now()
    }
    return request
  }

  const leaveNow = (request: Request): void => {
    const held = table.held
    const pending = table.pending
    table.leave(request)
    if (table.held !== held) locksHeld.unsafeModify(table.held - held, noTags)
    if (table.pending !== pending) locksPending.unsafeModify(table.pending - pending, noTags)
  }

  const leave = (request: Request) => Effect.sync(() => leaveNow(request))

  // An immediate grant was measured at enqueue; a waited one when the waiter sees it.
  const granted = (request: Request, plan: Plan): Lock => {
    if (request.waitStart > 0) lockWaitSeconds.unsafeUpdate((performance.now() - request.waitStart) / 1000, noTags)
    return toLock(request, plan)
  }

  // Checks the state when run, not when built: a grant may land between the
  // enqueue and this point (another fiber released in between).
  const awaitGrant = (request: Request, plan: Plan): Effect.Effect<Lock> =>
    Effect.suspend(() =>
      request.state === "held" ?
        Effect.succeed(granted(request, plan)) :
        Effect.async<Lock>((resume) => {
          request.onGrant = (request) => resume(Effect.succeed(granted(request, plan)))
        }).pipe(
          Effect.withSpan("LockManager.wait", {
            attributes: { "lock.paths": plan.paths.join(","), "lock.mode": plan.mode },
            captureStackTrace: false
          })
        )
    )

  const scoped = (plan: Either.Either<Plan, InvalidPathError>): Effect.Effect<Lock, InvalidPathError, Scope.Scope> =>
    Either.isLeft(plan) ?
      Effect.fail(plan.left) :
      Effect.uninterruptibleMask((restore) =>
        Effect.acquireRelease(Effect.sync(() => enqueue(plan.right)), leave).pipe(
          // The scope may outlive an interrupted wait (a timeout inside a larger
          // scope): leave the queue now rather than when the scope closes. If the
          // grant raced the interrupt, this releases it. Only the wait itself is
          // interruptible, so no interrupt lands between the enqueue and here.
          Effect.flatMap((request) =>
            request.state === "held" && request.waitStart === 0 ?
              Effect.succeed(toLock(request, plan.right)) :
              Effect.onInterrupt(restore(awaitGrant(request, plan.right)), () => leave(request))
          )
        )
      )

  const bracket = (plan: Either.Either<Plan, InvalidPathError>) =>
  <A, E, R>(
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
  ): Effect.Effect<A, E | InvalidPathError, R> => {
    if (Either.isLeft(plan)) return Effect.fail(plan.left)
    // A plain effect does not need the Lock: do not build one.
    const plain = Effect.isEffect(effect)
    const use = plain ? () => effect : effect
    return Effect.uninterruptibleMask((restore) => {
      const request = enqueue(plan.right)
      const run = request.state === "held" ?
        // Suspended: a callback that throws must still find the release attached.
        (plain ? effect : Effect.suspend(() => use(toLock(request, plan.right)))) :
        Effect.flatMap(awaitGrant(request, plan.right), use)
      return Effect.ensuring(restore(run), leave(request))
    })
  }

  return {
    [TypeId]: TypeId,
    lock: (path, mode) => scoped(planOne("LockManager.lock", path, mode)),
    lockAll: (paths) => scoped(planAll("LockManager.lockAll", paths)),
    withLock: (path, mode) => bracket(planOne("LockManager.withLock", path, mode)),
    withLockAll: (paths) => bracket(planAll("LockManager.withLockAll", paths)),
    stats: Effect.sync(() => table.stats)
  }
}

/** @internal */
export const make: Effect.Effect<LockManagerService> = Effect.sync(unsafeMake)
