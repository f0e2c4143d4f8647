import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import type { PlatformError } from "@effect/platform/Error"
import { Context, Deferred, Duration, Effect, ExecutionStrategy, Exit, FiberId, Layer, Scope } from "effect"

/**
 * Calls to intercept before they reach the real file system: a hook may wait
 * (on a `Deferred` the test controls) or fail. Hooks see every call, also the
 * Client's own internal ones, so a hook decides by its arguments which ones
 * to hold.
 */
export interface Hooks {
  readonly rename?: (from: string, to: string) => Effect.Effect<void, PlatformError>
  readonly readFile?: (path: string) => Effect.Effect<void, PlatformError>
  /** Runs before `file.sync` of a descriptor opened with `path`. */
  readonly sync?: (path: string) => Effect.Effect<void, PlatformError>
}

/** Reads and clears the event log of a recording file system. */
export interface FileSystemLogService {
  /**
   * The events so far, in call order:
   * `open <path> <flag>`, `sync <path>` (the path the synced descriptor was
   * opened with), `writeAll <path> <bytes>`, `close <path>` (the descriptor was
   * closed with its scope), `writeFile <path> <flag> <bytes>`, `rename <from> <to>`,
   * `makeDirectory <path>`, `remove <path>` and `readFile <path>`. A call that
   * failed is recorded with ` !<reason>` appended (e.g. `open /d/x wx !NotFound`).
   */
  readonly events: Effect.Effect<Array<string>>
  readonly clear: Effect.Effect<void>
  /**
   * Waits until `predicate` holds for the log (checked at once and after each
   * new event): says exactly when a call has happened, with no polling. Dies
   * after `timeout` (default 10 seconds) so a broken expectation cannot hang.
   */
  readonly waitFor: (
    predicate: (events: ReadonlyArray<string>) => boolean,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<void>
}

export class FileSystemLog extends Context.Tag("test/FileSystemLog")<FileSystemLog, FileSystemLogService>() {}

const describe = (error: PlatformError): string => error._tag === "SystemError" ? error.reason : error._tag

/**
 * Wraps `real`: every recorded call is logged when it completes (so the log
 * order is the order in which the calls took effect), failures included.
 */
export const make = (
  real: FileSystem.FileSystem,
  hooks: Hooks = {}
): { readonly fs: FileSystem.FileSystem; readonly log: FileSystemLogService } => {
  const events: Array<string> = []
  const waiters = new Set<{
    readonly predicate: (events: ReadonlyArray<string>) => boolean
    readonly deferred: Deferred.Deferred<void>
  }>()
  const push = (event: string) => {
    events.push(event)
    for (const waiter of waiters) {
      if (waiter.predicate(events)) {
        waiters.delete(waiter)
        Deferred.unsafeDone(waiter.deferred, Exit.void)
      }
    }
  }
  const record = <A, E extends PlatformError, R>(event: string, effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.tapBoth({
        onSuccess: () => Effect.sync(() => push(event)),
        onFailure: (error) => Effect.sync(() => push(`${event} !${describe(error)}`))
      })
    )

  // The Node `File` is a class instance with prototype getters: delegate
  // explicitly rather than spreading it.
  const wrapFile = (file: FileSystem.File, path: string): FileSystem.File => ({
    [FileSystem.FileTypeId]: FileSystem.FileTypeId,
    fd: file.fd,
    get stat() {
      return file.stat
    },
    seek: (offset, from) => file.seek(offset, from),
    sync: Effect.suspend(() =>
      Effect.zipRight(hooks.sync ? hooks.sync(path) : Effect.void, record(`sync ${path}`, file.sync))
    ),
    read: (buffer) => file.read(buffer),
    readAlloc: (size) => file.readAlloc(size),
    truncate: (length) => file.truncate(length),
    write: (buffer) => file.write(buffer),
    writeAll: (buffer) => record(`writeAll ${path} ${buffer.length}`, file.writeAll(buffer))
  })

  const fs = FileSystem.make({
    ...real,
    open: (path, options) =>
      Effect.gen(function*() {
        // The descriptor lives in a child scope whose first finalizer records
        // the close, so it runs after the real close (finalizers run in reverse).
        const child = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        let opened = false
        yield* Scope.addFinalizer(child, Effect.sync(() => opened && push(`close ${path}`)))
        const file = yield* record(`open ${path} ${options?.flag ?? "r"}`, real.open(path, options)).pipe(
          Scope.extend(child),
          Effect.onError(() => Scope.close(child, Exit.void))
        )
        opened = true
        return wrapFile(file, path)
      }),
    rename: (from, to) =>
      Effect.zipRight(
        hooks.rename ? hooks.rename(from, to) : Effect.void,
        record(`rename ${from} ${to}`, real.rename(from, to))
      ),
    writeFile: (path, data, options) =>
      record(`writeFile ${path} ${options?.flag ?? "w"} ${data.length}`, real.writeFile(path, data, options)),
    makeDirectory: (path, options) => record(`makeDirectory ${path}`, real.makeDirectory(path, options)),
    remove: (path, options) => record(`remove ${path}`, real.remove(path, options)),
    readFile: (path) =>
      Effect.zipRight(
        hooks.readFile ? hooks.readFile(path) : Effect.void,
        record(`readFile ${path}`, real.readFile(path))
      )
  })

  const log: FileSystemLogService = {
    events: Effect.sync(() => [...events]),
    clear: Effect.sync(() => {
      events.length = 0
    }),
    waitFor: (predicate, timeout = "10 seconds") =>
      Effect.suspend(() => {
        // Check and register in one synchronous step: no event can slip in between.
        if (predicate(events)) return Effect.void
        const waiter = { predicate, deferred: Deferred.unsafeMake<void>(FiberId.none) }
        waiters.add(waiter)
        return Deferred.await(waiter.deferred).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => `waitFor: not seen in ${Duration.format(Duration.decode(timeout))}: ${events.join(", ")}`
          }),
          Effect.orDie,
          Effect.ensuring(Effect.sync(() => waiters.delete(waiter)))
        )
      })
  }
  return { fs, log }
}

/** A recording file system over the real Node one, with its log. */
export const makeNode = (hooks?: Hooks) =>
  Effect.map(FileSystem.FileSystem, (real) => make(real, hooks)).pipe(Effect.provide(NodeFileSystem.layer))

/** The recording file system and its log as a layer (a fresh log per build). */
export const layer = (hooks?: Hooks): Layer.Layer<FileSystem.FileSystem | FileSystemLog> =>
  Layer.effectContext(
    Effect.map(makeNode(hooks), ({ fs, log }) =>
      Context.make(FileSystem.FileSystem, fs).pipe(Context.add(FileSystemLog, log)))
  )
