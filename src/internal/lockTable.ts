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
 * Nodes are created on demand and pruned as soon as nothing is held or
 * pending in their subtree, so an idle table holds no memory.
 *
 * @internal
 */
import { segments } from "./path.js"

/** @internal */
export type Mode = "read" | "write"

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

// Read-only by convention: `linkPending` replaces it before the first push.
const EMPTY = new List<never>() as List<any>

class Node {
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
  // Queues exist only under contention: an uncontended node shares the empty
  // list (never written to), so it costs one object, not five.
  pendingHere: List<Entry> = EMPTY
  pendingHereW: List<Entry> = EMPTY
  subPending: List<Entry> = EMPTY
  subPendingW: List<Entry> = EMPTY
  constructor(readonly parent: Node | undefined, readonly segment: string) {}

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
  constructor(readonly request: Request, readonly node: Node, readonly depth: number) {}
}

/**
 * One lock request: a read on one path, or a write on one or more paths.
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
  entries: Array<Entry> = []
  constructor(readonly seq: number, readonly mode: Mode, readonly paths: ReadonlyArray<string>) {}
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
  if (entry.request.mode === "write") {
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
  private seq = 0
  private grants = 0
  private heldCount = 0
  private pendingCount = 0
  private nodeCount = 0
  private readonly scratch: Array<Node> = []

  get stats(): Stats {
    return { held: this.heldCount, pending: this.pendingCount, nodes: this.nodeCount }
  }

  get held(): number {
    return this.heldCount
  }

  get pending(): number {
    return this.pendingCount
  }

  /**
   * Registers a request for normal, non-overlapping paths (see `topMost`) and
   * grants it at once when nothing live conflicts. Never waits.
   */
  enqueue(mode: Mode, paths: ReadonlyArray<string>): Request {
    const request = new Request(++this.seq, mode, paths)
    let free = true
    for (let i = 0; i < paths.length; i++) {
      const entry = this.entryFor(request, paths[i])
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
    if (state === "held") {
      this.heldCount--
      for (const entry of request.entries) this.unhold(entry)
    } else {
      this.pendingCount--
      for (const entry of request.entries) this.unlinkPending(entry)
    }
    if (this.pendingCount > 0) {
      for (const entry of request.entries) this.wake(entry.node, request.seq, request.mode === "write")
    }
    for (const entry of request.entries) this.prune(entry.node)
  }

  private entryFor(request: Request, path: string): Entry {
    if (this.root === undefined) {
      this.root = new Node(undefined, "")
      this.nodeCount++
    }
    let node = this.root
    const parts = segments(path)
    for (let i = 0; i < parts.length; i++) {
      const segment = parts[i]
      let children = node.children
      if (children === undefined) children = node.children = new Map()
      let child = children.get(segment)
      if (child === undefined) {
        child = new Node(node, segment)
        children.set(segment, child)
        this.nodeCount++
      }
      node = child
    }
    return new Entry(request, node, parts.length)
  }

  /** At arrival every live request is earlier, so any conflict blocks. */
  private freeOnArrival(entry: Entry): boolean {
    const node = entry.node
    if (entry.request.mode === "write") {
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
      for (let i = 0; i < entries.length; i++) {
        if (!this.isClear(entries[i])) return false
      }
    }
    this.pendingCount--
    for (const entry of entries) this.unlinkPending(entry)
    this.hold(request)
    const onGrant = request.onGrant
    request.onGrant = undefined
    if (onGrant !== undefined) onGrant(request)
    return true
  }

  private hold(request: Request): void {
    request.state = "held"
    request.id = ++this.grants
    this.heldCount++
    const write = request.mode === "write"
    for (const entry of request.entries) {
      const node = entry.node
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
    const write = entry.request.mode === "write"
    if (write) node.heldWrites--
    else node.heldReads--
    for (let a: Node | undefined = node; a !== undefined; a = a.parent) {
      a.subHeld--
      if (write) a.subHeldWrites--
    }
  }

  private linkPending(entry: Entry): void {
    const node = entry.node
    const write = entry.request.mode === "write"
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

  /**
   * Grants what a request leaving `node` may have been blocking: pending
   * entries on the ancestor line of `node` (root first), then in its subtree.
   * Only requests that arrived after the leaver (`leftSeq`) and conflict with
   * it (any request for a write leaver, writes for a read) can have been
   * blocked by it, which bounds the subtree search.
   */
  private wake(node: Node, leftSeq: number, leftWrite: boolean): void {
    const line = this.scratch
    line.length = 0
    for (let a: Node | undefined = node; a !== undefined; a = a.parent) line.push(a)
    let aboveAll = NONE
    let aboveWrite = NONE
    for (let i = line.length - 1; i >= 0; i--) {
      const a = line[i]
      this.grantAt(a, aboveAll, aboveWrite)
      aboveAll = Math.min(aboveAll, earliestAt(a))
      aboveWrite = Math.min(aboveWrite, earliestWriteAt(a))
    }
    line.length = 0
    if (aboveWrite > leftSeq) this.wakeBelow(node, aboveAll, aboveWrite, leftSeq, leftWrite)
  }

  /** Grants the leading pending entries of one node that are now clear. */
  private grantAt(node: Node, aboveAll: number, aboveWrite: number): void {
    for (let link = node.pendingHere.head; link !== undefined; link = node.pendingHere.head) {
      const entry = link.value
      if (!clearAt(entry, aboveAll, aboveWrite) || !this.tryGrant(entry.request)) return
    }
  }

  private wakeBelow(node: Node, aboveAll: number, aboveWrite: number, leftSeq: number, leftWrite: boolean): void {
    // From the newest arrivals back to the first child where nothing the
    // leaver conflicts with arrived after it. Collected first (grants unlink
    // children), then granted oldest first, so grant ids follow arrival order.
    const list = leftWrite ? node.pendingChildren : node.pendingWriteChildren
    const arrivedAfter = (child: Node) => (leftWrite ? child.lastArrival : child.lastWriteArrival) > leftSeq
    if (list.tail === undefined || !arrivedAfter(list.tail.value)) return
    const candidates: Array<Node> = []
    for (
      let link: Link<Node> | undefined = list.tail;
      link !== undefined && arrivedAfter(link.value);
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
      const parent = n.parent
      if (parent === undefined) {
        this.root = undefined
      } else {
        // An idle node is in neither of its parent's pending lists: it left
        // them when its last pending entry did (`unlinkPending`).
        parent.children!.delete(n.segment)
      }
      this.nodeCount--
    }
  }
}
