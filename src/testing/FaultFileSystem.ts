/**
 * A `FileSystem` that injects one fault at a chosen call: for testing how
 * code built on the platform `FileSystem` behaves when the disk fails or the
 * calling fiber is interrupted at each step of an operation.
 *
 * It wraps any `FileSystem` (the real Node one in tests), counts the calls
 * made through it and makes the N-th call fail with a chosen errno, or
 * interrupts the calling fiber there. Running an operation once for every N
 * until it completes without reaching the fault checks every failure point.
 *
 * A faulted call is not made, with one exception: an `EIO` or `ENOSPC`
 * injected into `File.sync` over a simulated disk (`PowerLoss`) is an fsync
 * whose write-back failed, as Linux reports it: the disk drops the data being
 * written from what survives a crash (`SimulatedDisk.failSync`), and a retried
 * fsync that succeeds does not bring it back.
 *
 * Exported as `Testing.FaultFileSystem`.
 *
 * @example
 * ```ts
 * import { NodeFileSystem } from "@effect/platform-node"
 * import { Effect, Exit, Layer, Option } from "effect"
 * import { Client, LockManager } from "effect-persistence"
 * import { FaultFileSystem } from "effect-persistence/testing"
 *
 * const program = Effect.gen(function*() {
 *   const faults = yield* FaultFileSystem.FaultFileSystem
 *   const client = yield* Client.make({ durable: true })
 *   for (let n = 1;; n++) {
 *     yield* faults.reset({ failAt: n, fault: "ENOSPC" })
 *     const exit = yield* Effect.exit(client.write("/data/doc", "new"))
 *     const hit = yield* faults.hit
 *     if (Option.isNone(hit)) break // the write completed before call n
 *     // ... check what the write left behind after a full disk at call n
 *     console.log(`call ${n} (${hit.value.method}): ${Exit.isSuccess(exit) ? "written" : "failed"}`)
 *   }
 * }).pipe(
 *   Effect.provide(LockManager.layer),
 *   Effect.provide(FaultFileSystem.layer().pipe(Layer.provide(NodeFileSystem.layer)))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as internal from "../internal/testing/faultFileSystem.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * What happens at the faulty call.
 *
 * - `"ENOENT"`, `"EACCES"`, `"ENOSPC"`, `"EIO"`: the call is not made and
 *   fails with a `SystemError` shaped like the Node platform's: its `reason`
 *   is the one Node would give (`NotFound`, `PermissionDenied`, else
 *   `Unknown`) and its `cause` is an `Error` whose `code` is the errno name.
 * - `"interrupt"`: the calling fiber receives an interruption at that call,
 *   as if another fiber had called `Fiber.interrupt` at that moment. Where
 *   the fiber is interruptible the call is not made; inside an uninterruptible
 *   region (a finalizer, a commit section) the call is made and the
 *   interruption takes effect when the region ends. The hit records which.
 *
 * @since 0.1.0
 * @category models
 */
export type Fault = "ENOENT" | "EACCES" | "ENOSPC" | "EIO" | "interrupt"

/**
 * Every fault kind, for tests that iterate over them.
 *
 * @since 0.1.0
 * @category models
 */
export const faults: ReadonlyArray<Fault> = ["ENOENT", "EACCES", "ENOSPC", "EIO", "interrupt"]

/**
 * Fail the `failAt`-th call (counting from 1 since the last reset) with
 * `fault`. Only that one call is faulty: later calls go through.
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultPlan {
  readonly failAt: number
  readonly fault: Fault
}

/**
 * The fault once it fired: which call it hit.
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultHit {
  readonly fault: Fault
  /** The number of the call (equal to the plan's `failAt`). */
  readonly call: number
  /** `"open"`, `"rename"`, ..., or `"File.writeAll"` etc. for calls on an open file. */
  readonly method: string
  /** The path, or the file descriptor for calls on an open file. */
  readonly target: string | number
  /**
   * For `"interrupt"`: the fiber was uninterruptible, so the call was made
   * and the interruption was delivered when the region ended.
   */
  readonly deferred: boolean
}

/**
 * The faulty file system and its controls.
 *
 * What counts as a call: each call of a `FileSystem` method whose effect
 * runs (building an effect that never runs counts nothing), and each call on
 * a `File` returned by `open` (`read`, `readAlloc`, `write`, `writeAll`,
 * `sync`, `stat`, `truncate`). Not counted: closing a file (its scope's
 * finalizer) and `File.seek` (no I/O: the position is kept in memory, and
 * the call cannot fail). The derived methods `exists`, `readFileString`,
 * `writeFileString`, `stream` and `sink` count the primitive calls they make
 * (`access`, `readFile`, `writeFile`, `open` and the reads or writes on the
 * opened file), so a stream can fail at any read. (`Client.stream` reads up
 * to 64 chunks at a time, so there a fault lands per read, not per chunk.)
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultFileSystemService {
  readonly [TypeId]: TypeId
  /** The wrapped file system with the faults applied. */
  readonly fileSystem: FileSystem.FileSystem
  /** Calls counted since the last reset. */
  readonly calls: Effect.Effect<number>
  /** The fault, once it fired since the last reset. */
  readonly hit: Effect.Effect<Option.Option<FaultHit>>
  /**
   * Sets the call count to zero, forgets the hit and replaces the plan
   * (without a plan, calls are only counted). Clients on this file system
   * also forget which directories they made durable, so every run after a
   * reset makes the calls a first run makes (a durable Client otherwise
   * skips the fsyncs of directories it synced before, and a loop over call
   * numbers would end before failing the last ones). A plan that would inject
   * nothing (`failAt` not an integer from 1, an unknown fault) is a defect
   * naming what is wrong, here and in `make` and `layer`: a test built on it
   * would pass without testing anything.
   */
  readonly reset: (plan?: FaultPlan) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class FaultFileSystem extends Context.Tag("effect-persistence/FaultFileSystem")<
  FaultFileSystem,
  FaultFileSystemService
>() {}

/**
 * Wraps `fs` with the faults of `plan` (none: count only). Throws for a plan
 * that would inject nothing (see `reset`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrap: (fs: FileSystem.FileSystem, plan?: FaultPlan) => FaultFileSystemService = internal.wrap

/**
 * Wraps the `FileSystem` in context with the faults of `plan` (none: count
 * only).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (plan?: FaultPlan) => Effect.Effect<FaultFileSystemService, never, FileSystem.FileSystem> =
  internal.make

/**
 * Provides the faulty `FileSystem` (wrapping the one in context) together
 * with its controls.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  plan?: FaultPlan
): Layer.Layer<FileSystem.FileSystem | FaultFileSystem, never, FileSystem.FileSystem> =>
  Layer.effectContext(
    Effect.map(make(plan), (service) =>
      Context.make(FaultFileSystem, service).pipe(Context.add(FileSystem.FileSystem, service.fileSystem)))
  )
