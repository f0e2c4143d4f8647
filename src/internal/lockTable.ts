/**
 * The lock table: a synchronous, Effect-free implementation of the fairness
 * rule (a pending request is granted once no granted request and no earlier
 * pending request conflicts with it).
 *
 * Model. Every request gets an arrival number (`seq`). A request is granted
 * as soon as no *earlier* live request (held or pending) conflicts with it.
 * This is the fairness rule restated: a held request that conflicts with a pending
 * one always arrived before it (it could not have been granted past it), so
 * "no conflicting held request and no earlier conflicting pending request" is
 * "no earlier conflicting live request".
 *
 * Index. Paths live in a trie of nodes. A request has one entry per path (the
 * paths of one request never overlap: see `topMost`). Each node keeps
 * - counters of held entries at the node and in its subtree (by mode);
 * - its pending entries in arrival order (`pendingHere`, `pendingHereW`);
 * - the pending entries of its whole subtree in arrival order (`subPending`,
 *   `subPendingW`): an entry sits in the list of each ancestor-or-self, so the
 *   earliest pending request below any node is a list head, O(1).
 * With these, "is this entry blocked?" costs O(depth): walk the ancestors for
 * the earliest conflicting entry at each, and read the subtree heads.
 *
 * Waking. When a request leaves (released or cancelled), only requests on the
 * ancestor line or in the subtree of its paths can be unblocked, and only those
 * that arrived after it and conflict with it (any request if it was a write;
 * writes if it was a read). At each node only the first pending entries are
 * candidates (if the first is blocked, all later ones at that node are too:
 * they conflict with whatever blocks it or with it). The subtree is searched
 * through children kept in order of their latest pending arrival (all
 * arrivals, and writes alone): from the newest, down to the first child whose
 * latest arrival of the kind that matters precedes the leaver, and only where
 * the blocking bound inherited from above lets something through. Granting
 * and releasing therefore cost O(depth + requests examined), and the children
 * visited below a leaver are those where a request it conflicts with arrived
 * after it (one that has since left can cost a visit).
 *
 * Modes. Each entry has its own mode: a combined request may read some paths
 * and write others (`copy` reads its source and writes its target as one
 * request). The conflict rule applies entry by entry.
 *
 * Owners and cycles. The table knows nothing of fibers. The service tells it,
 * for a request that must wait, which held requests its owner holds
 * (`waitFor`): the owner waits, so those will not be released before this one
 * is granted. A held request with such waiters is linked in per-node lists
 * (`heldWaitedHere`, `subHeldWaited`), and `waitFor` searches the waits-for
 * graph from the new request: a pending request waits for every earlier
 * conflicting live request; a held request waits for the pending requests of
 * its owner. Reaching one of the new request's own holds is a cycle: it would
 * never be granted. Only a request whose owner holds something can close a
 * cycle (nothing else can wait for a request that just arrived), so a request
 * that does not wait, or whose owner holds nothing, never searches, and a
 * search visits each request at most once.
 *
 * Nodes are created on demand and pruned as soon as nothing is held or
 * pending in their subtree, so an idle table holds no memory. A request that
 * arrives at an empty table is granted without entering the index, and enters
 * it only when another request arrives while it is held: locks taken one after
 * another (one fiber, or fibers that never overlap) touch no node.
 *
 * @internal
 */
import type { LockMode } from "../LockManager.js"
import { segments } from "./path.js"

/** @internal */
export type State = "pending" | "held" | "gone"

class Link<A> {
  prev: Link<A> | undefined = undefined
  next: Link<A> | undefined = undefined
  constructor(readonly value: A) {}
}

class List<A> {
  head: Link<A> | undefined = undefined
  tail: Link<A> | undefined = undefined
  push(link: Link<A>): void {
    link.prev = this.tail
    if (this.tail === undefined) this.head = link
    else this.tail.next = link
    this.tail = link
  }
  remove(link: Link<A>): void {
    if (link.prev === undefined) this.head = link.next
    else link.prev.next = link.next
    if (link.next === undefined) this.tail = link.prev
    else link.next.prev = link.prev
    link.prev = link.next = undefined
  }
}

// Read-only by convention: a list is replaced by a fresh one before the first push.
const EMPTY = new List<never>() as List<any>

class Node {
  /**
   * The first child is kept in a field, the others in a map made for the
   * second: most nodes of a path have one child, and a node is made and
   * pruned per request on an uncontended path, where a map per level and its
   * shrinking on delete were a fifth of the allocation.
   */
  only: Node | undefined = undefined
  children: Map<string, Node> | undefined = undefined
  /**
   * Children whose subtree has pending entries, in the order of the latest
   * arrival in each (a child moves to the tail when a request below it
   * arrives); `pendingWriteChildren` the same for pending writes. A release
   * walks them from the tail and stops at the first child whose latest
   * arrival precedes the leaver: nothing there can have been blocked by it.
   */
  pendingChildren: List<Node> = EMPTY
  pendingWriteChildren: List<Node> = EMPTY
  /** This node's links in its parent's two lists, while it is in them. */
  asPendingChild: Link<Node> | undefined = undefined
  asPendingWriteChild: Link<Node> | undefined = undefined
  /** The latest arrival (seq) of a pending entry in this subtree, and of a pending write. */
  lastArrival = 0
  lastWriteArrival = 0
  heldReads = 0
  heldWrites = 0
  subHeld = 0
  subHeldWrites = 0
  /** Set once pruned from the index. */
  detached = false
  /** The path under which the table's path cache finds this node, once an entry was made for it. */
  cachedAs: string | undefined = undefined
  // Queues exist only under contention: an uncontended node shares the empty
  // list (never written to), so it costs one object, not five.
  pendingHere: List<Entry> = EMPTY
  pendingHereW: List<Entry> = EMPTY
  subPending: List<Entry> = EMPTY
  subPendingW: List<Entry> = EMPTY
  /** Held entries whose owner waits (see `waitFor`): here, and in the subtree. */
  heldWaitedHere: List<Entry> = EMPTY
  subHeldWaited: List<Entry> = EMPTY
  /** Segments from the root to this node. */
  readonly depth: number
  constructor(readonly parent: Node | undefined, readonly segment: string) {
    this.depth = parent === undefined ? 0 : parent.depth + 1
  }

  get isIdle(): boolean {
    return this.subHeld === 0 && this.subPending.head === undefined
  }
}

class Entry {
  /** Links in `subPending` (and `subPendingW`) of the node and each ancestor, root first. */
  sub: Array<Link<Entry>> | undefined = undefined
  subW: Array<Link<Entry>> | undefined = undefined
  here: Link<Entry> | undefined = undefined
  hereW: Link<Entry> | undefined = undefined
  /** Links in `subHeldWaited` of the node and each ancestor, root first, then in `heldWaitedHere`. */
  waited: Array<Link<Entry>> | undefined = undefined
  constructor(
    readonly request: Request,
    readonly node: Node,
    readonly depth: number,
    readonly path: string,
    readonly mode: LockMode
  ) {}
}

// Never pushed to: a request gets its own array when it enters the index.
const NO_ENTRIES: Array<never> = []

/**
 * What only requests of fibers that hold locks need: kept apart so that a
 * plain request stays small.
 *
 * @internal
 */
export class Ownership {
  /** While pending: the held requests of its owner, which wait for it (`waitFor`). */
  holds: ReadonlyArray<Request> | undefined = undefined
  /** While held: the pending requests whose owner holds it. */
  waiters: Set<Request> | undefined = undefined
  /** Owned by the service: completed when the request leaves (re-entrant grants watch it). */
  released: unknown = undefined
  // Scratch of the cycle search (`waitFor`): valid when `mark` is the current search.
  mark = 0
  target = 0
  /** The entry of the request the search came from, and this request's entry that blocks it. */
  via: Entry | undefined = undefined
  viaBlocker: Entry | undefined = undefined
  /** Reached as a waiter of this held request. */
  viaHeld: Request | undefined = undefined
}

/**
 * One lock request: one or more non-overlapping paths, each read or written.
 *
 * @internal
 */
export class Request {
  state: State = "pending"
  /** The grant number, assigned when granted: strictly increasing per table. */
  id = 0
  /** Called once, synchronously, when a pending request is granted. */
  onGrant: ((request: Request) => void) | undefined = undefined
  /** When the request started waiting (set and read by the service, for metrics). */
  waitStart = 0
  /** Shared and empty until the request enters the index: a request granted at an empty table never does. */
  entries: Array<Entry> = NO_ENTRIES
  /**
   * The entries before this index are clear of earlier conflicting requests.
   * A clear entry stays clear until the grant (later arrivals that conflict
   * with it wait for it), so a combined request checks each entry once
   * overall, not once per wake-up.
   */
  cursor = 0
  /** Created when ownership first concerns this request. */
  own: Ownership | undefined = undefined
  constructor(
    /** The table: locks of other tables never cover or wait for this one. */
    readonly authority: LockTable,
    readonly seq: number,
    /** The strongest mode of its entries. */
    readonly mode: LockMode,
    readonly paths: ReadonlyArray<string>,
    /** One mode for all paths, or one each. */
    readonly modes: LockMode | ReadonlyArray<LockMode>
  ) {}

  /** Held, and not yet released. */
  get live(): boolean {
    return this.state === "held"
  }

  get ownership(): Ownership {
    return this.own ??= new Ownership()
  }

  /** The mode of each path, in the order of `paths`. */
  modeAt(i: number): LockMode {
    return typeof this.modes === "string" ? this.modes : this.modes[i]
  }
}

/**
 * One step of a cycle of waits: a lock (a path and mode of a request) and
 * whether that request is held or waiting.
 *
 * @internal
 */
export interface CycleStep {
  readonly path: string
  readonly mode: LockMode
  readonly held: boolean
}

/** Moves `node` to the tail of its parent's list (`which`), linking it first if needed. */
const touch = (node: Node, which: "pendingChildren" | "pendingWriteChildren"): void => {
  const parent = node.parent
  if (parent === undefined) return
  if (parent[which] === EMPTY) parent[which] = new List()
  const key = which === "pendingChildren" ? "asPendingChild" : "asPendingWriteChild"
  const link = node[key]
  if (link === undefined) {
    node[key] = new Link(node)
  } else if (link.next === undefined) {
    return // already the tail
  } else {
    parent[which].remove(link)
  }
  parent[which].push(node[key]!)
}

/** Takes `node` out of its parent's list (`which`), if it is in it. */
const untouch = (node: Node, which: "pendingChildren" | "pendingWriteChildren"): void => {
  const key = which === "pendingChildren" ? "asPendingChild" : "asPendingWriteChild"
  const link = node[key]
  if (link === undefined || node.parent === undefined) return
  node.parent[which].remove(link)
  node[key] = undefined
}

const NONE = Number.POSITIVE_INFINITY
const HELD = Number.NEGATIVE_INFINITY

/** Whether something a leaver conflicts with (any request for a write, writes for a read) arrived below `child` after it. */
const arrivedAfter = (child: Node, leftSeq: number, leftWrite: boolean): boolean =>
  (leftWrite ? child.lastArrival : child.lastWriteArrival) > leftSeq

/**
 * Earliest live entry at a node that blocks a descendant request: a held
 * entry always counts as earlier (a conflicting holder arrived first).
 */
const earliestAt = (node: Node): number =>
  node.heldReads + node.heldWrites > 0 ? HELD : node.pendingHere.head?.value.request.seq ?? NONE

const earliestWriteAt = (node: Node): number =>
  node.heldWrites > 0 ? HELD : node.pendingHereW.head?.value.request.seq ?? NONE

/**
 * Whether an entry is free of conflicts with earlier live entries in its own
 * subtree (including its node), given bounds from the strict ancestors.
 */
const clearAt = (entry: Entry, aboveAll: number, aboveWrite: number): boolean => {
  const node = entry.node
  const seq = entry.request.seq
  if (entry.mode === "write") {
    return aboveAll > seq && node.subHeld === 0 && node.subPending.head?.value === entry
  }
  return aboveWrite > seq && node.subHeldWrites === 0 && (node.subPendingW.head?.value.request.seq ?? NONE) > seq
}

/** @internal */
export interface Stats {
  readonly held: number
  readonly pending: number
  readonly nodes: number
}

/** @internal */
export class LockTable {
  private root: Node | undefined = undefined
  /** A held request that is not in the index yet (see `enqueue`). */
  private solo: Request | undefined = undefined
  private seq = 0
  private grants = 0
  private heldCount = 0
  private pendingCount = 0
  private nodeCount = 0
  private searches = 0
  private readonly scratch: Array<Node | undefined> = []
  /**
   * The node of each path an entry was made for, while the node is in the
   * index: a lock on a path that is already indexed (the common case under
   * contention) finds its node without splitting the path or walking the
   * trie (the split was 5% of the contended case's time).
   */
  private readonly byPath = new Map<string, Node>()

  get stats(): Stats {
    // Counted as if indexed, as it would be with anything else live.
    if (this.solo !== undefined) this.index(this.solo)
    return { held: this.heldCount, pending: this.pendingCount, nodes: this.nodeCount }
  }

  get held(): number {
    return this.heldCount
  }

  get pending(): number {
    return this.pendingCount
  }

  /**
   * Registers a request for normal, non-overlapping paths (see `topMost`),
   * each with its mode (one mode for all, or one per path), and grants it at
   * once when nothing live conflicts. Never waits.
   */
  enqueue(modes: LockMode | ReadonlyArray<LockMode>, paths: ReadonlyArray<string>): Request {
    let mode: LockMode = "read"
    if (typeof modes === "string") mode = modes
    else if (modes.includes("write")) mode = "write"
    const request = new Request(this, ++this.seq, mode, paths, modes)
    if (this.heldCount === 0 && this.pendingCount === 0) {
      // Nothing is live, so nothing conflicts and the index is empty: the
      // request is granted without entering it, and enters it only if
      // another request arrives while it is held. A sequence of requests that
      // never overlap in time (one fiber locking one path after another)
      // builds and prunes no node at all.
      this.solo = request
      request.state = "held"
      request.id = ++this.grants
      this.heldCount++
      return request
    }
    if (this.solo !== undefined) this.index(this.solo)
    let free = true
    request.entries = []
    for (let i = 0; i < paths.length; i++) {
      const entry = this.entryFor(request, paths[i], typeof modes === "string" ? modes : modes[i])
      request.entries.push(entry)
      if (free && !this.freeOnArrival(entry)) free = false
    }
    if (free) {
      this.hold(request)
    } else {
      this.pendingCount++
      for (const entry of request.entries) this.linkPending(entry)
    }
    return request
  }

  /**
   * Removes a request whatever its state: a held request is released, a
   * pending one is withdrawn as if it had never arrived. Requests it was
   * blocking are granted at once where nothing else blocks them. Idempotent.
   */
  leave(request: Request): void {
    const state = request.state
    if (state === "gone") return
    request.state = "gone"
    request.onGrant = undefined
    if (request === this.solo) {
      // Never indexed: nothing waited for it (a request that arrives indexes it first).
      this.solo = undefined
      this.heldCount--
      return
    }
    const own = request.own
    if (state === "held") {
      this.heldCount--
      if (own?.waiters !== undefined) this.unwatch(request)
      for (const entry of request.entries) this.unhold(entry)
    } else {
      this.pendingCount--
      if (own?.holds !== undefined) this.unwait(request)
      for (const entry of request.entries) this.unlinkPending(entry)
    }
    if (this.pendingCount > 0) {
      for (const entry of request.entries) this.wake(entry.node, request.seq, entry.mode === "write")
    }
    for (const entry of request.entries) this.prune(entry.node)
  }

  /**
   * Records that the owner of a pending request holds `holds` (held requests
   * of this table): it waits, so they stay held until this request is granted
   * or leaves. Returns the cycle of waits this closes, if any (from the
   * request to one of its owner's holds); the caller then withdraws it.
   * Costs O(holds) plus, when the owner holds something, a search that visits
   * each request reachable through waits at most once.
   */
  waitFor(request: Request, holds: ReadonlyArray<Request>): ReadonlyArray<CycleStep> | undefined {
    if (request.state !== "pending" || holds.length === 0) return undefined
    request.ownership.holds = holds
    for (const held of holds) {
      const own = held.ownership
      if (own.waiters === undefined) own.waiters = new Set()
      if (own.waiters.size === 0) this.watch(held)
      own.waiters.add(request)
    }
    return this.cycleFrom(request)
  }

  private entryFor(request: Request, path: string, mode: LockMode): Entry {
    const cached = this.byPath.get(path)
    if (cached !== undefined) return new Entry(request, cached, cached.depth, path, mode)
    if (this.root === undefined) {
      this.root = new Node(undefined, "")
      this.nodeCount++
    }
    let node = this.root
    const parts = segments(path)
    for (let i = 0; i < parts.length; i++) {
      const segment = parts[i]
      let child = node.only
      if (child === undefined) {
        child = node.only = new Node(node, segment)
        this.nodeCount++
      } else if (child.segment !== segment) {
        let children = node.children
        if (children === undefined) children = node.children = new Map()
        child = children.get(segment)
        if (child === undefined) {
          child = new Node(node, segment)
          children.set(segment, child)
          this.nodeCount++
        }
      }
      node = child
    }
    node.cachedAs = path
    this.byPath.set(path, node)
    return new Entry(request, node, parts.length, path, mode)
  }

  /** At arrival every live request is earlier, so any conflict blocks. */
  private freeOnArrival(entry: Entry): boolean {
    const node = entry.node
    if (entry.mode === "write") {
      if (node.subHeld > 0 || node.subPending.head !== undefined) return false
      for (let a = node.parent; a !== undefined; a = a.parent) {
        if (a.heldReads + a.heldWrites > 0 || a.pendingHere.head !== undefined) return false
      }
      return true
    }
    if (node.subHeldWrites > 0 || node.subPendingW.head !== undefined) return false
    for (let a = node.parent; a !== undefined; a = a.parent) {
      if (a.heldWrites > 0 || a.pendingHereW.head !== undefined) return false
    }
    return true
  }

  /** Full check of one entry against everything earlier: O(depth). */
  private isClear(entry: Entry): boolean {
    let aboveAll = NONE
    let aboveWrite = NONE
    for (let a = entry.node.parent; a !== undefined; a = a.parent) {
      aboveAll = Math.min(aboveAll, earliestAt(a))
      aboveWrite = Math.min(aboveWrite, earliestWriteAt(a))
    }
    return clearAt(entry, aboveAll, aboveWrite)
  }

  private tryGrant(request: Request): boolean {
    const entries = request.entries
    if (entries.length > 1) {
      let i = request.cursor
      while (i < entries.length && this.isClear(entries[i])) i++
      request.cursor = i
      if (i < entries.length) return false
    }
    this.pendingCount--
    if (request.own?.holds !== undefined) this.unwait(request)
    for (const entry of entries) this.unlinkPending(entry)
    this.hold(request)
    const onGrant = request.onGrant
    request.onGrant = undefined
    if (onGrant !== undefined) onGrant(request)
    return true
  }

  /** Enters the held request granted while the table was empty (see `enqueue`) into the index. */
  private index(request: Request): void {
    this.solo = undefined
    request.entries = []
    for (let i = 0; i < request.paths.length; i++) {
      const entry = this.entryFor(request, request.paths[i], request.modeAt(i))
      request.entries.push(entry)
    }
    this.countHeld(request)
  }

  private hold(request: Request): void {
    request.state = "held"
    request.id = ++this.grants
    this.heldCount++
    this.countHeld(request)
  }

  private countHeld(request: Request): void {
    for (const entry of request.entries) {
      const node = entry.node
      const write = entry.mode === "write"
      if (write) node.heldWrites++
      else node.heldReads++
      for (let a: Node | undefined = node; a !== undefined; a = a.parent) {
        a.subHeld++
        if (write) a.subHeldWrites++
      }
    }
  }

  private unhold(entry: Entry): void {
    const node = entry.node
    const write = entry.mode === "write"
    if (write) node.heldWrites--
    else node.heldReads--
    for (let a: Node | undefined = node; a !== undefined; a = a.parent) {
      a.subHeld--
      if (write) a.subHeldWrites--
    }
  }

  private linkPending(entry: Entry): void {
    const node = entry.node
    const write = entry.mode === "write"
    entry.here = new Link(entry)
    if (node.pendingHere === EMPTY) node.pendingHere = new List()
    node.pendingHere.push(entry.here)
    if (write) {
      entry.hereW = new Link(entry)
      if (node.pendingHereW === EMPTY) node.pendingHereW = new List()
      node.pendingHereW.push(entry.hereW)
    }
    const sub: Array<Link<Entry>> = new Array(entry.depth + 1)
    const subW: Array<Link<Entry>> | undefined = write ? new Array(entry.depth + 1) : undefined
    // Entries link at enqueue, so this one is the latest arrival everywhere on its line.
    const seq = entry.request.seq
    let i = entry.depth
    for (let a: Node | undefined = node; a !== undefined; a = a.parent, i--) {
      const link = new Link(entry)
      if (a.subPending === EMPTY) a.subPending = new List()
      a.subPending.push(link)
      sub[i] = link
      a.lastArrival = seq
      touch(a, "pendingChildren")
      if (subW !== undefined) {
        const linkW = new Link(entry)
        if (a.subPendingW === EMPTY) a.subPendingW = new List()
        a.subPendingW.push(linkW)
        subW[i] = linkW
        a.lastWriteArrival = seq
        touch(a, "pendingWriteChildren")
      }
    }
    entry.sub = sub
    entry.subW = subW
  }

  private unlinkPending(entry: Entry): void {
    const node = entry.node
    node.pendingHere.remove(entry.here!)
    entry.here = undefined
    if (entry.hereW !== undefined) {
      node.pendingHereW.remove(entry.hereW)
      entry.hereW = undefined
    }
    const sub = entry.sub!
    const subW = entry.subW
    let i = entry.depth
    for (let a: Node | undefined = node; a !== undefined; a = a.parent, i--) {
      a.subPending.remove(sub[i])
      if (a.subPending.head === undefined) untouch(a, "pendingChildren")
      if (subW !== undefined) {
        a.subPendingW.remove(subW[i])
        if (a.subPendingW.head === undefined) untouch(a, "pendingWriteChildren")
      }
    }
    entry.sub = undefined
    entry.subW = undefined
  }

  /** Links the entries of a held request that got its first waiter where the cycle search finds them. */
  private watch(request: Request): void {
    for (const entry of request.entries) {
      const links: Array<Link<Entry>> = new Array(entry.depth + 2)
      let i = entry.depth
      for (let a: Node | undefined = entry.node; a !== undefined; a = a.parent, i--) {
        const link = new Link(entry)
        if (a.subHeldWaited === EMPTY) a.subHeldWaited = new List()
        a.subHeldWaited.push(link)
        links[i] = link
      }
      const here = new Link(entry)
      if (entry.node.heldWaitedHere === EMPTY) entry.node.heldWaitedHere = new List()
      entry.node.heldWaitedHere.push(here)
      links[entry.depth + 1] = here
      entry.waited = links
    }
  }

  /** Undoes `watch` (its last waiter left, or it is released) and forgets its waiters. */
  private unwatch(request: Request): void {
    for (const entry of request.entries) {
      const links = entry.waited
      if (links === undefined) continue
      let i = entry.depth
      for (let a: Node | undefined = entry.node; a !== undefined; a = a.parent, i--) a.subHeldWaited.remove(links[i])
      entry.node.heldWaitedHere.remove(links[entry.depth + 1])
      entry.waited = undefined
    }
    request.own!.waiters = undefined
  }

  /** A waiting request was granted or left: its owner no longer waits through it. */
  private unwait(request: Request): void {
    const own = request.own!
    for (const held of own.holds!) {
      const waiters = held.own?.waiters
      if (waiters !== undefined && waiters.delete(request) && waiters.size === 0) this.unwatch(held)
    }
    own.holds = undefined
  }

  /**
   * Depth-first search of the waits-for graph from a request that just
   * started waiting, for one of the requests its owner holds (marked as
   * targets). Each request is visited at most once.
   */
  private cycleFrom(start: Request): ReadonlyArray<CycleStep> | undefined {
    const search = ++this.searches
    for (const held of start.own!.holds!) held.ownership.target = search
    start.ownership.mark = search
    const stack: Array<Request> = [start]
    while (stack.length > 0) {
      const request = stack.pop()!
      const entries = request.entries
      for (let i = request.cursor; i < entries.length; i++) {
        const found = this.blockersOf(entries[i], search, stack)
        if (found !== undefined) return trace(start, found)
      }
    }
    return undefined
  }

  /**
   * Visits what an entry of a pending request waits for: the earlier
   * conflicting pending entries, and the conflicting held entries whose owner
   * waits (a held entry whose owner waits for nothing leads nowhere). Returns
   * a target if it meets one.
   */
  private blockersOf(entry: Entry, search: number, stack: Array<Request>): Request | undefined {
    const seq = entry.request.seq
    const write = entry.mode === "write"
    let found: Request | undefined
    for (let a = entry.node.parent; a !== undefined; a = a.parent) {
      for (let link = a.heldWaitedHere.head; link !== undefined; link = link.next) {
        if ((write || link.value.mode === "write") && (found = visit(link.value, entry, search, stack))) return found
      }
      const pending = write ? a.pendingHere : a.pendingHereW
      for (let link = pending.head; link !== undefined && link.value.request.seq < seq; link = link.next) {
        if ((found = visit(link.value, entry, search, stack))) return found
      }
    }
    const node = entry.node
    for (let link = node.subHeldWaited.head; link !== undefined; link = link.next) {
      if ((write || link.value.mode === "write") && (found = visit(link.value, entry, search, stack))) return found
    }
    const pending = write ? node.subPending : node.subPendingW
    for (let link = pending.head; link !== undefined && link.value.request.seq < seq; link = link.next) {
      if ((found = visit(link.value, entry, search, stack))) return found
    }
    return undefined
  }

  /**
   * Grants what a request leaving `node` may have been blocking: pending
   * entries on the ancestor line of `node` (root first), then in its subtree.
   * Only requests that arrived after the leaver (`leftSeq`) and conflict with
   * it (any request for a write leaver, writes for a read) can have been
   * blocked by it, which bounds the subtree search.
   */
  private wake(node: Node, leftSeq: number, leftWrite: boolean): void {
    // A scratch array filled by index and cleared slot by slot as it is
    // read (setting an array's length is a runtime call: 1% of the
    // contended case), so it keeps no pruned node alive.
    const line = this.scratch
    let n = 0
    for (let a: Node | undefined = node; a !== undefined; a = a.parent) line[n++] = a
    let aboveAll = NONE
    let aboveWrite = NONE
    for (let i = n - 1; i >= 0; i--) {
      const a = line[i]!
      line[i] = undefined
      this.grantAt(a, aboveAll, aboveWrite)
      aboveAll = Math.min(aboveAll, earliestAt(a))
      aboveWrite = Math.min(aboveWrite, earliestWriteAt(a))
    }
    if (aboveWrite > leftSeq) this.wakeBelow(node, aboveAll, aboveWrite, leftSeq, leftWrite)
  }

  /**
   * Grants the leading pending entries of one node that are now clear. An
   * entry that is not clear stops the walk: every later entry here conflicts
   * with it or with what blocks it. A clear entry whose request is blocked on
   * another of its paths stops it too if it is a write (later entries here
   * conflict with it); a read lets later reads here through.
   */
  private grantAt(node: Node, aboveAll: number, aboveWrite: number): void {
    for (let link = node.pendingHere.head; link !== undefined;) {
      const entry = link.value
      if (!clearAt(entry, aboveAll, aboveWrite)) return
      // A request has one entry per node: a grant unlinks `link`, never `next`.
      const next = link.next
      if (!this.tryGrant(entry.request) && entry.mode === "write") return
      link = next
    }
  }

  private wakeBelow(node: Node, aboveAll: number, aboveWrite: number, leftSeq: number, leftWrite: boolean): void {
    // From the newest arrivals back to the first child where nothing the
    // leaver conflicts with arrived after it. Collected first (grants unlink
    // children), then granted oldest first, so grant ids follow arrival order.
    const list = leftWrite ? node.pendingChildren : node.pendingWriteChildren
    if (list.tail === undefined || !arrivedAfter(list.tail.value, leftSeq, leftWrite)) return
    const candidates: Array<Node> = []
    for (
      let link: Link<Node> | undefined = list.tail;
      link !== undefined && arrivedAfter(link.value, leftSeq, leftWrite);
      link = link.prev
    ) {
      candidates.push(link.value)
    }
    for (let i = candidates.length - 1; i >= 0; i--) {
      const child = candidates[i]
      const earliest = child.subPending.head?.value.request.seq ?? NONE
      // Everything below an earlier write on the ancestor line stays blocked.
      if (earliest >= aboveWrite) continue
      this.grantAt(child, aboveAll, aboveWrite)
      const all = Math.min(aboveAll, earliestAt(child))
      const write = Math.min(aboveWrite, earliestWriteAt(child))
      this.wakeBelow(child, all, write, leftSeq, leftWrite)
    }
  }

  private prune(node: Node): void {
    for (let n: Node | undefined = node; n !== undefined && !n.detached && n.isIdle; n = n.parent) {
      n.detached = true
      if (n.cachedAs !== undefined) this.byPath.delete(n.cachedAs)
      const parent: Node | undefined = n.parent
      if (parent === undefined) {
        this.root = undefined
      } else {
        // An idle node is in neither of its parent's pending lists: it left
        // them when its last pending entry did (`unlinkPending`).
        if (parent.only === n) {
          // Another child, if any, takes the field.
          const children = parent.children
          const next = children?.values().next()
          if (next === undefined || next.done) {
            parent.only = undefined
          } else {
            parent.only = next.value
            children!.delete(next.value.segment)
          }
        } else {
          parent.children!.delete(n.segment)
        }
      }
      this.nodeCount--
    }
  }
}

/**
 * One step of the search: `entry` (of a pending request) waits for `blocker`.
 * A held blocker leads on to the pending requests of its owner; a target ends
 * the search.
 */
const visit = (blocker: Entry, entry: Entry, search: number, stack: Array<Request>): Request | undefined => {
  const request = blocker.request
  const own = request.ownership
  if (request.state === "held" && own.target === search) {
    reach(own, search, entry, blocker, undefined)
    return request
  }
  if (own.mark === search) return undefined
  reach(own, search, entry, blocker, undefined)
  if (request.state !== "held") {
    stack.push(request)
    return undefined
  }
  for (const waiter of own.waiters!) {
    const w = waiter.ownership
    if (w.mark === search) continue
    reach(w, search, undefined, undefined, request)
    stack.push(waiter)
  }
  return undefined
}

/** Records that the search reached a request, and how (for `trace`). */
const reach = (
  own: Ownership,
  search: number,
  via: Entry | undefined,
  viaBlocker: Entry | undefined,
  viaHeld: Request | undefined
): void => {
  own.mark = search
  own.via = via
  own.viaBlocker = viaBlocker
  own.viaHeld = viaHeld
}

const stepOf = (entry: Entry): CycleStep => ({
  path: entry.path,
  mode: entry.mode,
  held: entry.request.state === "held"
})

/** The cycle found by `cycleFrom`, from the waiting request's entry to the target it reached. */
const trace = (start: Request, target: Request): ReadonlyArray<CycleStep> => {
  const reversed: Array<Entry> = []
  const add = (entry: Entry) => {
    if (reversed[reversed.length - 1] !== entry) reversed.push(entry)
  }
  let request = target
  for (;;) {
    // `request` was reached as a blocker of `via`, an entry of a pending request.
    const own = request.own!
    add(own.viaBlocker!)
    const from = own.via!
    const waiting = from.request
    if (waiting === start) {
      add(from)
      break
    }
    // A waiter of a held request shows the entry it waits with; a pending
    // blocker is shown once, by the entry that blocks (added next round).
    const viaHeld = waiting.own!.viaHeld
    if (viaHeld !== undefined) {
      add(from)
      request = viaHeld
    } else {
      request = waiting
    }
  }
  return reversed.reverse().map(stepOf)
}
