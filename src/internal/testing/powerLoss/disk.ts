/**
 * The system calls of the simulated disk: synchronous, Effect-free, with the
 * path resolution, open flags, descriptors and errno codes of their POSIX
 * counterparts (as Node reports them), over the state of `state.ts`.
 *
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Option from "effect/Option"
import type * as Api from "../../../testing/PowerLoss.js"
import * as crash from "./crashStates.js"
import { type DirInode, DiskState, type Ino, type Inode, pathOf, ROOT_INO, segmentsOf } from "./state.js"

/** @internal */
export class ErrnoError extends Error {
  constructor(readonly code: string, readonly syscall: string, readonly path: string) {
    super(`${code}: ${syscall} '${path}'`)
    this.name = "ErrnoError"
  }
}

interface Handle {
  readonly ino: Ino
  readonly readable: boolean
  readonly writable: boolean
  readonly append: boolean
  position: number
  closed: boolean
  /** The file's failed fsyncs this descriptor has reported (see `sync`). */
  seenErrors: number
}

const PATH_MAX = 4096
const NAME_MAX = 255
const encoder = new TextEncoder()

/** Parsed open flags, as `fs.open` reads them. */
const parseFlag = (flag: FileSystem.OpenFlag) => ({
  readable: flag.startsWith("r") || flag.endsWith("+"),
  writable: flag !== "r",
  create: flag.startsWith("w") || flag.startsWith("a"),
  exclusive: flag.includes("x"),
  truncate: flag.startsWith("w"),
  append: flag.startsWith("a")
})

/** @internal */
export class SimulatedDisk implements Api.SimulatedDisk {
  private readonly state: DiskState
  private readonly handles = new Map<number, Handle>()
  private nextFd = 3
  private readonly listeners = new Set<(call: string) => void>()

  constructor(initial: Api.InitialState = {}) {
    this.state = new DiskState(initial)
  }

  subscribe(listener: (call: string) => void): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  get pendingMetadata(): number {
    return this.state.pending.length
  }

  // -- state inspection -------------------------------------------------------

  volatile(options?: Pick<Api.CrashStatesOptions, "omit">): Api.Snapshot {
    return crash.volatile(this.state, options)
  }

  durableState(options?: Pick<Api.CrashStatesOptions, "omit">): Api.Snapshot {
    return crash.durable(this.state, options)
  }

  crashStates(options?: Api.CrashStatesOptions): Array<Api.Snapshot> {
    return crash.crashStates(this.state, options)
  }

  // -- system calls -----------------------------------------------------------

  open(path: string, flag: FileSystem.OpenFlag = "r", mode = 0o666): number {
    const flags = parseFlag(flag)
    const segments = this.resolve("open", path)
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
        ino = this.state.newFile(mode).ino
        this.link(parent.ino, name, ino)
        created = true
      }
    }
    const inode = this.state.inode(ino)
    if (inode.kind === "dir" && flags.writable) throw new ErrnoError("EISDIR", "open", path)
    const changed = created || (inode.kind === "file" && flags.truncate && inode.data.length > 0)
    if (inode.kind === "file" && flags.truncate && inode.data.length > 0) {
      this.state.dataOp(inode, { _tag: "Truncate", length: 0 })
    }
    const fd = this.nextFd++
    this.handles.set(fd, {
      ino,
      readable: flags.readable,
      writable: flags.writable,
      append: flags.append,
      position: 0,
      closed: false,
      seenErrors: inode.kind === "file" ? inode.syncErrors : 0
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
    const inode = this.state.inode(handle.ino)
    if (inode.kind === "dir") throw new ErrnoError("EISDIR", "write", String(fd))
    if (!handle.writable) throw new ErrnoError("EBADF", "write", String(fd))
    const offset = handle.append ? inode.data.length : handle.position
    this.state.dataOp(inode, { _tag: "Write", offset, bytes: bytes.slice() })
    handle.position = offset + bytes.length
    this.notify("write")
    return bytes.length
  }

  read(fd: number, buffer: Uint8Array): number {
    const handle = this.handle("read", fd)
    const inode = this.state.inode(handle.ino)
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
    const inode = this.state.inode(handle.ino)
    if (inode.kind === "dir" || !handle.writable) throw new ErrnoError("EINVAL", "ftruncate", String(fd))
    this.state.dataOp(inode, { _tag: "Truncate", length })
    if (handle.position > length && !handle.append) handle.position = length
    this.notify("truncate")
  }

  sync(fd: number): void {
    const handle = this.handle("fsync", fd)
    const inode = this.state.inode(handle.ino)
    if (inode.kind === "dir") {
      this.state.syncDirectory(inode.ino)
      this.notify("fsync")
      return
    }
    this.state.syncFile(inode)
    this.notify("fsync")
    // As Linux reports a failed write-back (errseq, since 4.13): once to each
    // descriptor that was open when it happened and has not reported it yet,
    // with its errno, after writing what is dirty now. A descriptor opened
    // later does not see it.
    if (handle.seenErrors !== inode.syncErrors) {
      handle.seenErrors = inode.syncErrors
      throw new ErrnoError(inode.syncError, "fsync", String(fd))
    }
  }

  failSync(fd: number, code: "EIO" | "ENOSPC" = "EIO"): void {
    const handle = this.handle("fsync", fd)
    const inode = this.state.inode(handle.ino)
    if (inode.kind === "file") {
      this.state.failSync(inode, code)
      // The failing call is this descriptor's report of it.
      handle.seenErrors = inode.syncErrors
    }
    this.notify("fsync (failed)")
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
    return pathOf(this.resolve("realpath", path))
  }

  readFile(path: string): Uint8Array {
    const inode = this.state.inode(this.lookup("open", path))
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
    const inode = this.state.inode(this.lookup("scandir", path))
    if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", "scandir", path)
    const out: Array<string> = []
    // Depth first, each directory's names sorted; iterative (a tree may be deeper than the call stack).
    const stack: Array<readonly [DirInode, string]> = [[inode, ""]]
    while (stack.length > 0) {
      const [dir, prefix] = stack.pop()!
      const below: Array<readonly [DirInode, string]> = []
      for (const name of Array.from(dir.entries.keys()).sort()) {
        const child = this.state.inode(dir.entries.get(name)!)
        out.push(prefix + name)
        if (recursive && child.kind === "dir") below.push([child, prefix + name + "/"])
      }
      for (let i = below.length - 1; i >= 0; i--) stack.push(below[i])
    }
    return out
  }

  makeDirectory(path: string, recursive: boolean, mode = 0o777): void {
    const segments = this.resolve("mkdir", path)
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
    let dir = this.state.dir(ROOT_INO)
    for (const name of segments) {
      const existing = dir.entries.get(name)
      if (existing === undefined) {
        dir = this.mkdirIn(dir, name, mode)
        this.notify("mkdir")
        continue
      }
      const inode = this.state.inode(existing)
      if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", "mkdir", path)
      dir = inode
    }
  }

  rename(from: string, to: string): void {
    // The source is looked up before the target's name is: a missing source is ENOENT, whatever the target.
    const fromSegments = this.resolve("rename", from)
    if (fromSegments.length === 0) throw new ErrnoError("EBUSY", "rename", from)
    const source = this.parentOf("rename", from, fromSegments)
    const sourceName = fromSegments[fromSegments.length - 1]
    const ino = source.entries.get(sourceName)
    if (ino === undefined) throw new ErrnoError("ENOENT", "rename", from)
    const toSegments = this.resolve("rename", to)
    if (toSegments.length === 0) throw new ErrnoError("EBUSY", "rename", from)
    const target = this.parentOf("rename", to, toSegments)
    const targetName = toSegments[toSegments.length - 1]
    const existing = target.entries.get(targetName)
    if (existing === ino) return
    const inode = this.state.inode(ino)
    if (inode.kind === "dir") {
      const fromPath = pathOf(fromSegments)
      if (pathOf(toSegments).startsWith(fromPath + "/")) throw new ErrnoError("EINVAL", "rename", from)
    }
    if (existing !== undefined) {
      const replaced = this.state.inode(existing)
      if (replaced.kind === "dir") {
        if (inode.kind !== "dir") throw new ErrnoError("EISDIR", "rename", to)
        if (replaced.entries.size > 0) throw new ErrnoError("ENOTEMPTY", "rename", to)
      } else if (inode.kind === "dir") {
        throw new ErrnoError("ENOTDIR", "rename", to)
      }
    }
    // One operation touching both directories: it lands whole or not at all.
    this.state.metaOp([
      { dir: source.ino, name: sourceName, ino: undefined },
      { dir: target.ino, name: targetName, ino }
    ])
    this.notify("rename")
  }

  remove(path: string, recursive: boolean, force: boolean): void {
    const segments = this.resolve("rm", path)
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
    const inode = this.state.inode(ino)
    if (inode.kind === "dir" && !recursive) throw new ErrnoError("ERR_FS_EISDIR", "rm", path)
    // As Node's `rm` does: children first, then the directory. Iterative:
    // a tree may be deeper than the call stack.
    const stack: Array<{ readonly dir: DirInode; readonly entry: string; readonly inode: Inode; listed: boolean }> = [
      { dir: parent, entry: name, inode, listed: false }
    ]
    while (stack.length > 0) {
      const top = stack[stack.length - 1]
      if (top.inode.kind === "dir" && !top.listed) {
        top.listed = true
        const children = Array.from(top.inode.entries)
        for (let i = children.length - 1; i >= 0; i--) {
          const [childName, child] = children[i]
          stack.push({ dir: top.inode, entry: childName, inode: this.state.inode(child), listed: false })
        }
        continue
      }
      stack.pop()
      this.unlink(top.dir.ino, top.entry)
      this.notify("rm")
    }
  }

  // -- internals --------------------------------------------------------------

  private notify(call: string): void {
    for (const listener of this.listeners) listener(call)
  }

  private handle(syscall: string, fd: number): Handle {
    const handle = this.handles.get(fd)
    if (handle === undefined || handle.closed) throw new ErrnoError("EBADF", syscall, String(fd))
    return handle
  }

  /**
   * The segments of a path argument (`.` and `..` resolved), refused as Linux
   * refuses it: a path of `PATH_MAX` bytes or more (with its terminating NUL,
   * 4096; `realpath` walks the path a component at a time and has no such
   * limit), or a name of more than `NAME_MAX` (255) met while walking it, in
   * order: a name is reached only through existing directories before it (a
   * missing one is `ENOENT` first, a file `ENOTDIR`, which the caller's walk
   * reports), and a long name followed by `..` is still refused.
   */
  private resolve(syscall: string, path: string): Array<string> {
    if (syscall !== "realpath" && encoder.encode(path).length >= PATH_MAX) {
      throw new ErrnoError("ENAMETOOLONG", syscall, path)
    }
    const line: Array<Inode> = [this.state.dir(ROOT_INO)]
    for (const name of path.split("/")) {
      if (name === "" || name === ".") continue
      if (name === "..") {
        if (line.length > 1) line.pop()
        continue
      }
      // Below a file, or below a missing name: the walk stops there, with the error the caller finds.
      const at = line[line.length - 1]
      if (at.kind !== "dir") break
      if (encoder.encode(name).length > NAME_MAX) throw new ErrnoError("ENAMETOOLONG", syscall, path)
      const next = at.entries.get(name)
      if (next === undefined) break
      line.push(this.state.inode(next))
    }
    return segmentsOf(path)
  }

  private lookup(syscall: string, path: string): Ino {
    const segments = this.resolve(syscall, path)
    if (segments.length === 0) return ROOT_INO
    const ino = this.parentOf(syscall, path, segments).entries.get(segments[segments.length - 1])
    if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
    return ino
  }

  /** The directory holding the last segment: ENOENT or ENOTDIR on the way. */
  private parentOf(syscall: string, path: string, segments: ReadonlyArray<string>): DirInode {
    let dir = this.state.dir(ROOT_INO)
    for (const name of segments.slice(0, -1)) {
      const ino = dir.entries.get(name)
      if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
      const inode = this.state.inode(ino)
      if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", syscall, path)
      dir = inode
    }
    return dir
  }

  private info(ino: Ino): FileSystem.File.Info {
    const inode = this.state.inode(ino)
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

  private mkdirIn(parent: DirInode, name: string, mode: number): DirInode {
    const dir = this.state.newDir(mode)
    this.link(parent.ino, name, dir.ino)
    return dir
  }

  private link(dir: Ino, name: string, ino: Ino): void {
    this.state.metaOp([{ dir, name, ino }])
  }

  private unlink(dir: Ino, name: string): void {
    this.state.metaOp([{ dir, name, ino: undefined }])
  }
}
