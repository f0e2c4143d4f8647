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

/**
 * Where a path argument leads, as Linux's path walk finds it: every
 * component but the last walked (each one an existing directory), the last
 * one not yet looked up.
 */
type Walked =
  /** The path ends at a directory the walk reached: `/`, or a last component `.` or `..`. */
  | { readonly _tag: "Dir"; readonly dir: DirInode; readonly segments: ReadonlyArray<string> }
  /** The path ends in `name` inside `parent`; `trailing`: a slash follows it (it must be a directory). */
  | {
    readonly _tag: "Entry"
    readonly parent: DirInode
    readonly segments: ReadonlyArray<string>
    readonly name: string
    readonly trailing: boolean
  }

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
    const walked = this.walk("open", path)
    let ino: Ino
    let created = false
    if (walked._tag === "Dir") {
      if (flags.create && flags.exclusive) throw new ErrnoError("EEXIST", "open", path)
      ino = walked.dir.ino
    } else {
      // A name with a slash after it can only be a directory, which open never creates.
      if (flags.create && walked.trailing) throw new ErrnoError("EISDIR", "open", path)
      const existing = this.entry("open", path, walked)
      if (existing !== undefined) {
        if (flags.create && flags.exclusive) throw new ErrnoError("EEXIST", "open", path)
        ino = existing
      } else {
        if (!flags.create) throw new ErrnoError("ENOENT", "open", path)
        ino = this.state.newFile(mode).ino
        this.link(walked.parent.ino, walked.name, ino)
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
    // Node's `realpath` resolves `.` and `..` by the path's text, then looks the result up.
    const segments = segmentsOf(path)
    this.lookup("realpath", pathOf(segments))
    return pathOf(segments)
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
    if (!recursive) return this.mkdir(path, mode)
    // Node's recursive mkdir: mkdir the path; where a directory on the way is
    // missing, first the path up to its last slash (by the text), then again.
    // A name on the way that is not a directory is ENOTDIR; the path itself
    // not a directory, EEXIST.
    const todo = [path]
    while (todo.length > 0) {
      const next = todo.pop()!
      try {
        this.mkdir(next, mode)
      } catch (error) {
        if (!(error instanceof ErrnoError)) throw error
        if (error.code === "ENOENT") {
          const up = next.slice(0, next.lastIndexOf("/"))
          if (up !== next && up !== "") {
            todo.push(next, up)
            continue
          }
        }
        if (error.code !== "EEXIST") throw new ErrnoError(error.code, "mkdir", path)
        if (this.state.inode(this.lookup("mkdir", next)).kind !== "dir") {
          throw new ErrnoError(todo.length > 0 ? "ENOTDIR" : "EEXIST", "mkdir", path)
        }
      }
    }
  }

  private mkdir(path: string, mode: number): void {
    const walked = this.walk("mkdir", path)
    // An existing name is EEXIST, even a file with a slash after it.
    if (walked._tag === "Dir" || this.entry("mkdir", path, { ...walked, trailing: false }) !== undefined) {
      throw new ErrnoError("EEXIST", "mkdir", path)
    }
    this.mkdirIn(walked.parent, walked.name, mode)
    this.notify("mkdir")
  }

  rename(from: string, to: string): void {
    // As Linux orders it: both directories walked, a `.`, `..` or `/` at
    // either end refused, then the source looked up before the target's name
    // is (a missing source is ENOENT, whatever the target); a slash after
    // either name needs a directory to move.
    const source = this.walk("rename", from)
    const target = this.walk("rename", to)
    if (source._tag === "Dir" || target._tag === "Dir") throw new ErrnoError("EBUSY", "rename", from)
    const ino = this.entry("rename", from, { ...source, trailing: false })
    if (ino === undefined) throw new ErrnoError("ENOENT", "rename", from)
    // The target's name is looked up (a name too long is refused) before a slash is checked.
    const existing = this.entry("rename", to, { ...target, trailing: false })
    const inode = this.state.inode(ino)
    if (inode.kind !== "dir" && (source.trailing || target.trailing)) throw new ErrnoError("ENOTDIR", "rename", from)
    const sourceName = source.name
    const targetName = target.name
    if (existing === ino) return
    if (inode.kind === "dir") {
      const fromPath = pathOf([...source.segments, sourceName])
      if (pathOf([...target.segments, targetName]).startsWith(fromPath + "/")) {
        throw new ErrnoError("EINVAL", "rename", from)
      }
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
      { dir: source.parent.ino, name: sourceName, ino: undefined },
      { dir: target.parent.ino, name: targetName, ino }
    ])
    this.notify("rename")
  }

  remove(path: string, recursive: boolean, force: boolean): void {
    // Node's `rm`: an lstat first (a missing path is done with `force`), then
    // an unlink, or for a directory its children and then an rmdir. rmdir
    // refuses a path ending in `.` (EINVAL, before anything is removed), `..`
    // (ENOTEMPTY, which Node answers by removing the children of the
    // directory it names and trying again) and `/` (EBUSY).
    let ino: Ino
    try {
      ino = this.lookup("rm", path)
    } catch (error) {
      if (force && error instanceof ErrnoError && error.code === "ENOENT") return
      throw error
    }
    const inode = this.state.inode(ino)
    if (inode.kind === "dir" && !recursive) throw new ErrnoError("ERR_FS_EISDIR", "rm", path)
    const walked = this.walk("rm", path)
    if (walked._tag === "Entry") return this.removeTree(walked.parent, walked.name, inode)
    const last = path.split("/").filter((name) => name !== "").pop()
    if (last !== "..") throw new ErrnoError(last === "." ? "EINVAL" : "EBUSY", "rm", path)
    // Each child by its path through this one, which stops resolving once
    // the directory it goes through is removed; then rmdir again, done if
    // the path no longer resolves.
    for (const name of Array.from(walked.dir.entries.keys())) {
      const child = `${path}/${name}`
      let ino: Ino
      try {
        ino = this.lookup("rm", child)
      } catch (error) {
        if (error instanceof ErrnoError && error.code === "ENOENT") continue
        throw error
      }
      const at = this.walk("rm", child) as Extract<Walked, { _tag: "Entry" }>
      this.removeTree(at.parent, at.name, this.state.inode(ino))
    }
    try {
      this.walk("rm", path)
    } catch (error) {
      if (error instanceof ErrnoError && error.code === "ENOENT") return
      throw error
    }
    throw new ErrnoError("ENOTEMPTY", "rm", path)
  }

  /** Removes `name` from `parent` as Node's `rm` does: children first, then the directory. */
  private removeTree(parent: DirInode, name: string, inode: Inode): void {
    // Iterative: a tree may be deeper than the call stack.
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
   * Walks a path argument as Linux does: every component but the last must be
   * an existing directory (ENOENT, ENOTDIR), `.` stays and `..` goes up (not
   * above `/`) only from a directory the walk reached, so a missing name or a
   * file before a `..` fails the walk. Refused as Linux refuses it: a path of
   * `PATH_MAX` bytes or more (with its terminating NUL, 4096), or a name of
   * more than `NAME_MAX` (255) met while walking it, in order (the last name
   * is checked where it is looked up, see `entry`).
   */
  private walk(syscall: string, path: string): Walked {
    if (encoder.encode(path).length >= PATH_MAX) throw new ErrnoError("ENAMETOOLONG", syscall, path)
    const names = path.split("/").filter((name) => name !== "")
    const line: Array<DirInode> = [this.state.dir(ROOT_INO)]
    const segments: Array<string> = []
    for (let i = 0; i < names.length; i++) {
      const name = names[i]
      if (name === ".") continue
      if (name === "..") {
        if (line.length > 1) {
          line.pop()
          segments.pop()
        }
        continue
      }
      const dir = line[line.length - 1]
      if (i === names.length - 1) {
        return { _tag: "Entry", parent: dir, segments, name, trailing: path.endsWith("/") }
      }
      if (encoder.encode(name).length > NAME_MAX) throw new ErrnoError("ENAMETOOLONG", syscall, path)
      const ino = dir.entries.get(name)
      if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
      const inode = this.state.inode(ino)
      if (inode.kind !== "dir") throw new ErrnoError("ENOTDIR", syscall, path)
      line.push(inode)
      segments.push(name)
    }
    return { _tag: "Dir", dir: line[line.length - 1], segments }
  }

  /** The last name of a walked path, looked up: `undefined` when missing; ENOTDIR for a file with a slash after it. */
  private entry(syscall: string, path: string, walked: Extract<Walked, { _tag: "Entry" }>): Ino | undefined {
    if (encoder.encode(walked.name).length > NAME_MAX) throw new ErrnoError("ENAMETOOLONG", syscall, path)
    const ino = walked.parent.entries.get(walked.name)
    if (ino !== undefined && walked.trailing && this.state.inode(ino).kind !== "dir") {
      throw new ErrnoError("ENOTDIR", syscall, path)
    }
    return ino
  }

  /** What a path names: ENOENT when it does not exist. */
  private lookup(syscall: string, path: string): Ino {
    const walked = this.walk(syscall, path)
    if (walked._tag === "Dir") return walked.dir.ino
    const ino = this.entry(syscall, path, walked)
    if (ino === undefined) throw new ErrnoError("ENOENT", syscall, path)
    return ino
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
