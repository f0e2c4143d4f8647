/**
 * The in-memory lock manager: the lock table (./lockTable.ts) driven by
 * fibers, with ownership (./holds.ts).
 *
 * Ownership. Every fiber carries the locks it holds, and those of the regions
 * it was forked in. A request those cover is granted at once without queueing
 * (re-entrancy); a request that must wait while its fiber holds locks is
 * checked for a cycle of waits and refused with a `DeadlockError` if it would
 * close one. A fiber that holds nothing pays one check of an empty list.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import type * as Api from "../LockManager.js"
import type { Lock, LockManagerService, LockMode, LockRequest } from "../LockManager.js"
import { DeadlockError, InvalidArgumentError, type InvalidPathError, LockLostError } from "../PersistenceError.js"
import { invalidPath } from "./errors.js"
import { withFiber } from "./fiber.js"
import * as Holds from "./holds.js"
import { type CycleStep, LockTable, type Request } from "./lockTable.js"
import { locksHeld, locksPending, lockWaitSeconds, noTags } from "./metrics.js"
import { normalize, parent, ROOT, topMost, topMostModes } from "./path.js"
import * as Span from "./span.js"

/** @internal */
export const TypeId: typeof Api.TypeId = Symbol.for("effect-persistence/LockManager") as typeof Api.TypeId

/**
 * A validated lock request. Shared with the remote manager, so that bad input
 * fails the same way there, before any network I/O.
 *
 * @internal
 */
export interface Plan {
  /** What the `Lock` reports: the strongest mode of the request. */
  readonly mode: LockMode
  /** What the lock table locks: top-most paths only. */
  readonly locked: ReadonlyArray<string>
  /** The mode of each of `locked` (one for all, or one each). */
  readonly modes: LockMode | ReadonlyArray<LockMode>
  /** What the caller sees on the `Lock`. */
  readonly paths: ReadonlyArray<string>
  /** The mode of each of `paths` when the combined request reads some of them. */
  readonly pathModes: ReadonlyArray<LockMode> | undefined
  /** A combined request (`lockAll`). */
  readonly all: boolean
}

/** @internal */
export type PlanError = InvalidPathError | InvalidArgumentError

const invalidMode = (operation: string, path: unknown, mode: unknown) =>
  new InvalidArgumentError({
    operation,
    path,
    argument: "mode",
    detail: `must be "read" or "write", got ${typeof mode === "string" ? JSON.stringify(mode) : typeof mode}`
  })

/** @internal */
export const planOne = (operation: string, path: string, mode: LockMode): Either.Either<Plan, PlanError> => {
  if (mode !== "write" && mode !== "read") return Either.left(invalidMode(operation, path, mode))
  const normal = normalize(path)
  if (Either.isLeft(normal)) return Either.left(invalidPath(operation, path, normal.left))
  // The root may be read (listed), never written: a write on it would
  // exclude every path there is.
  if (mode === "write" && normal.right === ROOT) return Either.left(invalidPath(operation, path, "Root"))
  const paths = [normal.right]
  return Either.right({ mode, locked: paths, modes: mode, paths, pathModes: undefined, all: false })
}

const isIterable = (u: unknown): u is Iterable<unknown> =>
  typeof u === "object" && u !== null && typeof (u as any)[Symbol.iterator] === "function"

/**
 * A combined request: paths (written) or `[path, mode]` pairs. O(n log n) in
 * the number of paths.
 *
 * @internal
 */
export const planAll = (
  operation: string,
  input: Iterable<string | LockRequest>
): Either.Either<Plan, PlanError> => {
  if (!isIterable(input)) {
    return Either.left(
      new InvalidArgumentError({ operation, path: input, argument: "paths", detail: "must be an iterable of paths" })
    )
  }
  // Normalised path -> mode (a write wins over a read of the same path), in
  // the order of first appearance.
  const seen = new Map<string, LockMode>()
  let reads = false
  // The caller's iterator may throw: bad input, not a defect.
  let items: Array<string | LockRequest>
  try {
    items = Array.from(input)
  } catch (error) {
    return Either.left(
      new InvalidArgumentError({
        operation,
        path: input,
        argument: "paths",
        detail: `iterating the paths failed: ${error instanceof Error ? error.message : String(error)}`
      })
    )
  }
  for (const item of items) {
    let path: unknown = item
    let mode: unknown = "write"
    if (Array.isArray(item)) {
      if (item.length !== 2) {
        return Either.left(
          new InvalidArgumentError({
            operation,
            path: item,
            argument: "paths",
            detail: "each element is a path or a [path, mode] pair"
          })
        )
      }
      path = item[0]
      mode = item[1]
      if (mode !== "write" && mode !== "read") return Either.left(invalidMode(operation, path, mode))
      if (mode === "read") reads = true
    }
    const normal = normalize(path)
    if (Either.isLeft(normal)) return Either.left(invalidPath(operation, path, normal.left))
    if (mode === "write" && normal.right === ROOT) return Either.left(invalidPath(operation, path, "Root"))
    if (seen.get(normal.right) !== "write") seen.set(normal.right, mode as LockMode)
  }
  if (seen.size === 0) return Either.left(invalidPath(operation, [], "EmptyPathSet"))
  const paths = Array.from(seen.keys())
  if (!reads) {
    return Either.right({
      mode: "write",
      locked: topMost(paths),
      modes: "write",
      paths,
      pathModes: undefined,
      all: true
    })
  }
  const pathModes = Array.from(seen.values())
  const top = topMostModes(paths, pathModes)
  // A write below a read of the root makes the root a write: refused as any root write.
  if (top.paths[0] === ROOT && top.modes[0] === "write") return Either.left(invalidPath(operation, ROOT, "Root"))
  return Either.right({
    mode: pathModes.includes("write") ? "write" : "read",
    locked: top.paths,
    modes: top.modes,
    paths,
    pathModes,
    all: true
  })
}

/** No locks: shared, never written. */
const NONE: ReadonlyArray<never> = []

// An in-memory lock cannot be lost: it lives as long as its holder.
const neverLost = (_operation: string) => Effect.void

const deadlock = (operation: string, plan: Plan, cycle: ReadonlyArray<CycleStep>) =>
  new DeadlockError({ operation, paths: plan.paths, reason: cycle.length === 2 ? "Upgrade" : "Cycle", cycle })

/** What a request of a fiber that holds locks amounts to. */
interface Nested {
  /** The part the table has to grant; absent when the fiber's locks cover the whole request. */
  readonly request: Request | undefined
  /** The fiber's locks that cover the rest: the grant ends no later than they do. */
  readonly covering: ReadonlyArray<Request>
}

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

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
  const account = (request: Request): Request => {
    if (request.state === "held") {
      locksHeld.unsafeModify(1, noTags)
      lockWaitSeconds.unsafeUpdate(0, noTags)
    } else {
      locksPending.unsafeModify(1, noTags)
      request.waitStart = performance.now()
    }
    return request
  }

  const enqueue = (plan: Plan): Request => account(table.enqueue(plan.modes, plan.locked))

  const leaveNow = (request: Request): void => {
    const held = table.held
    const pending = table.pending
    table.leave(request)
    if (table.held !== held) locksHeld.unsafeModify(table.held - held, noTags)
    if (table.pending !== pending) locksPending.unsafeModify(table.pending - pending, noTags)
    const released = request.own?.released
    if (released !== undefined) Deferred.unsafeDone(released as Deferred.Deferred<void>, Exit.void)
  }

  const leave = (request: Request) => Effect.sync(() => leaveNow(request))

  const leaveAndPop = (cell: Holds.Cell, request: Request) =>
    Effect.sync(() => {
      Holds.pop(cell, request)
      leaveNow(request)
    })

  /** Completes when the request has left the table. */
  const released = (request: Request): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (request.state === "gone") return Effect.void
      const own = request.ownership
      let signal = own.released as Deferred.Deferred<void> | undefined
      if (signal === undefined) own.released = signal = Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(signal)
    })

  /**
   * A lock granted (wholly or partly) through locks of the requester's region:
   * it ends when the first of them does, so `lost` and `ensureHeld` follow
   * them. A whole re-entrant grant carries the newest covering lock's id: it is
   * the same exclusive hold, so a fencing check must accept it as such.
   */
  const nestedLock = (plan: Plan, covering: ReadonlyArray<Request>, own: Request | undefined): Lock => {
    if (covering.length === 0) return toLock(own!, plan)
    const id = own?.id ?? Math.max(...covering.map((c) => c.id))
    return {
      id,
      mode: plan.mode,
      paths: plan.paths,
      lost: covering.length === 1 ? released(covering[0]) : Effect.raceAll(covering.map(released)),
      ensureHeld: (operation) =>
        Effect.suspend(() =>
          covering.every((c) => c.state === "held") ?
            Effect.void :
            Effect.fail(new LockLostError({ operation, paths: plan.paths, lockId: id }))
        )
    }
  }

  /** The strongest held lock at each path of the fiber's locks. */
  const heldPaths = (holds: ReadonlyArray<Request>) => {
    const byPath = new Map<string, { readonly request: Request; readonly mode: LockMode }>()
    for (const request of holds) {
      for (let i = 0; i < request.paths.length; i++) {
        const mode = request.modeAt(i)
        if (byPath.get(request.paths[i])?.mode !== "write") byPath.set(request.paths[i], { request, mode })
      }
    }
    return byPath
  }

  /** The held lock that covers `path` in `mode` (at the path or an ancestor, at least as strong). */
  const coverOf = (byPath: ReturnType<typeof heldPaths>, path: string, mode: LockMode): Request | undefined => {
    for (let p = path;; p = parent(p)) {
      const held = byPath.get(p)
      if (held !== undefined && (held.mode === "write" || mode === "read")) return held.request
      if (p === ROOT) return undefined
    }
  }

  /**
   * A request of a fiber that holds `holds` (synchronous: the holds are
   * checked in the same step as the enqueue). Covered paths are granted at
   * once; the rest is queued, and refused if its wait would close a cycle.
   */
  const acquireNested = (
    operation: string,
    plan: Plan,
    holds: ReadonlyArray<Request>
  ): Either.Either<Nested, DeadlockError> => {
    const byPath = heldPaths(holds)
    const covering = new Set<Request>()
    const restPaths: Array<string> = []
    const restModes: Array<LockMode> = []
    for (let i = 0; i < plan.locked.length; i++) {
      const path = plan.locked[i]
      const mode = typeof plan.modes === "string" ? plan.modes : plan.modes[i]
      const by = coverOf(byPath, path, mode)
      if (by !== undefined) covering.add(by)
      else {
        restPaths.push(path)
        restModes.push(mode)
      }
    }
    if (restPaths.length === 0) {
      lockWaitSeconds.unsafeUpdate(0, noTags)
      return Either.right({ request: undefined, covering: Array.from(covering) })
    }
    const request = account(table.enqueue(restModes, restPaths))
    const cycle = table.waitFor(request, holds)
    if (cycle !== undefined) {
      leaveNow(request)
      return Either.left(deadlock(operation, plan, cycle))
    }
    return Either.right({ request, covering: Array.from(covering) })
  }

  /** The Lock of a granted request; `covering` is set for a request of a fiber that holds locks. */
  const lockOf = (request: Request, plan: Plan, covering: ReadonlyArray<Request> | undefined): Lock =>
    covering === undefined ? toLock(request, plan) : nestedLock(plan, covering, request)

  // An immediate grant was measured at enqueue; a waited one when the waiter sees it.
  const granted = (request: Request, plan: Plan, covering: ReadonlyArray<Request> | undefined): Lock => {
    if (request.waitStart > 0) lockWaitSeconds.unsafeUpdate((performance.now() - request.waitStart) / 1000, noTags)
    return lockOf(request, plan, covering)
  }

  // Checks the state when run, not when built: a grant may land between the
  // enqueue and this point (another fiber released in between).
  const awaitGrant = (
    request: Request,
    plan: Plan,
    covering: ReadonlyArray<Request> | undefined
  ): Effect.Effect<Lock> =>
    Effect.suspend(() =>
      request.state === "held" ?
        Effect.succeed(granted(request, plan, covering)) :
        // Only a request that waits opens a span, ended by the grant itself.
        Span.wait<Lock>(
          "LockManager.wait",
          { "lock.paths": plan.paths.join(","), "lock.mode": plan.mode },
          (done) => {
            // The fiber may have yielded since the check above: a grant in
            // between found no callback.
            if (request.state === "held") done(granted(request, plan, covering))
            else request.onGrant = (request) => done(granted(request, plan, covering))
          }
        )
    )

  /**
   * The scoped lock of a request in the table. The scope owns the request
   * from the moment it exists, granted or not, so one finalizer covers
   * waiting and holding.
   */
  const holdScoped = (
    cell: Holds.Cell,
    acquire: Effect.Effect<Nested, DeadlockError>,
    plan: Plan,
    restore: Restore
  ): Effect.Effect<Lock, DeadlockError, Scope.Scope> =>
    Effect.acquireRelease(
      acquire,
      (nested) => nested.request === undefined ? Effect.void : leaveAndPop(cell, nested.request)
    ).pipe(
      // The scope may outlive an interrupted wait (a timeout inside a larger
      // scope): leave the queue now rather than when the scope closes. If the
      // grant raced the interrupt, this releases it. Only the wait itself is
      // interruptible, so no interrupt lands between the enqueue and here.
      Effect.flatMap(({ covering, request }) =>
        request === undefined ?
          Effect.succeed(nestedLock(plan, covering, undefined)) :
          request.state === "held" && request.waitStart === 0 ?
          Effect.succeed(lockOf(request, plan, covering === NONE ? undefined : covering)) :
          Effect.onInterrupt(
            restore(awaitGrant(request, plan, covering === NONE ? undefined : covering)),
            () => leave(request)
          )
      )
    )

  const scoped = (
    operation: string,
    plan: Either.Either<Plan, PlanError>
  ): Effect.Effect<Lock, PlanError | DeadlockError, Scope.Scope> =>
    Either.isLeft(plan) ?
      Effect.fail(plan.left) :
      Effect.uninterruptibleMask((restore) =>
        Holds.withCell((cell) =>
          holdScoped(
            cell,
            // Synchronous: the fiber's locks are read in the same step as the enqueue.
            Effect.suspend(() => {
              const p = plan.right
              const holds = Holds.holdsNothing(cell) ? NONE : Holds.liveOf<Request>(cell, table)
              const nested = holds.length === 0 ?
                Either.right<Nested>({ request: enqueue(p), covering: NONE }) :
                acquireNested(operation, p, holds)
              if (Either.isRight(nested) && nested.right.request !== undefined) Holds.push(cell, nested.right.request)
              return nested
            }),
            plan.right,
            restore
          )
        )
      )

  /** The body a granted waiter is resumed with (the wait measured as `granted` does). */
  function grantedBody<A, E, R>(
    request: Request,
    plan: Plan,
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>),
    covering: ReadonlyArray<Request> | undefined
  ): Effect.Effect<A, E, R> {
    if (Effect.isEffect(effect)) {
      // A plain effect does not need the Lock: none is built.
      lockWaitSeconds.unsafeUpdate((performance.now() - request.waitStart) / 1000, noTags)
      return effect
    }
    const lock = granted(request, plan, covering)
    return Effect.suspend(() => effect(lock))
  }

  /**
   * `withLock`'s region for a request in the table (a plain effect, or a
   * function of the Lock). Pushed on the fiber's holds for the region.
   *
   * Run-loop steps are most of an uncontended lock's cost, so the region has
   * as few as an interruption-safe bracket can: the caller's mask is the only
   * uninterruptible region, the release is the one handler frame of
   * `matchCauseEffect` (no `Effect.exit` + `flatMap` pair), and a waiter that
   * is not traced parks in one `Effect.async` that the grant resumes with the
   * body itself (no continuation between the wake-up and the body).
   */
  const holdRegion = <A, E, R>(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    cell: Holds.Cell,
    request: Request,
    plan: Plan,
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>),
    covering: ReadonlyArray<Request> | undefined,
    restore: Restore
  ): Effect.Effect<A, E, R> => {
    Holds.push(cell, request)
    let body: Effect.Effect<A, E, R>
    if (request.state === "held") {
      // A plain effect does not need the Lock: none is built. A callback is
      // suspended: one that throws must still find the release attached.
      body = Effect.isEffect(effect) ? effect : Effect.suspend(() => effect(lockOf(request, plan, covering)))
    } else if (Span.tracesWait(fiber)) {
      body = Effect.flatMap(
        awaitGrant(request, plan, covering),
        (lock) => Effect.isEffect(effect) ? effect : effect(lock)
      )
    } else {
      body = Effect.async<A, E, R>((resume) => {
        // The fiber may have yielded since the enqueue: a grant in between
        // found no callback.
        if (request.state === "held") resume(grantedBody(request, plan, effect, covering))
        else request.onGrant = (request) => resume(grantedBody(request, plan, effect, covering))
      })
    }
    // Already uninterruptible: the release needs no region of its own, as
    // `Effect.ensuring` would make.
    return Effect.matchCauseEffect(restore(body), {
      onFailure: (cause) => {
        Holds.pop(cell, request)
        leaveNow(request)
        return Effect.failCause(cause)
      },
      onSuccess: (value) => {
        Holds.pop(cell, request)
        leaveNow(request)
        // A region that returns nothing (most do) allocates no result.
        return value === undefined ? Effect.void as Effect.Effect<A> : Effect.succeed(value)
      }
    })
  }

  /** The region of a fiber whose cell is `cell`; runs in the caller's mask, in one step with the enqueue. */
  const region = <A, E, R>(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    cell: Holds.Cell,
    operation: string,
    p: Plan,
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>),
    restore: Restore
  ): Effect.Effect<A, E | DeadlockError, R> => {
    if (Holds.holdsNothing(cell)) return holdRegion(fiber, cell, enqueue(p), p, effect, undefined, restore)
    const holds = Holds.liveOf<Request>(cell, table)
    if (holds.length === 0) return holdRegion(fiber, cell, enqueue(p), p, effect, undefined, restore)
    const nested = acquireNested(operation, p, holds)
    if (Either.isLeft(nested)) return Effect.fail(nested.left)
    const { covering, request } = nested.right
    if (request !== undefined) return holdRegion(fiber, cell, request, p, effect, covering, restore)
    // Wholly re-entrant: nothing to release.
    return restore(
      Effect.suspend(() => Effect.isEffect(effect) ? effect : effect(nestedLock(p, covering, undefined)))
    )
  }

  const bracket = (operation: string, plan: Either.Either<Plan, PlanError>) =>
  <A, E, R>(
    effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
  ): Effect.Effect<A, E | PlanError | DeadlockError, R> =>
    Either.isLeft(plan) ?
      Effect.fail(plan.left) :
      Effect.uninterruptibleMask((restore) =>
        // The mask's callback runs in the fiber's own step: the fiber is read at once.
        withFiber((fiber): Effect.Effect<A, E | DeadlockError, R> => {
          const cell = Holds.ownCell(fiber)
          return cell !== undefined ?
            region(fiber, cell, operation, plan.right, effect, restore) :
            Holds.withCell((cell) => region(fiber, cell, operation, plan.right, effect, restore))
        })
      )

  return {
    [TypeId]: TypeId,
    lock: (path, mode) => scoped("LockManager.lock", planOne("LockManager.lock", path, mode)),
    lockAll: (paths) => scoped("LockManager.lockAll", planAll("LockManager.lockAll", paths)),
    withLock: (path, mode) => bracket("LockManager.withLock", planOne("LockManager.withLock", path, mode)),
    withLockAll: (paths) => bracket("LockManager.withLockAll", planAll("LockManager.withLockAll", paths)),
    stats: Effect.sync(() => table.stats)
  }
}

/** @internal */
export const make: Effect.Effect<LockManagerService> = Effect.sync(unsafeMake)
