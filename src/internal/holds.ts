/**
 * Which locks a fiber holds, as the lock manager sees it: the locks it took
 * itself and those of the regions it was forked in, while they are held.
 *
 * Shape. A `FiberRef` holds a `Cell` per fiber; the cell points to the top of
 * a persistent list of holds (each node: a lock and the node below). A fiber
 * pushes and pops on its own cell without touching the FiberRef again, so a
 * lock taken and released costs one small allocation, not a copy of the
 * fiber's FiberRefs. Forking gives the child a new cell on the parent's
 * current list (a snapshot: what the parent takes later is not the child's),
 * or the shared empty cell when the parent holds nothing, so a fork costs
 * nothing unless the parent holds a lock. Joining keeps the parent's cell.
 *
 * A lock in the list may have been released since (a scope closed, a daemon
 * child outlived its parent's region): readers skip entries whose lock is no
 * longer live, and the list is compacted as it grows, so it stays as long as
 * the live holds plus a constant factor.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"

/**
 * A lock as the list knows it: whose it is (a lock manager) and whether it is
 * still held.
 *
 * @internal
 */
export interface Holding {
  readonly authority: object
  readonly live: boolean
}

class Hold {
  constructor(readonly lock: Holding, readonly below: Hold | undefined, readonly size: number) {}
}

/** @internal */
export class Cell {
  /** When the list reaches this size, it is compacted (and the bound doubled from what is left). */
  limit = 16
  constructor(
    /** The fiber that pushes on this cell; `undefined` until a forked child claims it. */
    public owner: unknown,
    public top: Hold | undefined
  ) {}
}

// Never pushed on: its owner is no fiber.
const EMPTY = new Cell(null, undefined)

/**
 * What a new fiber inherits from the cell in the FiberRefs it starts with:
 * what the cell holds now (a child forked in its owner's regions shares
 * them). Except for a fiber started outside any fiber (a `Runtime` run from a
 * callback: a timer, an I/O event) while the cell's owner still runs: the
 * runtime's FiberRefs were captured earlier, and what the cell holds now may
 * have been taken since, by a fiber that runs concurrently with the new one
 * and is not its parent. That fiber inherits nothing and queues like anyone.
 * Once the owner has ended, the cell is what it left behind (locks whose
 * scope outlived it, such as one taken while a runtime's layers were built),
 * and a runtime's fibers inherit it.
 */
const forkCell = (cell: Cell): Cell => {
  if (cell.top === undefined) return EMPTY
  const owner = cell.owner as Fiber.RuntimeFiber<unknown, unknown> | undefined
  if (owner !== undefined && Option.isNone(Fiber.getCurrentFiber()) && owner.unsafePoll() === null) return EMPTY
  return new Cell(undefined, cell.top)
}

/** @internal */
export const currentHolds: FiberRef.FiberRef<Cell> = FiberRef.unsafeMake(EMPTY, {
  fork: forkCell,
  join: (parent) => parent
})

/**
 * Runs `f` with the cell the current fiber pushes on. A fiber that neither
 * forked from a holder nor locked before gets one on first use (its only
 * FiberRef update).
 *
 * @internal
 */
export const withCell = <A, E, R>(f: (cell: Cell) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const cell = fiber.getFiberRef(currentHolds)
    if (cell.owner === fiber) return f(cell)
    if (cell.owner === undefined) {
      cell.owner = fiber
      return f(cell)
    }
    // The empty cell, or one shared without a fork (FiberRefs copied from a
    // runtime): an own cell on the same list.
    const own = new Cell(fiber, cell.top)
    return Effect.zipRight(FiberRef.set(currentHolds, own), Effect.suspend(() => f(own)))
  })

/**
 * The cell `fiber` pushes on, when it needs no FiberRef update to get one
 * (it has its own, or a forked child claims the one it inherited); otherwise
 * `undefined`, and `withCell` gives it one. Lets a caller that already has
 * the fiber skip the step `withCell` costs.
 *
 * @internal
 */
export const ownCell = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Cell | undefined => {
  const cell = fiber.getFiberRef(currentHolds)
  if (cell.owner === fiber) return cell
  if (cell.owner === undefined) {
    cell.owner = fiber
    return cell
  }
  return undefined
}

/**
 * Whether the fiber holds nothing live: the hot path of the lock manager
 * (drops released locks from the top of the list on the way).
 *
 * @internal
 */
export const holdsNothing = (cell: Cell): boolean => {
  let top = cell.top
  while (top !== undefined && !top.lock.live) top = top.below
  cell.top = top
  return top === undefined
}

/** @internal */
export const push = (cell: Cell, lock: Holding): void => {
  let top = cell.top
  while (top !== undefined && !top.lock.live) top = top.below
  if (top !== undefined && top.size >= cell.limit) {
    top = compact(top)
    cell.limit = Math.max(16, 2 * (top?.size ?? 0))
  }
  cell.top = new Hold(lock, top, (top?.size ?? 0) + 1)
}

/**
 * Pops `lock` if it is on top (a region that ends). Otherwise it stays until
 * it is skipped as released: scopes may close out of order.
 *
 * @internal
 */
export const pop = (cell: Cell, lock: Holding): void => {
  if (cell.top !== undefined && cell.top.lock === lock) cell.top = cell.top.below
}

/** The live locks of the list, rebuilt (other fibers may share the old nodes). */
const compact = (top: Hold): Hold | undefined => {
  const live: Array<Holding> = []
  for (let h: Hold | undefined = top; h !== undefined; h = h.below) if (h.lock.live) live.push(h.lock)
  let rebuilt: Hold | undefined
  for (let i = live.length - 1; i >= 0; i--) rebuilt = new Hold(live[i], rebuilt, (rebuilt?.size ?? 0) + 1)
  return rebuilt
}

/**
 * The live locks of `authority` the fiber holds, newest first (a lock is
 * pushed once, so each appears once).
 *
 * @internal
 */
export const liveOf = <A extends Holding>(cell: Cell, authority: object): Array<A> => {
  const out: Array<A> = []
  for (let h = cell.top; h !== undefined; h = h.below) {
    const lock = h.lock
    if (lock.authority === authority && lock.live) out.push(lock as A)
  }
  return out
}
