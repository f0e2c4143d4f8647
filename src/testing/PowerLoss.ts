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
 *   followed by a prefix of its pending operations. A write reaches the
 *   device in blocks (4 KiB pages, `blockSize`), each on its own: every block
 *   it touches holds the new bytes or what it held before, which is the old
 *   data where the file already reached (an overwrite in place never leaves
 *   zeros) and zeros where the write extended it (the size grew, the blocks
 *   were not written, as with delayed allocation or `data=writeback`). The
 *   size after a write that extended the file may stop at any block boundary
 *   short of its end, or at the old size. So one write can land in part, a
 *   commit byte at its end without the data before it, and a later write or
 *   truncation without an earlier overwrite. A truncation lands whole.
 * - A failed fsync of a file (`failSync`, or an `EIO` that `FaultFileSystem`
 *   injects into it) drops the data it was writing from what survives, as
 *   Linux does: a later fsync that succeeds does not write it. The next
 *   fsync of each other descriptor that was open then fails once, with the
 *   same errno.
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
 * - Paths: a path argument of 4096 bytes or more, or with a name of more than
 *   255, fails with `ENAMETOOLONG`, as on Linux. Paths are walked as Linux
 *   walks them: a file or a missing name followed by `/`, `.` or `..` fails
 *   (`ENOTDIR`, `ENOENT`), `.` or `..` at the end of a `rename` or `rm` is
 *   refused, and `mkdir -p` and `rm` take their steps as Node's do.
 *
 * Enumeration is exhaustive and bounded: it throws when a state space exceeds
 * the limit (a count of states, a file's candidate contents), or when building
 * them would take too much (four million paths or 256 MiB of path names over
 * every order the directory changes may land in, before equal states are
 * merged, or a hundred million steps of the search), rather than quietly
 * checking a sample or running for minutes.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Layer from "effect/Layer"
import * as internalCrashStates from "../internal/testing/powerLoss/crashStates.js"
import * as internalDisk from "../internal/testing/powerLoss/disk.js"
import * as internalFileSystem from "../internal/testing/powerLoss/fileSystem.js"

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
export interface ErrnoError extends Error {
  /** `"ENOENT"`, `"EEXIST"`, ...: what Node's error for the same call would carry. */
  readonly code: string
  readonly syscall: string
  readonly path: string
}

/**
 * @since 0.1.0
 * @category errors
 */
export const ErrnoError: new(code: string, syscall: string, path: string) => ErrnoError = internalDisk.ErrnoError

/**
 * @since 0.1.0
 * @category models
 */
export interface CrashStatesOptions {
  /** Leave matching paths (and what is below them) out of the snapshots. */
  readonly omit?: (path: string) => boolean
  /** Maximum number of candidate states examined. Default 200 000. */
  readonly limit?: number
  /**
   * The unit in which a write reaches the device: each block a pending write
   * touches lands or not on its own. Default 4096 (a page). A larger one
   * shows fewer torn states (a big write of a test fits the limit);
   * `Infinity` makes every write land whole or not at all.
   */
  readonly blockSize?: number
}

/**
 * The simulated disk: synchronous, Effect-free system calls that throw
 * `ErrnoError`s, and the states the disk can be found in. `fileSystem`
 * adapts it to the platform service.
 *
 * The system calls take absolute paths (`.` and `..` are resolved, there are
 * no links) and behave as their Node counterparts, errno codes included.
 * Every call that changes the disk is visible at once to reads, and durable
 * as the model in this module's documentation says.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimulatedDisk {
  /** Calls `listener` after every call that changes the volatile or the durable state. */
  subscribe(listener: (call: string) => void): () => void
  /** Number of metadata operations not yet durable (for tests of the model). */
  readonly pendingMetadata: number

  /** What reads see now. */
  volatile(options?: Pick<CrashStatesOptions, "omit">): Snapshot
  /** What the disk holds if the power is cut now and no pending change lands. */
  durableState(options?: Pick<CrashStatesOptions, "omit">): Snapshot
  /**
   * Every state the disk may come back in if the power is cut now,
   * deduplicated. Throws when more than `limit` candidates would be examined.
   */
  crashStates(options?: CrashStatesOptions): Array<Snapshot>

  /** `open(2)` with Node's flag strings (`"r"`, `"w"`, `"wx"`, `"a"`, `"r+"`, ...); returns a descriptor. */
  open(path: string, flag?: FileSystem.OpenFlag, mode?: number): number
  close(fd: number): void
  /** Writes all of `bytes` at the descriptor's position (at the end with an append flag). */
  write(fd: number, bytes: Uint8Array): number
  /** Reads from the descriptor's position into `buffer`; returns the number of bytes read (0 at the end). */
  read(fd: number, buffer: Uint8Array): number
  seek(fd: number, offset: number, from: FileSystem.SeekMode): void
  /** `ftruncate(2)`. */
  truncateFd(fd: number, length: number): void
  /** `fsync(2)`: a file's data and size, or a directory's entry changes. */
  sync(fd: number): void
  /**
   * What an `fsync(2)` of a file that fails with an I/O error leaves, as
   * Linux handles it since 4.13: the pages it was writing are marked clean,
   * so reads still see their data but no later fsync writes it, and a crash
   * finds the file as of its last successful fsync (plus later writes).
   * Retrying the fsync does not bring the data back: only writing it again
   * does. The error (`code`, `EIO` unless told) is also reported once by the
   * next `sync` of every other descriptor of the file that was open when it
   * happened (after that `sync` has written what is dirty), as Linux does;
   * one opened later does not see it. A directory's pending entry changes are left as they are. The
   * caller reports the error (`FaultFileSystem` calls this for an `EIO` or
   * `ENOSPC` it injects into `File.sync` over a simulated disk).
   */
  failSync(fd: number, code?: "EIO" | "ENOSPC"): void
  fstat(fd: number): FileSystem.File.Info
  stat(path: string): FileSystem.File.Info
  access(path: string): void
  realPath(path: string): string
  readFile(path: string): Uint8Array
  /** `open`, `write`, `close` (flag `"w"` unless told). */
  writeFile(path: string, data: Uint8Array, flag?: FileSystem.OpenFlag, mode?: number): void
  /** Entry names, sorted; with `recursive`, relative paths of the whole subtree. */
  readDirectory(path: string, recursive: boolean): Array<string>
  /** `mkdir(2)`; with `recursive`, the missing ancestors too and no error if it exists. */
  makeDirectory(path: string, recursive: boolean, mode?: number): void
  /** `rename(2)`: one operation, even across two directories. */
  rename(from: string, to: string): void
  /** `rm`, as Node does it: children first, then the directory. */
  remove(path: string, recursive: boolean, force: boolean): void
}

/**
 * A simulated disk whose durable (and volatile) state is `initial`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const SimulatedDisk: new(initial?: InitialState) => SimulatedDisk = internalDisk.SimulatedDisk

/**
 * A canonical string for a snapshot, for sets of states.
 *
 * @since 0.1.0
 * @category utils
 */
export const keyOf: (snapshot: Snapshot) => string = internalCrashStates.keyOf

/**
 * The platform `FileSystem` over a simulated disk. Calls outside the subset
 * the Client uses fail with a `BadArgument`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fileSystem: (disk: SimulatedDisk) => FileSystem.FileSystem = internalFileSystem.fileSystem

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (disk: SimulatedDisk): Layer.Layer<FileSystem.FileSystem> =>
  Layer.succeed(FileSystem.FileSystem, fileSystem(disk))
