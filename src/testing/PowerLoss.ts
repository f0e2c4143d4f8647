/**
 * A simulated file system that knows what a power cut may leave behind. It
 * implements the subset of the platform `FileSystem` the Client uses, keeps a
 * volatile state (what reads see) and a durable state that lags behind it, and
 * enumerates every state the disk may come back in after a crash.
 *
 * Model.
 * - Inodes are separate from directory entries: a directory maps names to
 *   inode numbers, a file inode owns its data. A rename moves a reference.
 * - File data: every write or truncate of a file is a pending data operation
 *   of its inode. `File.sync` on a regular file makes the data and the size
 *   durable (not the file's name). After a crash a file holds its durable data
 *   followed by a prefix of its pending operations, each of which landed whole
 *   or as zeros of the right size (the size grew, the blocks were not written,
 *   as with delayed allocation or `data=writeback`).
 * - Directory entries: every create, mkdir, unlink, rmdir and rename is one
 *   metadata operation, atomic (it lands whole or not at all). A rename across
 *   two directories is still one operation touching both: POSIX makes rename
 *   atomic and journaling file systems log it as one transaction; splitting it
 *   would make every cross-directory move losable, which no program can guard
 *   against.
 * - Ordering: the operations that land in a crash are any subset that is a
 *   prefix of each directory's own sequence of operations. A journal replays a
 *   directory's changes in order, so a later change to a directory never
 *   lands without the earlier ones (an arbitrary subset would let "create a,
 *   unlink a, create a" end in states no execution reaches). Directories are
 *   independent of each other: that is weaker than the single global journal
 *   of ext4 or XFS, so a guarantee shown here holds there too. It is why a new
 *   directory's content may survive while its own entry in the parent does
 *   not (the content is then unreachable).
 * - `File.sync` on a directory descriptor makes all of its pending operations
 *   durable, and with them (through rename operations touching two
 *   directories) the earlier operations of the other directory they touch:
 *   the per-directory order forces it.
 *
 * Enumeration is exhaustive and bounded: it throws when a state space exceeds
 * the limit, rather than quietly checking a sample.
 *
 * @since 0.1.0
 */
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * A whole tree as `path -> content`: absolute paths; a file maps to its bytes
 * as a latin1 string (one character per byte, so zeros show as `"\0"`); a
 * directory maps to `""` under its path with a trailing `/`. The root is left out.
 *
 * @since 0.1.0
 * @category models
 */
export type Snapshot = Readonly<Record<string, string>>

/**
 * An initial (durable) state, in the shape of a `Snapshot`; missing parent
 * directories are implied.
 *
 * @since 0.1.0
 * @category models
 */
export type InitialState = Readonly<Record<string, string | Uint8Array>>

/**
 * An error of a simulated system call, carrying its errno `code` as Node's do.
 *
 * @since 0.1.0
 * @category errors
 */
export class ErrnoError extends Error {
  constructor(readonly code: string, readonly syscall: string, readonly path: string) {
    super(`${code}: ${syscall} '${path}'`)
    this.name = "ErrnoError"
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CrashStatesOptions {
  /** Leave matching paths (and what is below them) out of the snapshots. */
  readonly omit?: (path: string) => boolean
  /** Maximum number of candidate states examined. Default 200 000. */
  readonly limit?: number
}

type Ino = number

type DataOp =
  | { readonly _tag: "Write"; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly _tag: "Truncate"; readonly length: number }

interface FileInode {
  readonly kind: "file"
  readonly ino: Ino
  mode: number
  data: Uint8Array
  durable: Uint8Array
  pending: Array<DataOp>
}

interface DirInode {
  readonly kind: "dir"
  readonly ino: Ino
  mode: number
  readonly entries: Map<string, Ino>
  readonly durable: Map<string, Ino>
}

type Inode = FileInode | DirInode

/** One entry change; `ino === undefined` removes the name. */
interface EntryChange {
  readonly dir: Ino
  readonly name: string
  readonly ino: Ino | undefined
}

interface MetaOp {
  readonly changes: ReadonlyArray<EntryChange>
  readonly dirs: ReadonlyArray<Ino>
}

interface Handle {
  readonly ino: Ino
  readonly readable: boolean
  readonly writable: boolean
  readonly append: boolean
  position: number
  closed: boolean
}

const ROOT_INO = 0
const DEFAULT_LIMIT = 200_000
const MAX_DATA_OPS = 12
const encoder = new TextEncoder()

const latin1 = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192))
  }
  return out
}

const segmentsOf = (path: string): Array<string> => {
  const out: Array<string> = []
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue
    if (segment === "..") out.pop()
    else out.push(segment)
  }
  return out
}

const pathOf = (segments: ReadonlyArray<string>): string => "/" + segments.join("/")

const applyData = (data: Uint8Array, op: DataOp, zeros: boolean): Uint8Array => {
  if (op._tag === "Truncate") {
    const out = new Uint8Array(op.length)
    out.set(data.subarray(0, Math.min(data.length, op.length)))
    return out
  }
  const end = op.offset + op.bytes.length
  const out = new Uint8Array(Math.max(data.length, end))
  out.set(data)
  if (zeros) out.fill(0, op.offset, end)
  else out.set(op.bytes, op.offset)
  return out
}

/**
 * Parsed open flags, as `fs.open` reads them.
 */
const parseFlag = (flag: FileSystem.OpenFlag) => ({
  readable: flag.startsWith("r") || flag.endsWith("+"),
  writable: flag !== "r",
  create: flag.startsWith("w") || flag.startsWith("a"),
  exclusive: flag.includes("x"),
  truncate: flag.startsWith("w"),
  append: flag.startsWith("a")
})

/**
 * The simulated disk: synchronous, Effect-free, throwing `ErrnoError`s.
 * `fileSystem` adapts it to the platform service.
 *
 * @since 0.1.0
 * @category constructors
 */
export class SimulatedDisk {
  private readonly inodes = new Map<Ino, Inode>()
  private readonly handles = new Map<number, Handle>()
  private pending: Array<MetaOp> = []
  private nextIno = ROOT_INO + 1
  private nextFd = 3
  private readonly listeners = new Set<(call: string) => void>()

  constructor(initial: InitialState = {}) {
    this.inodes.set(ROOT_INO, { kind: "dir", ino: ROOT_INO, mode: 0o755, entries: new Map(), durable: new Map() })
    for (const [path, content] of Object.entries(initial)) {
      const segments = segmentsOf(path)
      const isDir = path.endsWith("/")
      let dir = this.dir(ROOT_INO)
      segments.forEach((name, i) => {
        const last = i === segments.length - 1
        const existing = dir.entries.get(name)
        if (existing !== undefined) {
          const inode = this.inode(existing)
          if (inode.kind !== "dir" || (last && !isDir)) throw new Error(`initial state: ${path} conflicts`)
          dir = inode
          return
        }
        const ino = this.nextIno++
        if (last && !isDir) {
          const data = typeof content === "string" ? encoder.encode(content) : content.slice()
          this.inodes.set(ino, { kind: "file", ino, mode: 0o644, data, durable: data, pending: [] })
        } else {
          this.inodes.set(ino, { kind: "dir", ino, mode: 0o755, entries: new Map(), durable: new Map() })
        }
        dir.entries.set(name, ino)
        dir.durable.set(name, ino)
        if (!last) dir = this.dir(ino)
      })
    }
  }

  /** Calls `listener` after every call that changes the volatile or the durable state. */
  subscribe(listener: (call: string) => void): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  /** Number of metadata operations not yet durable (for tests of the model). */
  get pendingMetadata(): number {
    return this.pending.length
  }

  // -- state inspection -------------------------------------------------------

  /** What reads see now. */
  volatile(options?: Pick<CrashStatesOptions, "omit">): Snapshot {
    const out: Record<string, string> = {}
    const walk = (dir: DirInode, prefix: string) => {
      for (const [name, ino] of dir.entries) {
        const path = prefix + "/" + name
        if (options?.omit?.(path)) continue
        const inode = this.inode(ino)
        if (inode.kind === "dir") {
          out[path + "/"] = ""
          walk(inode, path)
        } else {
          out[path] = latin1(inode.data)
        }
      }
    }
    walk(this.dir(ROOT_INO), "")
    return sortKeys(out)
  }

  /** What the disk holds if the power is cut now and no pending change lands. */
  durableState(options?: Pick<CrashStatesOptions, "omit">): Snapshot {
    const entries = (ino: Ino) => this.dir(ino).durable
    const out: Record<string, string> = {}
    for (const [path, node] of this.reachable(entries, options?.omit)) {
      out[path] = node === "dir" ? "" : latin1(this.fileInode(node).durable)
    }
    return sortKeys(out)
  }

  /**
   * Every state the disk may come back in if the power is cut now,
   * deduplicated. Throws when more than `limit` candidates would be examined.
   */
  crashStates(options?: CrashStatesOptions): Array<Snapshot> {
    const limit = options?.limit ?? DEFAULT_LIMIT
    const omit = options?.omit
    const out = new Map<string, Snapshot>()
    let examined = 0
    for (const subset of this.metadataSubsets()) {
      const entries = this.entriesAfter(subset)
      const tree = this.reachable((ino) => entries.get(ino) ?? this.dir(ino).durable, omit)
      const dirs: Array<string> = []
      const files: Array<readonly [string, Array<string>]> = []
      let product = 1
      for (const [path, node] of tree) {
        if (node === "dir") {
          dirs.push(path)
        } else {
          const candidates = this.dataCandidates(this.fileInode(node))
          files.push([path, candidates])
          product *= candidates.length
        }
      }
      examined += product
      if (examined > limit) {
        throw new Error(`power-loss simulation: more than ${limit} crash states; make the scenario smaller`)
      }
      const choose = (i: number, acc: Record<string, string>) => {
        if (i === files.length) {
          const snapshot = sortKeys(acc)
          out.set(keyOf(snapshot), snapshot)
          return
        }
        const [path, candidates] = files[i]
        for (const content of candidates) choose(i + 1, { ...acc, [path]: content })
      }
      const base: Record<string, string> = {}
      for (const path of dirs) base[path] = ""
      choose(0, base)
    }
    return Array.from(out.values())
  }

  /** Subsets of the pending metadata operations that respect each directory's order. */
  private metadataSubsets(): Array<ReadonlyArray<MetaOp>> {
    const ops = this.pending
    const out: Array<ReadonlyArray<MetaOp>> = []
    const go = (i: number, blocked: ReadonlySet<Ino>, chosen: ReadonlyArray<MetaOp>) => {
      if (i === ops.length) {
        out.push(chosen)
        return
      }
      const op = ops[i]
      const without = new Set(blocked)
      for (const dir of op.dirs) without.add(dir)
      if (!op.dirs.some((dir) => blocked.has(dir))) go(i + 1, blocked, [...chosen, op])
      go(i + 1, without, chosen)
    }
    go(0, new Set(), [])
    return out
  }

  /** Durable entries with `ops` applied, for the directories they touch. */
  private entriesAfter(ops: ReadonlyArray<MetaOp>): Map<Ino, Map<string, Ino>> {
    const out = new Map<Ino, Map<string, Ino>>()
    for (const op of ops) {
      for (const change of op.changes) {
        let entries = out.get(change.dir)
        if (entries === undefined) {
          entries = new Map(this.dir(change.dir).durable)
          out.set(change.dir, entries)
        }
        if (change.ino === undefined) entries.delete(change.name)
        else entries.set(change.name, change.ino)
      }
    }
    return out
  }

  /** Paths reachable from the root through `entries`, with `"dir"` or the file's inode. */
  private reachable(
    entries: (ino: Ino) => ReadonlyMap<string, Ino>,
    omit: ((path: string) => boolean) | undefined
  ): Array<readonly [string, Ino | "dir"]> {
    const out: Array<readonly [string, Ino | "dir"]> = []
    const walk = (ino: Ino, prefix: string, depth: number) => {
      if (depth > 64) throw new Error("power-loss simulation: directory cycle")
      for (const [name, child] of entries(ino)) {
        const path = prefix + "/" + name
        if (omit?.(path)) continue
        const inode = this.inode(child)
        if (inode.kind === "dir") {
          out.push([path + "/", "dir"])
          walk(child, path, depth + 1)
        } else {
          out.push([path, child])
        }
      }
    }
    walk(ROOT_INO, "", 0)
    return out
  }

  /**
   * The contents a file may have after a crash: its durable data followed by
   * a prefix of its pending operations, each landed whole or as zeros.
   */
  private dataCandidates(inode: FileInode): Array<string> {
    if (inode.pending.length > MAX_DATA_OPS) {
      throw new Error(`power-loss simulation: more than ${MAX_DATA_OPS} unsynced writes to one file`)
    }
    const out = new Set<string>([latin1(inode.durable)])
    let states: Array<Uint8Array> = [inode.durable]
    for (const op of inode.pending) {
      const next: Array<Uint8Array> = []
      const seen = new Set<string>()
      for (const state of states) {
        for (const zeros of [false, true]) {
          const after = applyData(state, op, zeros)
          const key = latin1(after)
          if (seen.has(key)) continue
          seen.add(key)
          next.push(after)
          out.add(key)
        }
      }
      states = next
    }
    return Array.from(out)
  }

  // -- system calls -----------------------------------------------------------

  open(path: string, flag: FileSystem.OpenFlag = "r", mode = 0o666): number {
    const flags = parseFlag(flag)
    const segments = segmentsOf(path)
    let ino: Ino
    let created = false
    if (segments.length === 0) {
      ino = ROOT_INO
    } else {
      const parent = this.parentOf("open", path, segments)
      const name = segments[segments.length - 1]
      const existing = parent.entries.get(name)
      if (existing !== undefined) {
        if (flags.create && flags.exclusive) throw new ErrnoError("EEXIST", "open", path)
        ino = existing
      } else {
        if (!flags.create) throw new ErrnoError("ENOENT", "open", path)
        ino = this.nextIno++
        const empty = new Uint8Array(0)
        this.inodes.set(ino, { kind: "file", ino, mode: mode & 0o7777, data: empty, durable: empty, pending: [] })
        this.link(parent.ino, name, ino)
        created = true
      }
    }
    const inode = this.inode(ino)
    if (inode.kind === "dir" && flags.writable) throw new ErrnoError("EISDIR", "open", path)
    const changed = created || (inode.kind === "file" && flags.truncate && inode.data.length > 0)
    if (inode.kind === "file" && flags.truncate && inode.data.length > 0) {
      this.dataOp(inode, { _tag: "Truncate", length: 0 })
    }
    const fd = this.nextFd++
    this.handles.set(fd, {
      ino,
      readable: flags.readable,
      writable: flags.writable,
      append: flags.append,
      position: 0,
      closed: false
    })
    if (changed) this.notify("open")
    return fd
  }

  close(fd: number): void {
    this.handle("close", fd).closed = true
    this.handles.delete(fd)
  }

  write(fd: number, bytes: Uint8Array): number {
    const handle = this.handle("write", fd)
    const inode = this.inode(handle.ino)
    if (inode.kind === "dir") throw new ErrnoError("EISDIR", "write", String(fd))
    if (!handle.writable) throw new ErrnoError("EBADF", "write", String(fd))
    const offset = handle.append ? inode.data.length : handle.position
    this.dataOp(inode, { _tag: "Write", offset, bytes: bytes.slice() })
    handle.position = offset + bytes.length
    this.notify("write")
    return bytes.length
  }

  read(fd: number, buffer: Uint8Array): number {
    const handle = this.handle("read", fd)
    const inode = this.inode(handle.ino)
    if (inode.kind === "dir") throw new ErrnoError("EISDIR", "read", String(fd))
    if (!handle.readable) throw new ErrnoError("EBADF", "read", String(fd))
    const chunk = inode.data.subarray(handle.position, handle.position + buffer.length)
    buffer.set(chunk)
    handle.position += chunk.length
    return chunk.length
  }

  seek(fd: number, offset: number, from: FileSystem.SeekMode): void {
    const handle = this.handle("seek", fd)
    handle.position = from === "start" ? offset : handle.position + offset
  }

  truncateFd(fd: number, length: number): void {
    const handle = this.handle("truncate", fd)
    const inode = this.inode(handle.ino)
    if (inode.kind === "dir" || !handle.writable) throw new ErrnoError("EINVAL", "ftruncate", String(fd))
    this.dataOp(inode, { _tag: "Truncate", length })
    if (handle.position > length && !handle.append) handle.position = length
    this.notify("truncate")
  }

  /** fsync: a file's data and size, or a directory's entry changes. */
  sync(fd: number): void {
    const inode = this.inode(this.handle("fsync", fd).ino)
    if (inode.kind === "file") {
      inode.durable = inode.data
      inode.pending = []
    } else {
      this.syncDirectory(inode.ino)
    }
    this.notify("fsync")
  }

  fstat(fd: number): FileSystem.File.Info {
    return this.info(this.handle("fstat", fd).ino)
  }

  stat(path: string): FileSystem.File.Info {
    return this.info(this.lookup("stat", path))
  }

  access(path: string): void {
    this.lookup("access", path)
  }

  realPath(path: string): string {
    this.lookup("realpath", path)
    return pathOf(segmentsOf(path))
  }

  readFile(path: string): Uint8Array {
    const inode = this.inode(this.lookup("open", path))
    if (inode.kind === "dir") throw new ErrnoError("EISDIR", "read", path)
    return inode.data.slice()
  }

  writeFile(path: string, data: Uint8Array, flag: FileSystem.OpenFlag = "w", mode?: number): void {
    const fd = this.open(path, flag, mode)
    try {
      this.write(fd, data)
    } finally {
      this.close(fd)
    }
  }

  readDirectory(path: string, recursive: boolean): Array<string> {
    const inode = this.inode(this.lookup("scandir", path))
    if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", "scandir", path)
    const out: Array<string> = []
    const walk = (dir: DirInode, prefix: string) => {
      for (const name of Array.from(dir.entries.keys()).sort()) {
        const child = this.inode(dir.entries.get(name)!)
        out.push(prefix + name)
        if (recursive && child.kind === "dir") walk(child, prefix + name + "/")
      }
    }
    walk(inode, "")
    return out
  }

  makeDirectory(path: string, recursive: boolean, mode = 0o777): void {
    const segments = segmentsOf(path)
    if (segments.length === 0) {
      if (recursive) return
      throw new ErrnoError("EEXIST", "mkdir", path)
    }
    if (!recursive) {
      const parent = this.parentOf("mkdir", path, segments)
      const name = segments[segments.length - 1]
      if (parent.entries.has(name)) throw new ErrnoError("EEXIST", "mkdir", path)
      this.mkdirIn(parent, name, mode)
      this.notify("mkdir")
      return
    }
    let dir = this.dir(ROOT_INO)
    for (const name of segments) {
      const existing = dir.entries.get(name)
      if (existing === undefined) {
        dir = this.mkdirIn(dir, name, mode)
        this.notify("mkdir")
        continue
      }
      const inode = this.inode(existing)
      if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", "mkdir", path)
      dir = inode
    }
  }

  rename(from: string, to: string): void {
    const fromSegments = segmentsOf(from)
    const toSegments = segmentsOf(to)
    if (fromSegments.length === 0 || toSegments.length === 0) throw new ErrnoError("EBUSY", "rename", from)
    const source = this.parentOf("rename", from, fromSegments)
    const sourceName = fromSegments[fromSegments.length - 1]
    const ino = source.entries.get(sourceName)
    if (ino === undefined) throw new ErrnoError("ENOENT", "rename", from)
    const target = this.parentOf("rename", to, toSegments)
    const targetName = toSegments[toSegments.length - 1]
    const existing = target.entries.get(targetName)
    if (existing === ino) return
    const inode = this.inode(ino)
    if (inode.kind === "dir") {
      const fromPath = pathOf(fromSegments)
      if (pathOf(toSegments).startsWith(fromPath + "/")) throw new ErrnoError("EINVAL", "rename", from)
    }
    if (existing !== undefined) {
      const replaced = this.inode(existing)
      if (replaced.kind === "dir") {
        if (inode.kind !== "dir") throw new ErrnoError("EISDIR", "rename", to)
        if (replaced.entries.size > 0) throw new ErrnoError("ENOTEMPTY", "rename", to)
      } else if (inode.kind === "dir") {
        throw new ErrnoError("ENOTDIR", "rename", to)
      }
    }
    this.metaOp([
      { dir: source.ino, name: sourceName, ino: undefined },
      { dir: target.ino, name: targetName, ino }
    ])
    this.notify("rename")
  }

  /** `rm`, as Node does it: children first, then the directory. */
  remove(path: string, recursive: boolean, force: boolean): void {
    const segments = segmentsOf(path)
    let parent: DirInode
    try {
      parent = this.parentOf("rm", path, segments)
    } catch (error) {
      if (force && error instanceof ErrnoError && error.code === "ENOENT") return
      throw error
    }
    if (segments.length === 0) throw new ErrnoError("EPERM", "rm", path)
    const name = segments[segments.length - 1]
    const ino = parent.entries.get(name)
    if (ino === undefined) {
      if (force) return
      throw new ErrnoError("ENOENT", "rm", path)
    }
    const inode = this.inode(ino)
    if (inode.kind === "dir" && !recursive) throw new ErrnoError("ERR_FS_EISDIR", "rm", path)
    const removeTree = (dir: DirInode, entry: string, inode: Inode) => {
      if (inode.kind === "dir") {
        for (const [childName, child] of Array.from(inode.entries)) removeTree(inode, childName, this.inode(child))
      }
      this.unlink(dir.ino, entry)
      this.notify("rm")
    }
    removeTree(parent, name, inode)
  }

  // -- internals --------------------------------------------------------------

  private notify(call: string): void {
    for (const listener of this.listeners) listener(call)
  }

  private inode(ino: Ino): Inode {
    const inode = this.inodes.get(ino)
    if (inode === undefined) throw new Error(`power-loss simulation: no inode ${ino}`)
    return inode
  }

  private dir(ino: Ino): DirInode {
    const inode = this.inode(ino)
    if (inode.kind !== "dir") throw new Error(`power-loss simulation: inode ${ino} is not a directory`)
    return inode
  }

  private fileInode(ino: Ino): FileInode {
    const inode = this.inode(ino)
    if (inode.kind !== "file") throw new Error(`power-loss simulation: inode ${ino} is not a file`)
    return inode
  }

  private handle(syscall: string, fd: number): Handle {
    const handle = this.handles.get(fd)
    if (handle === undefined || handle.closed) throw new ErrnoError("EBADF", syscall, String(fd))
    return handle
  }

  private lookup(syscall: string, path: string): Ino {
    const segments = segmentsOf(path)
    if (segments.length === 0) return ROOT_INO
    const ino = this.parentOf(syscall, path, segments).entries.get(segments[segments.length - 1])
    if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
    return ino
  }

  /** The directory holding the last segment: ENOENT or ENOTDIR on the way. */
  private parentOf(syscall: string, path: string, segments: ReadonlyArray<string>): DirInode {
    let dir = this.dir(ROOT_INO)
    for (const name of segments.slice(0, -1)) {
      const ino = dir.entries.get(name)
      if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
      const inode = this.inode(ino)
      if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", syscall, path)
      dir = inode
    }
    return dir
  }

  private info(ino: Ino): FileSystem.File.Info {
    const inode = this.inode(ino)
    const size = inode.kind === "file" ? inode.data.length : 4096
    return {
      type: inode.kind === "file" ? "File" : "Directory",
      mtime: Option.none(),
      atime: Option.none(),
      birthtime: Option.none(),
      dev: 1,
      ino: Option.some(ino),
      mode: (inode.kind === "file" ? 0o100000 : 0o040000) | inode.mode,
      nlink: Option.some(1),
      uid: Option.none(),
      gid: Option.none(),
      rdev: Option.none(),
      size: FileSystem.Size(size),
      blksize: Option.none(),
      blocks: Option.none()
    }
  }

  private dataOp(inode: FileInode, op: DataOp): void {
    inode.data = applyData(inode.data, op, false)
    inode.pending.push(op)
  }

  private mkdirIn(parent: DirInode, name: string, mode: number): DirInode {
    const ino = this.nextIno++
    const dir: DirInode = { kind: "dir", ino, mode: mode & 0o7777, entries: new Map(), durable: new Map() }
    this.inodes.set(ino, dir)
    this.link(parent.ino, name, ino)
    return dir
  }

  private link(dir: Ino, name: string, ino: Ino): void {
    this.metaOp([{ dir, name, ino }])
  }

  private unlink(dir: Ino, name: string): void {
    this.metaOp([{ dir, name, ino: undefined }])
  }

  private metaOp(changes: ReadonlyArray<EntryChange>): void {
    for (const change of changes) {
      const entries = this.dir(change.dir).entries
      if (change.ino === undefined) entries.delete(change.name)
      else entries.set(change.name, change.ino)
    }
    this.pending.push({ changes, dirs: Array.from(new Set(changes.map((change) => change.dir))) })
  }

  /**
   * Makes a directory's pending operations durable, with the earlier
   * operations of the other directories a rename ties them to.
   */
  private syncDirectory(ino: Ino): void {
    const needed = new Set<Ino>([ino])
    const flushed = new Set<MetaOp>()
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i]
      if (!op.dirs.some((dir) => needed.has(dir))) continue
      flushed.add(op)
      for (const dir of op.dirs) needed.add(dir)
    }
    for (const op of this.pending) {
      if (!flushed.has(op)) continue
      for (const change of op.changes) {
        const durable = this.dir(change.dir).durable
        if (change.ino === undefined) durable.delete(change.name)
        else durable.set(change.name, change.ino)
      }
    }
    this.pending = this.pending.filter((op) => !flushed.has(op))
  }
}

const sortKeys = (record: Record<string, string>): Snapshot => {
  const out: Record<string, string> = {}
  for (const key of Object.keys(record).sort()) out[key] = record[key]
  return out
}

/**
 * A canonical string for a snapshot, for sets of states.
 *
 * @since 0.1.0
 * @category utils
 */
export const keyOf = (snapshot: Snapshot): string => JSON.stringify(Object.entries(snapshot).sort())

// -- the platform service -------------------------------------------------------

const reasonOf = (code: string): PlatformError.SystemErrorReason => {
  switch (code) {
    case "ENOENT":
      return "NotFound"
    case "EACCES":
      return "PermissionDenied"
    case "EEXIST":
      return "AlreadyExists"
    case "EISDIR":
    case "ENOTDIR":
      return "BadResource"
    case "EBUSY":
      return "Busy"
    default:
      return "Unknown"
  }
}

/**
 * Runs a simulated call as an asynchronous one would run: other fibers get a
 * turn first, so concurrent operations interleave between system calls.
 * `ErrnoError`s become `SystemError`s with the errno error as `cause`; any
 * other exception is a defect.
 */
const call = <A>(method: string, path: string | number, f: () => A): Effect.Effect<A, PlatformError.PlatformError> =>
  Effect.zipRight(
    Effect.yieldNow(),
    Effect.suspend(() => {
      try {
        return Effect.succeed(f())
      } catch (error) {
        if (!(error instanceof ErrnoError)) throw error
        return Effect.fail(
          new PlatformError.SystemError({
            reason: reasonOf(error.code),
            module: "FileSystem",
            method,
            syscall: error.syscall,
            pathOrDescriptor: path,
            description: error.message,
            cause: error
          })
        )
      }
    })
  )

const unsupported = (method: string) =>
  Effect.fail(
    new PlatformError.BadArgument({
      module: "FileSystem",
      method,
      description: "not supported by the power-loss simulation"
    })
  )

class SimulatedFile implements FileSystem.File {
  readonly [FileSystem.FileTypeId]: FileSystem.FileTypeId = FileSystem.FileTypeId
  readonly fd: FileSystem.File.Descriptor

  constructor(private readonly disk: SimulatedDisk, fd: number) {
    this.fd = FileSystem.FileDescriptor(fd)
  }

  get stat() {
    return call("stat", this.fd, () => this.disk.fstat(this.fd))
  }

  get sync() {
    return call("sync", this.fd, () => this.disk.sync(this.fd))
  }

  seek(offset: FileSystem.SizeInput, from: FileSystem.SeekMode) {
    return Effect.sync(() => this.disk.seek(this.fd, Number(offset), from))
  }

  read(buffer: Uint8Array) {
    return call("read", this.fd, () => FileSystem.Size(this.disk.read(this.fd, buffer)))
  }

  readAlloc(size: FileSystem.SizeInput) {
    return call("readAlloc", this.fd, () => {
      const buffer = new Uint8Array(Number(size))
      const read = this.disk.read(this.fd, buffer)
      return read === 0 ? Option.none() : Option.some(buffer.slice(0, read))
    })
  }

  truncate(length?: FileSystem.SizeInput) {
    return call("truncate", this.fd, () => this.disk.truncateFd(this.fd, Number(length ?? 0)))
  }

  write(buffer: Uint8Array) {
    return call("write", this.fd, () => FileSystem.Size(this.disk.write(this.fd, buffer)))
  }

  writeAll(buffer: Uint8Array) {
    return Effect.asVoid(this.write(buffer))
  }
}

/**
 * The platform `FileSystem` over a simulated disk. Calls outside the subset
 * the Client uses fail with a `BadArgument`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fileSystem = (disk: SimulatedDisk): FileSystem.FileSystem =>
  FileSystem.make({
    access: (path) => call("access", path, () => disk.access(path)),
    chmod: () => unsupported("chmod"),
    chown: () => unsupported("chown"),
    copy: () => unsupported("copy"),
    copyFile: () => unsupported("copyFile"),
    link: () => unsupported("link"),
    makeDirectory: (path, options) =>
      call("makeDirectory", path, () => disk.makeDirectory(path, options?.recursive ?? false, options?.mode)),
    makeTempDirectory: () => unsupported("makeTempDirectory"),
    makeTempDirectoryScoped: () => unsupported("makeTempDirectoryScoped"),
    makeTempFile: () => unsupported("makeTempFile"),
    makeTempFileScoped: () => unsupported("makeTempFileScoped"),
    open: (path, options) =>
      Effect.acquireRelease(
        call("open", path, () => disk.open(path, options?.flag ?? "r", options?.mode)),
        (fd) => Effect.sync(() => disk.close(fd))
      ).pipe(Effect.map((fd): FileSystem.File => new SimulatedFile(disk, fd))),
    readDirectory: (path, options) =>
      call("readDirectory", path, () => disk.readDirectory(path, options?.recursive ?? false)),
    readFile: (path) => call("readFile", path, () => disk.readFile(path)),
    readLink: () => unsupported("readLink"),
    realPath: (path) => call("realPath", path, () => disk.realPath(path)),
    remove: (path, options) =>
      call("remove", path, () => disk.remove(path, options?.recursive ?? false, options?.force ?? false)),
    rename: (from, to) => call("rename", from, () => disk.rename(from, to)),
    stat: (path) => call("stat", path, () => disk.stat(path)),
    symlink: () => unsupported("symlink"),
    truncate: () => unsupported("truncate"),
    utimes: () => unsupported("utimes"),
    watch: () => Stream.fail(new PlatformError.BadArgument({ module: "FileSystem", method: "watch" })),
    writeFile: (path, data, options) =>
      call("writeFile", path, () => disk.writeFile(path, data, options?.flag ?? "w", options?.mode))
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (disk: SimulatedDisk): Layer.Layer<FileSystem.FileSystem> =>
  Layer.succeed(FileSystem.FileSystem, fileSystem(disk))
