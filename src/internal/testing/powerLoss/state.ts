/**
 * The state of a simulated disk: inodes with what reads see (volatile) and
 * what survives a power cut (durable), the changes pending between the two,
 * and what an fsync makes durable. The system calls (`disk.ts`) change it;
 * the crash-state enumeration (`crashStates.ts`) reads it.
 *
 * @internal
 */
import type { InitialState } from "../../../testing/PowerLoss.js"

/** @internal */
export type Ino = number

/** @internal */
export type DataOp =
  | { readonly _tag: "Write"; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly _tag: "Truncate"; readonly length: number }

/** @internal */
export interface FileInode {
  readonly kind: "file"
  readonly ino: Ino
  mode: number
  data: Uint8Array
  durable: Uint8Array
  /** Writes and truncations since the last fsync, in order. */
  pending: Array<DataOp>
  /** How many fsyncs of the file failed: a descriptor that has not seen the latest one reports it (`errseq`). */
  syncErrors: number
  /** The errno of the latest failure, which those descriptors report. */
  syncError: "EIO" | "ENOSPC"
}

/** @internal */
export interface DirInode {
  readonly kind: "dir"
  readonly ino: Ino
  mode: number
  readonly entries: Map<string, Ino>
  readonly durable: Map<string, Ino>
}

/** @internal */
export type Inode = FileInode | DirInode

/**
 * One entry change; `ino === undefined` removes the name.
 *
 * @internal
 */
export interface EntryChange {
  readonly dir: Ino
  readonly name: string
  readonly ino: Ino | undefined
}

/**
 * One atomic metadata operation (create, mkdir, unlink, rmdir, rename) and
 * the directories whose order it is part of.
 *
 * @internal
 */
export interface MetaOp {
  readonly changes: ReadonlyArray<EntryChange>
  readonly dirs: ReadonlyArray<Ino>
}

/** @internal */
export const ROOT_INO: Ino = 0

const encoder = new TextEncoder()

/**
 * `data` after `op`; with `zeros`, a write leaves zeros instead of its bytes
 * (the size grew but the blocks were not written).
 *
 * @internal
 */
export const applyData = (data: Uint8Array, op: DataOp, zeros: boolean): Uint8Array => {
  // A write of nothing changes nothing, not even the size (POSIX).
  if (op._tag === "Write" && op.bytes.length === 0) return data
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
 * The path's segments, with `.` and `..` resolved lexically (the simulated
 * disk has no links).
 *
 * @internal
 */
export const segmentsOf = (path: string): Array<string> => {
  const out: Array<string> = []
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue
    if (segment === "..") out.pop()
    else out.push(segment)
  }
  return out
}

/** @internal */
export const pathOf = (segments: ReadonlyArray<string>): string => "/" + segments.join("/")

/** @internal */
export class DiskState {
  readonly inodes = new Map<Ino, Inode>()
  /** Metadata operations not yet durable, in the order they were made. */
  pending: Array<MetaOp> = []
  private nextIno = ROOT_INO + 1

  /** A disk whose durable and volatile states are both `initial`. */
  constructor(initial: InitialState) {
    this.inodes.set(ROOT_INO, { kind: "dir", ino: ROOT_INO, mode: 0o755, entries: new Map(), durable: new Map() })
    if (typeof initial !== "object" || initial === null || Array.isArray(initial)) {
      throw new Error(`initial state: expected an object of absolute paths, got ${String(initial)}`)
    }
    for (const [path, content] of Object.entries(initial)) {
      // A relative or empty path was taken as absolute or dropped, content of another type failed later.
      if (!path.startsWith("/") || segmentsOf(path).length === 0) {
        throw new Error(`initial state: ${JSON.stringify(path)} is not an absolute path below /`)
      }
      if (typeof content !== "string" && !(content instanceof Uint8Array)) {
        throw new Error(`initial state: ${path} must be a string or a Uint8Array, got ${typeof content}`)
      }
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
          this.inodes.set(ino, {
            kind: "file",
            ino,
            mode: 0o644,
            data,
            durable: data,
            pending: [],
            syncErrors: 0,
            syncError: "EIO"
          })
        } else {
          this.inodes.set(ino, { kind: "dir", ino, mode: 0o755, entries: new Map(), durable: new Map() })
        }
        dir.entries.set(name, ino)
        dir.durable.set(name, ino)
        if (!last) dir = this.dir(ino)
      })
    }
  }

  inode(ino: Ino): Inode {
    const inode = this.inodes.get(ino)
    if (inode === undefined) throw new Error(`power-loss simulation: no inode ${ino}`)
    return inode
  }

  dir(ino: Ino): DirInode {
    const inode = this.inode(ino)
    if (inode.kind !== "dir") throw new Error(`power-loss simulation: inode ${ino} is not a directory`)
    return inode
  }

  fileInode(ino: Ino): FileInode {
    const inode = this.inode(ino)
    if (inode.kind !== "file") throw new Error(`power-loss simulation: inode ${ino} is not a file`)
    return inode
  }

  /** A new empty file, not yet linked into any directory. */
  newFile(mode: number): FileInode {
    const ino = this.nextIno++
    const empty = new Uint8Array(0)
    const file: FileInode = {
      kind: "file",
      ino,
      mode: mode & 0o7777,
      data: empty,
      durable: empty,
      pending: [],
      syncErrors: 0,
      syncError: "EIO"
    }
    this.inodes.set(ino, file)
    return file
  }

  /** A new empty directory, not yet linked into any directory. */
  newDir(mode: number): DirInode {
    const ino = this.nextIno++
    const dir: DirInode = { kind: "dir", ino, mode: mode & 0o7777, entries: new Map(), durable: new Map() }
    this.inodes.set(ino, dir)
    return dir
  }

  /** A write or truncation: visible at once, durable at the file's next fsync. */
  dataOp(inode: FileInode, op: DataOp): void {
    inode.data = applyData(inode.data, op, false)
    inode.pending.push(op)
  }

  /** Entry changes made as one operation: visible at once, durable at a directory fsync. */
  metaOp(changes: ReadonlyArray<EntryChange>): void {
    for (const change of changes) {
      const entries = this.dir(change.dir).entries
      if (change.ino === undefined) entries.delete(change.name)
      else entries.set(change.name, change.ino)
    }
    this.pending.push({ changes, dirs: Array.from(new Set(changes.map((change) => change.dir))) })
  }

  /**
   * fsync of a regular file: its data and size, not its name. What becomes
   * durable is the pending operations applied to the durable data, which is
   * what reads see unless an earlier fsync failed (`failSync`).
   */
  syncFile(inode: FileInode): void {
    let durable = inode.durable
    for (const op of inode.pending) durable = applyData(durable, op, false)
    inode.durable = durable
    inode.pending = []
  }

  /**
   * An fsync of a regular file that failed (an I/O error), as Linux handles
   * it since 4.13: the pages it was writing are marked clean. Reads still see
   * their data, no later fsync writes it, and the device is taken to hold
   * none of it: a crash finds the file as of its last successful fsync, with
   * its truncations (the inode's size, not pages) and later writes pending.
   */
  failSync(inode: FileInode, code: "EIO" | "ENOSPC"): void {
    // A truncation is the inode's size, not a page: the next fsync still makes it durable.
    inode.pending = inode.pending.filter((op) => op._tag === "Truncate")
    inode.syncErrors++
    inode.syncError = code
  }

  /**
   * fsync of a directory: its pending operations become durable, with the
   * earlier operations of the other directories a rename ties them to (each
   * directory's operations land in order).
   */
  syncDirectory(ino: Ino): void {
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
