/** @internal */
import { SystemError, type SystemErrorReason } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Api from "../../testing/FaultFileSystem.js"
import { forgetAllDurable } from "../atomic.js"
import { failableSync, SyncFailed } from "./syncFailure.js"

/** @internal */
export const TypeId: typeof Api.TypeId = Symbol.for("effect-persistence/FaultFileSystem") as typeof Api.TypeId

type Errno = Exclude<Api.Fault, "interrupt">

const errnos: Record<Errno, { readonly errno: number; readonly reason: SystemErrorReason }> = {
  ENOENT: { errno: -2, reason: "NotFound" },
  EACCES: { errno: -13, reason: "PermissionDenied" },
  // As the Node platform does: these codes have no reason of their own.
  ENOSPC: { errno: -28, reason: "Unknown" },
  EIO: { errno: -5, reason: "Unknown" }
}

const systemError = (code: Errno, method: string, target: string | number): SystemError => {
  const { errno, reason } = errnos[code]
  const cause = Object.assign(new Error(`${code}: injected fault, ${method} ${JSON.stringify(target)}`), {
    code,
    errno,
    syscall: method
  })
  return new SystemError({
    reason,
    module: "FileSystem",
    method,
    pathOrDescriptor: target,
    description: cause.message,
    cause
  })
}

const FAULTS: ReadonlyArray<unknown> = ["ENOENT", "EACCES", "ENOSPC", "EIO", "interrupt"]

/**
 * Why a plan is refused, if it is: a plan that names no call (`failAt` 0,
 * `"1"`, 1.5) or no known fault would inject nothing, and a test built on it
 * would pass without testing anything.
 */
const refusal = (plan: unknown): string | undefined => {
  if (plan === undefined) return undefined
  if (typeof plan !== "object" || plan === null) return `a FaultPlan is an object, got ${String(plan)}`
  const { failAt, fault } = plan as Record<string, unknown>
  if (!(Number.isSafeInteger(failAt) && (failAt as number) >= 1)) {
    return `FaultPlan.failAt must be an integer from 1 (the call to fail), got ${String(failAt)}`
  }
  if (!FAULTS.includes(fault)) return `FaultPlan.fault must be one of ${FAULTS.join(", ")}, got ${String(fault)}`
  return undefined
}

/** Dies, naming what is wrong, for a plan that would inject nothing. */
const checked = (plan: unknown): Effect.Effect<void> =>
  Effect.suspend(() => {
    const refused = refusal(plan)
    return refused === undefined ? Effect.void : Effect.dieMessage(`FaultFileSystem: ${refused}`)
  })

/** @internal */
export const wrap = (fs: FileSystem.FileSystem, plan?: Api.FaultPlan): Api.FaultFileSystemService => {
  const refused = refusal(plan)
  if (refused !== undefined) throw new Error(`FaultFileSystem: ${refused}`)
  let current: Api.FaultPlan | undefined = plan
  let count = 0
  let hit: Option.Option<Api.FaultHit> = Option.none()

  // Counts one call when it runs, and applies the fault if it is its turn.
  const call = <A, E, R>(
    method: string,
    target: string | number,
    run: () => Effect.Effect<A, E, R>,
    failed?: (fault: Errno) => void
  ): Effect.Effect<A, E | SystemError, R> =>
    Effect.suspend((): Effect.Effect<A, E | SystemError, R> => {
      const n = ++count
      if (current === undefined || current.failAt !== n) return run()
      const fault = current.fault
      if (fault !== "interrupt") {
        hit = Option.some({ fault, call: n, method, target, deferred: false })
        failed?.(fault)
        return Effect.fail(systemError(fault, method, target))
      }
      return Effect.checkInterruptible((interruptible) =>
        Effect.withFiberRuntime<A, E, R>((fiber) => {
          hit = Option.some({ fault, call: n, method, target, deferred: !interruptible })
          // A real interruption signal, as `Fiber.interrupt` from another fiber
          // sends: error handlers are skipped, and in an uninterruptible region
          // it waits until the region ends.
          fiber.unsafeInterruptAsFork(fiber.id())
          return interruptible ? Effect.interrupt : run()
        })
      )
    })

  const wrapFile = (file: FileSystem.File): FileSystem.File => {
    const fd = file.fd
    return {
      [FileSystem.FileTypeId]: FileSystem.FileTypeId,
      fd,
      stat: call("File.stat", fd, () => file.stat),
      seek: (offset, from) => file.seek(offset, from),
      // An I/O error or a full device reported by fsync means the write-back
      // failed: a file system that models it drops the data being written.
      sync: call("File.sync", fd, () => file.sync, (fault) => {
        if (fault === "EIO" || fault === "ENOSPC") failableSync(file)?.[SyncFailed](fault)
      }),
      read: (buffer) => call("File.read", fd, () => file.read(buffer)),
      readAlloc: (size) => call("File.readAlloc", fd, () => file.readAlloc(size)),
      truncate: (length) => call("File.truncate", fd, () => file.truncate(length)),
      write: (buffer) => call("File.write", fd, () => file.write(buffer)),
      writeAll: (buffer) => call("File.writeAll", fd, () => file.writeAll(buffer))
    }
  }

  const fileSystem = FileSystem.make({
    access: (path, options) => call("access", path, () => fs.access(path, options)),
    copy: (from, to, options) => call("copy", from, () => fs.copy(from, to, options)),
    copyFile: (from, to) => call("copyFile", from, () => fs.copyFile(from, to)),
    chmod: (path, mode) => call("chmod", path, () => fs.chmod(path, mode)),
    chown: (path, uid, gid) => call("chown", path, () => fs.chown(path, uid, gid)),
    link: (from, to) => call("link", from, () => fs.link(from, to)),
    makeDirectory: (path, options) => call("makeDirectory", path, () => fs.makeDirectory(path, options)),
    makeTempDirectory: (options) =>
      call("makeTempDirectory", options?.directory ?? "", () => fs.makeTempDirectory(options)),
    makeTempDirectoryScoped: (options) =>
      call("makeTempDirectoryScoped", options?.directory ?? "", () => fs.makeTempDirectoryScoped(options)),
    makeTempFile: (options) => call("makeTempFile", options?.directory ?? "", () => fs.makeTempFile(options)),
    makeTempFileScoped: (options) =>
      call("makeTempFileScoped", options?.directory ?? "", () => fs.makeTempFileScoped(options)),
    open: (path, options) => call("open", path, () => Effect.map(fs.open(path, options), wrapFile)),
    readDirectory: (path, options) => call("readDirectory", path, () => fs.readDirectory(path, options)),
    readFile: (path) => call("readFile", path, () => fs.readFile(path)),
    readLink: (path) => call("readLink", path, () => fs.readLink(path)),
    realPath: (path) => call("realPath", path, () => fs.realPath(path)),
    remove: (path, options) => call("remove", path, () => fs.remove(path, options)),
    rename: (from, to) => call("rename", from, () => fs.rename(from, to)),
    stat: (path) => call("stat", path, () => fs.stat(path)),
    symlink: (from, to) => call("symlink", to, () => fs.symlink(from, to)),
    truncate: (path, length) => call("truncate", path, () => fs.truncate(path, length)),
    utimes: (path, atime, mtime) => call("utimes", path, () => fs.utimes(path, atime, mtime)),
    watch: (path, options) => Stream.unwrap(call("watch", path, () => Effect.succeed(fs.watch(path, options)))),
    writeFile: (path, data, options) => call("writeFile", path, () => fs.writeFile(path, data, options))
  })

  return {
    [TypeId]: TypeId,
    fileSystem,
    calls: Effect.sync(() => count),
    hit: Effect.sync(() => hit),
    reset: (plan) =>
      Effect.zipRight(
        checked(plan),
        Effect.sync(() => {
          current = plan
          count = 0
          hit = Option.none()
          // Each run after a reset makes the calls a first run makes: Clients
          // skip the fsyncs of directories they made durable before, so a
          // loop over call numbers would end before the last of them.
          forgetAllDurable(fileSystem)
        })
      )
  }
}

/** @internal */
export const make = (plan?: Api.FaultPlan): Effect.Effect<Api.FaultFileSystemService, never, FileSystem.FileSystem> =>
  Effect.zipRight(checked(plan), Effect.map(FileSystem.FileSystem, (fs) => wrap(fs, plan)))
