/**
 * The platform `FileSystem` over a simulated disk: each method runs the
 * disk's system call and reports its errno the way the Node platform does.
 *
 * @internal
 */
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Api from "../../../testing/PowerLoss.js"
import { declareStorage } from "../../atomic.js"
import { SyncFailed } from "../syncFailure.js"
import { ErrnoError } from "./disk.js"

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

  constructor(private readonly disk: Api.SimulatedDisk, fd: number) {
    this.fd = FileSystem.FileDescriptor(fd)
  }

  get stat() {
    return call("stat", this.fd, () => this.disk.fstat(this.fd))
  }

  get sync() {
    return call("sync", this.fd, () => this.disk.sync(this.fd))
  }

  [SyncFailed](code: "EIO" | "ENOSPC") {
    this.disk.failSync(this.fd, code)
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
    // The simulated write never writes short.
    return Effect.asVoid(this.write(buffer))
  }
}

/**
 * Every file system over one disk is one storage: Clients on any of them
 * share what they know durable, as Clients on the real file system do.
 *
 * @internal
 */
export const fileSystem = (disk: Api.SimulatedDisk): FileSystem.FileSystem =>
  declareStorage(
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
    }),
    disk
  )
