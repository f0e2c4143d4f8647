/**
 * The states a simulated disk may come back in after a power cut, and the
 * snapshots that describe them. The enumeration is exhaustive and bounded: it
 * throws past its limit rather than quietly checking a sample.
 *
 * @internal
 */
import type { CrashStatesOptions, Snapshot } from "../../../testing/PowerLoss.js"
import { applyData, type DataOp, type DiskState, type FileInode, type Ino, type MetaOp, ROOT_INO } from "./state.js"

const DEFAULT_LIMIT = 200_000
// A file's candidate contents may double (or more) with each unsynced write.
const MAX_DATA_OPS = 12
/** The unit in which a write reaches the device: a page of the page cache. */
const DEFAULT_BLOCK_SIZE = 4096

const latin1 = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192))
  }
  return out
}

const sortKeys = (record: Record<string, string>): Snapshot => {
  const out: Record<string, string> = {}
  for (const key of Object.keys(record).sort()) out[key] = record[key]
  return out
}

/** @internal */
export const keyOf = (snapshot: Snapshot): string => JSON.stringify(Object.entries(snapshot).sort())

/** The tree reachable through `entries`, each file with its `data`. */
const snapshotOf = (
  state: DiskState,
  entries: (ino: Ino) => ReadonlyMap<string, Ino>,
  data: (file: FileInode) => Uint8Array,
  omit: ((path: string) => boolean) | undefined
): Snapshot => {
  const tree = reachable(state, entries, omit)
  withinBounds(tree.length, charsOf(tree))
  const out: Record<string, string> = {}
  for (const [path, node] of tree) {
    out[path] = node === "dir" ? "" : latin1(data(state.fileInode(node)))
  }
  return sortKeys(out)
}

/** @internal */
export const volatile = (state: DiskState, options?: Pick<CrashStatesOptions, "omit">): Snapshot =>
  snapshotOf(state, (ino) => state.dir(ino).entries, (file) => file.data, options?.omit)

/** @internal */
export const durable = (state: DiskState, options?: Pick<CrashStatesOptions, "omit">): Snapshot =>
  snapshotOf(state, (ino) => state.dir(ino).durable, (file) => file.durable, options?.omit)

/** @internal */
export const crashStates = (state: DiskState, options?: CrashStatesOptions): Array<Snapshot> => {
  const limit = options?.limit ?? DEFAULT_LIMIT
  // NaN compared false with every count: it switched the limit off.
  if (!(Number.isInteger(limit) && limit > 0) && limit !== Infinity) {
    throw new Error(`power-loss simulation: limit must be a positive integer or Infinity, got ${limit}`)
  }
  const blockSize = options?.blockSize ?? DEFAULT_BLOCK_SIZE
  if (!(Number.isInteger(blockSize) && blockSize > 0) && blockSize !== Infinity) {
    throw new Error(`power-loss simulation: blockSize must be a positive integer or Infinity, got ${blockSize}`)
  }
  const omit = options?.omit
  const out = new Map<string, Snapshot>()
  // Each subset is at least one state: a scenario that has more subsets than
  // the limit fails now, not after examining `limit` of them.
  const subsets = subsetsAtLeast(state.pending)
  if (subsets > limit) throw tooMany(limit)
  const built = new Built()
  built.atLeast(subsets, pathsInEveryState(state, omit), state.pending)
  let examined = 0
  forEachMetadataSubset(state.pending, built, (subset) => {
    const landed = entriesAfter(state, subset)
    const tree = reachable(state, (ino) => landed.get(ino) ?? state.dir(ino).durable, omit)
    const dirs: Array<string> = []
    const files: Array<readonly [string, Array<string>]> = []
    let product = 1
    for (const [path, node] of tree) {
      if (node === "dir") {
        dirs.push(path)
      } else {
        const candidates = dataCandidates(state.fileInode(node), path, blockSize, limit)
        files.push([path, candidates])
        product *= candidates.length
      }
    }
    examined += product
    if (examined > limit) throw tooMany(limit)
    // Every state of this subset is a snapshot of the whole tree.
    built.step(subset.length + tree.length)
    built.add(tree, product)
    const acc: Record<string, string> = {}
    for (const path of dirs) acc[path] = ""
    // A file with one candidate is set once; only the others branch (fewer
    // than 20 of them: their product is within the limit).
    const branching: typeof files = []
    for (const file of files) {
      if (file[1].length === 1) acc[file[0]] = file[1][0]
      else branching.push(file)
    }
    // One file at a time, each candidate in turn, overwriting the one before.
    const choose = (i: number) => {
      if (i === branching.length) {
        const snapshot = sortKeys(acc)
        out.set(keyOf(snapshot), snapshot)
        return
      }
      const [path, candidates] = branching[i]
      for (const content of candidates) {
        acc[path] = content
        choose(i + 1)
      }
    }
    choose(0)
  })
  return Array.from(out.values())
}

const tooMany = (limit: number) =>
  new Error(`power-loss simulation: more than ${limit} crash states; make the scenario smaller`)

/**
 * What one enumeration may build, counted as it goes (over every order in
 * which the directory changes may land, before equal states are merged):
 * paths and their characters in the snapshots (about 100 bytes a path, plus
 * its characters twice), and steps of the search. Past any of them it stops
 * with an error that names the way out, instead of taking gigabytes or
 * minutes first.
 */
const MAX_PATHS = 4_000_000
const MAX_PATH_CHARS = 256 * 1024 * 1024
const MAX_STEPS = 100_000_000

const tooLargeStates = (what: string) =>
  new Error(
    `power-loss simulation: building the snapshots would ${what}; make the scenario smaller, fsync its ` +
      "directories so that fewer changes are pending, or omit the paths that do not matter"
  )

/** The characters of a tree's paths. */
const charsOf = (tree: ReadonlyArray<readonly [string, unknown]>): number => {
  let chars = 0
  for (const [path] of tree) chars += path.length
  return chars
}

/** Throws past the bounds on paths and their characters. */
const withinBounds = (paths: number, chars: number): void => {
  if (paths > MAX_PATHS) throw tooLargeStates(`build more than ${MAX_PATHS} paths`)
  if (chars > MAX_PATH_CHARS) throw tooLargeStates(`build more than ${MAX_PATH_CHARS / 2 ** 20} MiB of path names`)
}

class Built {
  private paths = 0
  private chars = 0
  private steps = 0

  /** `times` snapshots of `tree`. */
  add(tree: ReadonlyArray<readonly [string, unknown]>, times: number): void {
    this.paths += times * tree.length
    this.chars += times * charsOf(tree)
    withinBounds(this.paths, this.chars)
  }

  step(count: number): void {
    this.steps += count
    if (this.steps > MAX_STEPS) throw tooLargeStates(`take more than ${MAX_STEPS} steps`)
  }

  /**
   * Refuses up front what the enumeration could only refuse late: at least
   * `subsets` states of at least `inEvery` paths each, and, for the largest
   * group of operations that share directories (k of them), the k + 1
   * prefixes it has at least, each applied from the start.
   */
  atLeast(subsets: number, inEvery: ReadonlyArray<readonly [string, unknown]>, ops: ReadonlyArray<MetaOp>) {
    withinBounds(subsets * inEvery.length, subsets * charsOf(inEvery))
    const k = largestGroup(ops)
    if ((k * (k + 1)) / 2 > MAX_STEPS) throw tooLargeStates(`take more than ${MAX_STEPS} steps`)
  }
}

/**
 * A lower bound of the number of order-respecting subsets of `ops`, without
 * enumerating them. Operations fall into groups that share no directory
 * (a rename joins its two); groups land independently, so their counts
 * multiply, and a group of `k` operations has at least its `k + 1` prefixes
 * in arrival order, which respect every directory's order.
 */
const subsetsAtLeast = (ops: ReadonlyArray<MetaOp>): number => {
  let product = 1
  for (const k of groupSizes(ops)) product *= k + 1
  return product
}

const largestGroup = (ops: ReadonlyArray<MetaOp>): number => Math.max(0, ...groupSizes(ops))

/** How many operations each group of operations that share directories (a rename joins its two) has. */
const groupSizes = (ops: ReadonlyArray<MetaOp>): Array<number> => {
  const parent = new Map<Ino, Ino>()
  const find = (dir: Ino): Ino => {
    let root = dir
    for (let up = parent.get(root); up !== undefined && up !== root; up = parent.get(root)) root = up
    parent.set(dir, root)
    return root
  }
  for (const op of ops) {
    const first = find(op.dirs[0])
    for (const dir of op.dirs) parent.set(find(dir), first)
  }
  const sizes = new Map<Ino, number>()
  for (const op of ops) {
    const group = find(op.dirs[0])
    sizes.set(group, (sizes.get(group) ?? 0) + 1)
  }
  return Array.from(sizes.values())
}

/**
 * The paths every state holds, a lower bound of each state's tree: those
 * reached through durable entries that no pending operation changes.
 */
const pathsInEveryState = (
  state: DiskState,
  omit: ((path: string) => boolean) | undefined
): Array<readonly [string, Ino | "dir"]> => {
  const changed = new Map<Ino, Set<string>>()
  for (const op of state.pending) {
    for (const { dir, name } of op.changes) {
      let names = changed.get(dir)
      if (names === undefined) changed.set(dir, names = new Set())
      names.add(name)
    }
  }
  return reachable(state, (ino) => {
    const durable = state.dir(ino).durable
    const names = changed.get(ino)
    if (names === undefined) return durable
    const kept = new Map(durable)
    for (const name of names) kept.delete(name)
    return kept
  }, omit)
}

/**
 * Visits the subsets of the pending metadata operations that respect each
 * directory's order: once an operation is left out, no later operation on one
 * of its directories lands. One at a time, never all at once: their number
 * doubles with each independent directory (24 directories make 16 million),
 * so the visitor's limit must stop the enumeration before they exist (it
 * throws).
 *
 * A depth-first search over the operations, each first landed then left out,
 * kept on an explicit stack (thousands of pending operations are a normal
 * scenario, and too deep for the call stack) with the blocked directories
 * counted, not copied, at each step.
 */
const forEachMetadataSubset = (
  ops: ReadonlyArray<MetaOp>,
  built: Built,
  visit: (subset: ReadonlyArray<MetaOp>) => void
): void => {
  const chosen: Array<MetaOp> = []
  // How many left-out operations block each directory.
  const blocked = new Map<Ino, number>()
  const isBlocked = (op: MetaOp) => op.dirs.some((dir) => blocked.has(dir))
  const block = (op: MetaOp) => {
    for (const dir of op.dirs) blocked.set(dir, (blocked.get(dir) ?? 0) + 1)
  }
  const unblock = (op: MetaOp) => {
    for (const dir of op.dirs) {
      const count = blocked.get(dir)! - 1
      if (count === 0) blocked.delete(dir)
      else blocked.set(dir, count)
    }
  }
  // Per operation on the current branch: 0 not yet tried, 1 landed, 2 left
  // out (at once when it cannot land).
  const step = new Uint8Array(ops.length)
  let i = 0
  while (i >= 0) {
    built.step(1)
    if (i === ops.length) {
      visit(chosen)
      i--
      continue
    }
    const op = ops[i]
    if (step[i] === 0 && !isBlocked(op)) {
      step[i] = 1
      chosen.push(op)
      i++
      continue
    }
    if (step[i] !== 2) {
      if (step[i] === 1) chosen.pop()
      step[i] = 2
      block(op)
      i++
      continue
    }
    // Both branches done: back to the operation before.
    unblock(op)
    step[i] = 0
    i--
  }
}

/** Durable entries with `ops` applied, for the directories they touch. */
const entriesAfter = (state: DiskState, ops: ReadonlyArray<MetaOp>): Map<Ino, Map<string, Ino>> => {
  const out = new Map<Ino, Map<string, Ino>>()
  for (const op of ops) {
    for (const change of op.changes) {
      let entries = out.get(change.dir)
      if (entries === undefined) {
        entries = new Map(state.dir(change.dir).durable)
        out.set(change.dir, entries)
      }
      if (change.ino === undefined) entries.delete(change.name)
      else entries.set(change.name, change.ino)
    }
  }
  return out
}

/**
 * Paths reachable from the root through `entries`, with `"dir"` or the file's
 * inode, depth first in the order of the entries. Iterative: a tree may be
 * deeper than the call stack. Every directory has one name in any state the
 * disk can be in (a rename lands whole, and the renames of one directory in
 * order); reaching one twice is a fault of the simulation, not a deep tree.
 */
const reachable = (
  state: DiskState,
  entries: (ino: Ino) => ReadonlyMap<string, Ino>,
  omit: ((path: string) => boolean) | undefined
): Array<readonly [string, Ino | "dir"]> => {
  const out: Array<readonly [string, Ino | "dir"]> = []
  const seen = new Set<Ino>([ROOT_INO])
  // The directories being listed, innermost last, each with where it is in its entries.
  const stack: Array<{ readonly prefix: string; readonly rest: Iterator<[string, Ino]> }> = [
    { prefix: "", rest: entries(ROOT_INO).entries() }
  ]
  while (stack.length > 0) {
    const { prefix, rest } = stack[stack.length - 1]
    const next = rest.next()
    if (next.done === true) {
      stack.pop()
      continue
    }
    const [name, child] = next.value
    const path = prefix + "/" + name
    if (omit?.(path)) continue
    if (state.inode(child).kind !== "dir") {
      out.push([path, child])
      continue
    }
    if (seen.has(child)) throw new Error(`power-loss simulation: directory ${child} reached twice (at ${path})`)
    seen.add(child)
    out.push([path + "/", "dir"])
    stack.push({ prefix: path, rest: entries(child).entries() })
  }
  return out
}

/** The bytes of candidate contents one file may take while enumerating, whatever the limit. */
const MAX_CANDIDATE_BYTES = 256 * 1024 * 1024

const tooLarge = (path: string, detail: string) =>
  new Error(
    `power-loss simulation: too many crash states for ${path}: ${detail}; make the scenario smaller, omit the ` +
      "file, or pass a larger blockSize"
  )

/** The block boundaries where a write that extends `length` to `end` may leave the size: the old size, or short of the end. */
const cutSizes = (length: number, offset: number, end: number, blockSize: number): Array<number> => {
  if (end <= length || blockSize === Infinity) return []
  // A write wholly past the end leaves a hole that no write-back stops inside.
  const sizes = [length]
  const from = Math.max(length, offset)
  for (let at = (Math.floor(from / blockSize) + 1) * blockSize; at < end; at += blockSize) sizes.push(at)
  return sizes
}

/**
 * How one pending write may have reached the device, block by block: each
 * block it touches either landed (the new bytes) or did not (what the block
 * held before the write: its earlier bytes where the file already reached,
 * zeros where the write extended it). A write that extended the file may also
 * have left the size at the old size or at a block boundary short of its end
 * (the size is advanced as blocks are written back). A truncation lands
 * whole; a write of nothing changes nothing.
 */
const outcomes = (data: Uint8Array, op: DataOp, blockSize: number): Array<Uint8Array> => {
  if (op._tag === "Truncate" || op.bytes.length === 0) return [applyData(data, op, false)]
  const end = op.offset + op.bytes.length
  const first = Math.floor(op.offset / blockSize)
  const blocks = Math.floor((end - 1) / blockSize) - first + 1
  const before = applyData(data, op, true)
  // Zeros where the write extended the file, its earlier bytes elsewhere.
  before.set(data.subarray(0, Math.min(data.length, end)))
  const next: Array<Uint8Array> = []
  for (let landed = 0; landed < 2 ** blocks; landed++) {
    const out = before.slice()
    for (let b = 0; b < blocks; b++) {
      if ((landed & (2 ** b)) === 0) continue
      // The write's own ends at its first and last block (a block of
      // `Infinity` has no finite bounds to clamp to).
      const from = b === 0 ? op.offset : (first + b) * blockSize
      const to = b === blocks - 1 ? end : (first + b + 1) * blockSize
      out.set(op.bytes.subarray(from - op.offset, to - op.offset), from)
    }
    next.push(out)
  }
  const all = [...next]
  for (const size of cutSizes(data.length, op.offset, end, blockSize)) {
    for (const state of next) all.push(state.slice(0, size))
  }
  return all
}

/** How many contents `outcomes` makes for `op` on contents of `length` bytes, and their bytes, before making them. */
const outcomeCost = (length: number, op: DataOp, blockSize: number): { count: number; bytes: number } => {
  if (op._tag === "Truncate") return { count: 1, bytes: op.length }
  const end = op.offset + op.bytes.length
  if (op.bytes.length === 0) return { count: 1, bytes: length }
  const blocks = Math.floor((end - 1) / blockSize) - Math.floor(op.offset / blockSize) + 1
  const count = 2 ** Math.min(blocks, 1024) * (1 + cutSizes(length, op.offset, end, blockSize).length)
  return { count, bytes: count * Math.max(length, end) }
}

/**
 * The contents a file may have after a crash: its durable data followed by
 * a prefix of its pending operations, each write landed block by block
 * (`outcomes`). A content whose size a write left short goes on to the later
 * operations too (a later overwrite in place may land on it). Bounded before
 * anything is made: by `limit` contents, and by the bytes they take.
 */
const dataCandidates = (inode: FileInode, path: string, blockSize: number, limit: number): Array<string> => {
  if (inode.pending.length > MAX_DATA_OPS) {
    throw new Error(`power-loss simulation: more than ${MAX_DATA_OPS} unsynced writes to one file (${path})`)
  }
  const out = new Set<string>([latin1(inode.durable)])
  let states: Array<Uint8Array> = [inode.durable]
  let held = inode.durable.length
  for (const op of inode.pending) {
    let count = 0
    let bytes = 0
    for (const state of states) {
      const cost = outcomeCost(state.length, op, blockSize)
      count += cost.count
      bytes += cost.bytes
    }
    if (out.size + count > limit) throw tooLarge(path, `more than ${limit} contents (the limit)`)
    // Each new content is held twice: its bytes, and its string key.
    if (held + 2 * bytes > MAX_CANDIDATE_BYTES) {
      throw tooLarge(path, `its candidate contents would take more than ${MAX_CANDIDATE_BYTES / 2 ** 20} MiB`)
    }
    const next: Array<Uint8Array> = []
    const seen = new Set<string>()
    for (const state of states) {
      for (const after of outcomes(state, op, blockSize)) {
        const key = latin1(after)
        if (seen.has(key)) continue
        seen.add(key)
        next.push(after)
        if (!out.has(key)) {
          out.add(key)
          held += after.length
        }
      }
    }
    states = next
  }
  return Array.from(out)
}
