/**
 * The reference model of the locking rules and the random step generators
 * shared by the model tests (the lock table, the in-memory service and the
 * remote service run the same sequences).
 *
 * Written from the README ("The locking model", "Re-entrancy and deadlocks")
 * without the implementation, and on purpose differently from it: paths are
 * compared as arrays of segments (the implementation compares strings), the
 * normalisation is its own, and every rule is a scan over all live requests
 * (the implementation walks a trie). A mistake shared by both sides would have
 * to be made twice, in two different ways.
 */

export type Mode = "read" | "write"

/** POSIX-style lexical normalisation: `.` dropped, `..` climbs (not above the root), separators collapse. */
export const modelNormalize = (path: string): string =>
  "/" + path.split("/").reduce<ReadonlyArray<string>>(
    (kept, segment) =>
      segment === "" || segment === "." ? kept : segment === ".." ? kept.slice(0, -1) : [...kept, segment],
    []
  ).join("/")

const segmentsOf = (normal: string): Array<string> => normal.split("/").filter((s) => s !== "")

const prefix = (x: ReadonlyArray<string>, y: ReadonlyArray<string>): boolean =>
  x.length <= y.length && x.every((segment, i) => segment === y[i])

export interface Item {
  readonly path: string
  mode: Mode
  /** The segments of `path`, computed once. */
  readonly segments: ReadonlyArray<string>
}

/** `a` is `b` or an ancestor of it: `a`'s segments begin `b`'s. */
const itemWithin = (a: Item, b: Item): boolean => prefix(a.segments, b.segments)
const overlap = (a: Item, b: Item): boolean => itemWithin(a, b) || itemWithin(b, a)

export interface ModelRequest {
  readonly seq: number
  /** The mode of every path, unless `modes` gives one per path. */
  readonly mode: Mode
  /** As the caller spells them. */
  readonly paths: ReadonlyArray<string>
  readonly modes?: ReadonlyArray<Mode>
  /** The fiber (region) that makes it; without one, a fiber of its own. */
  readonly owner?: number
}

/**
 * What a request locks, by the README: normalised paths, a duplicate once (a
 * write wins), a path below another of the set covered by it, where a write
 * below a read makes the read a write.
 */
export const effectiveItems = (request: ModelRequest): Array<Item> => {
  const byPath = new Map<string, Mode>()
  request.paths.forEach((path, i) => {
    const normal = modelNormalize(path)
    if (byPath.get(normal) !== "write") byPath.set(normal, request.modes?.[i] ?? request.mode)
  })
  const byDepth: Array<Item> = Array.from(byPath, ([path, mode]) => ({ path, mode, segments: segmentsOf(path) }))
    .sort((a, b) => a.segments.length - b.segments.length)
  const kept: Array<Item> = []
  for (const item of byDepth) {
    const above = kept.find((k) => itemWithin(k, item))
    if (above === undefined) kept.push(item)
    else if (item.mode === "write") above.mode = "write"
  }
  return kept
}

/** Two sets of items conflict when a pair of them overlaps and one of the pair is a write. */
const conflicts = (a: ReadonlyArray<Item>, b: ReadonlyArray<Item>) =>
  a.some((x) => b.some((y) => (x.mode === "write" || y.mode === "write") && overlap(x, y)))

/** A request in the queue: what it locks after re-entrancy took what its owner's locks cover. */
export interface Live {
  readonly seq: number
  readonly owner: number
  readonly items: ReadonlyArray<Item>
}

/**
 * What became of an arriving request:
 * - `reentrant`: its owner's locks cover all of it (granted at once, nothing queued);
 * - `queued`: the rest is in the queue (granted or waiting: see `held`);
 * - `refused`: waiting would close a cycle; nothing was queued.
 * `covering` lists the owner's requests that cover some of its paths.
 */
export type Outcome =
  | { readonly kind: "reentrant"; readonly covering: ReadonlyArray<number> }
  | { readonly kind: "queued"; readonly covering: ReadonlyArray<number>; readonly items: ReadonlyArray<Item> }
  | { readonly kind: "refused"; readonly items: ReadonlyArray<Item> }

export class Model {
  /** Queued requests, held or waiting, in arrival order. */
  live: Array<Live> = []
  held = new Set<number>()

  ownerOf(request: ModelRequest): number {
    return request.owner ?? -request.seq
  }

  holdsOf(owner: number): Array<Live> {
    return this.live.filter((l) => l.owner === owner && this.held.has(l.seq))
  }

  waiting(owner: number): boolean {
    return this.live.some((l) => l.owner === owner && !this.held.has(l.seq))
  }

  arrive(request: ModelRequest): Outcome {
    const owner = this.ownerOf(request)
    const holds = this.holdsOf(owner)
    const covering = new Set<number>()
    const rest = effectiveItems(request).filter((item) => {
      const by = holds.filter((h) =>
        h.items.some((held) => itemWithin(held, item) && (held.mode === "write" || item.mode === "read"))
      )
      by.forEach((h) => covering.add(h.seq))
      return by.length === 0
    })
    if (rest.length === 0) return { kind: "reentrant", covering: Array.from(covering) }
    const live: Live = { seq: request.seq, owner, items: rest }
    this.live.push(live)
    this.settle()
    if (!this.held.has(live.seq) && holds.length > 0 && this.reaches(live, holds)) {
      this.live = this.live.filter((l) => l !== live)
      this.settle()
      return { kind: "refused", items: rest }
    }
    return { kind: "queued", covering: Array.from(covering), items: rest }
  }

  leave(seq: number) {
    this.live = this.live.filter((r) => r.seq !== seq)
    this.held.delete(seq)
    this.settle()
  }

  /** An owner interrupted: everything it has in the queue leaves. */
  leaveOwner(owner: number) {
    for (const l of this.live.filter((l) => l.owner === owner)) this.held.delete(l.seq)
    this.live = this.live.filter((l) => l.owner !== owner)
    this.settle()
  }

  /** What `r` waits for: conflicting requests that are held, or waiting and earlier. */
  private blockers(r: Live): Array<Live> {
    return this.live.filter((o) => o !== r && conflicts(o.items, r.items) && (this.held.has(o.seq) || o.seq < r.seq))
  }

  /**
   * The deadlock rule: does `start` wait, directly or through others, for one
   * of `targets` (its owner's held requests)? A waiting request waits for its
   * blockers; a held one for the waiting requests of its owner.
   */
  private reaches(start: Live, targets: ReadonlyArray<Live>): boolean {
    const seen = new Set<Live>([start])
    const todo: Array<Live> = [start]
    while (todo.length > 0) {
      const r = todo.pop()!
      for (const b of this.blockers(r)) {
        if (targets.includes(b)) return true
        if (seen.has(b)) continue
        seen.add(b)
        if (!this.held.has(b.seq)) todo.push(b)
        else {
          for (const w of this.live) {
            if (w.owner === b.owner && !this.held.has(w.seq) && !seen.has(w)) {
              seen.add(w)
              todo.push(w)
            }
          }
        }
      }
    }
    return false
  }

  /**
   * The fairness rule: a waiting request is granted when no held request and
   * no earlier waiting request conflicts with it. Applied until nothing changes.
   */
  private settle() {
    let changed = true
    while (changed) {
      changed = false
      for (const r of this.live) {
        if (this.held.has(r.seq)) continue
        if (this.blockers(r).length === 0) {
          this.held.add(r.seq)
          changed = true
        }
      }
    }
  }
}

/** Paths with nesting, a shared prefix that is not nesting (/a, /ab) and repeated names at different depths. */
export const UNIVERSE = ["/a", "/a/b", "/a/b/c", "/a/x", "/a/x/a", "/b", "/b/a", "/x", "/x/a", "/ab"]

/** Another spelling of the same path (the implementation must normalise as the model does). */
const respell = (rand: () => number, path: string): string => {
  const roll = rand()
  if (roll < 0.6) return path
  if (roll < 0.7) return path + "/"
  if (roll < 0.8) return path.replace(/\//g, "//")
  if (roll < 0.9) return `/x/..${path}`
  return path.replace(/^\//, "/./")
}

export const randomRequest = (rand: () => number, seq: number): ModelRequest => {
  const pick = () => UNIVERSE[Math.floor(rand() * UNIVERSE.length)]
  const roll = rand()
  // The root can only be read-locked.
  if (roll < 0.05) return { seq, mode: "read", paths: ["/"] }
  if (roll < 0.45) return { seq, mode: "read", paths: [pick()] }
  if (roll < 0.85) return { seq, mode: "write", paths: [pick()] }
  const n = 2 + Math.floor(rand() * 3)
  return { seq, mode: "write", paths: Array.from({ length: n }, pick) }
}

export type Step = { kind: "acquire"; request: ModelRequest } | { kind: "release"; seq: number } | {
  kind: "interrupt"
  seq: number
}

/** Steps without owners: every request is a fiber of its own (as over the lock server). */
export const nextStep = (rand: () => number, model: Model, seq: number): Step => {
  const roll = rand()
  const held = model.live.filter((r) => model.held.has(r.seq))
  const pending = model.live.filter((r) => !model.held.has(r.seq))
  if (roll < 0.25 && held.length > 0) return { kind: "release", seq: held[Math.floor(rand() * held.length)].seq }
  if (roll < 0.35 && pending.length > 0) {
    return { kind: "interrupt", seq: pending[Math.floor(rand() * pending.length)].seq }
  }
  if (model.live.length > 24) {
    const any = model.live[Math.floor(rand() * model.live.length)]
    return model.held.has(any.seq) ? { kind: "release", seq: any.seq } : { kind: "interrupt", seq: any.seq }
  }
  return { kind: "acquire", request: randomRequest(rand, seq) }
}

/** A request of an owner: single paths (any spelling), combined writes, and combined requests with modes. */
export const randomOwnedRequest = (rand: () => number, seq: number, owner: number): ModelRequest => {
  const pick = () => respell(rand, UNIVERSE[Math.floor(rand() * UNIVERSE.length)])
  const mode = (): Mode => rand() < 0.5 ? "read" : "write"
  const roll = rand()
  if (roll < 0.05) return { seq, owner, mode: "read", paths: ["/"] }
  if (roll < 0.75) return { seq, owner, mode: mode(), paths: [pick()] }
  const n = 2 + Math.floor(rand() * 3)
  const paths = Array.from({ length: n }, pick)
  if (roll < 0.85) return { seq, owner, mode: "write", paths }
  return { seq, owner, mode: "write", paths, modes: paths.map(mode) }
}

/**
 * Steps with owners (fibers): an owner that waits does nothing until it is
 * granted or interrupted; the others acquire more (re-entrant, queued or
 * refused) or release what they hold, in any order.
 */
export type OwnedStep =
  | { readonly kind: "acquire"; readonly request: ModelRequest }
  | { readonly kind: "release"; readonly seq: number; readonly owner: number }
  | { readonly kind: "interrupt"; readonly owner: number }

/** What the owners hold outside the queue (re-entrant grants) and the owners in play. */
export class Owners {
  active: Array<number>
  next: number
  /** Re-entrant grants not yet released: seq -> owner. */
  reentrant = new Map<number, number>()
  constructor(readonly count: number) {
    this.active = Array.from({ length: count }, (_, i) => i + 1)
    this.next = count + 1
  }
  retire(owner: number): number {
    const fresh = this.next++
    this.active = this.active.map((o) => o === owner ? fresh : o)
    for (const [seq, o] of this.reentrant) if (o === owner) this.reentrant.delete(seq)
    return fresh
  }
}

export const nextOwnedStep = (rand: () => number, model: Model, owners: Owners, seq: number): OwnedStep => {
  const free = owners.active.filter((o) => !model.waiting(o))
  const waiting = owners.active.filter((o) => model.waiting(o))
  const releasable = [
    ...model.live.filter((l) => model.held.has(l.seq) && free.includes(l.owner)).map((l) => [l.seq, l.owner]),
    ...Array.from(owners.reentrant).filter(([, o]) => free.includes(o))
  ]
  const roll = rand()
  if ((roll < 0.3 || free.length === 0 || model.live.length > 24) && releasable.length > 0) {
    const [s, owner] = releasable[Math.floor(rand() * releasable.length)]
    return { kind: "release", seq: s, owner }
  }
  if ((roll < 0.4 || free.length === 0) && waiting.length > 0) {
    return { kind: "interrupt", owner: waiting[Math.floor(rand() * waiting.length)] }
  }
  const owner = free[Math.floor(rand() * free.length)]
  return { kind: "acquire", request: randomOwnedRequest(rand, seq, owner) }
}
