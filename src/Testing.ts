/**
 * Test your own code against faults and crashes, with the same tools this
 * library's guarantees are proven with.
 *
 * - `FaultFileSystem`: wraps any platform `FileSystem` and makes its N-th call
 *   fail with a chosen errno (ENOENT, EACCES, ENOSPC, EIO) or interrupts the
 *   calling fiber there. Run an operation for N = 1, 2, ... until it completes
 *   without reaching the fault to check every failure point.
 * - `PowerLoss`: an in-memory `FileSystem` that models what survives a power
 *   cut (fsync of files and directories as barriers) and enumerates every state
 *   the disk may come back in.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Client, LockManager } from "effect-persistence"
 * import * as Testing from "effect-persistence/testing"
 *
 * const disk = new Testing.PowerLoss.SimulatedDisk({ "/data/": "", "/data/doc": "old" })
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.make({ durable: true })
 *   yield* client.write("/data/doc", "new")
 *   // The write returned: every state the disk may come back in has the new content.
 *   return disk.crashStates().every((state) => state["/data/doc"] === "new")
 * }).pipe(Effect.provide(Layer.merge(LockManager.layer, Testing.PowerLoss.layer(disk))))
 * ```
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as FaultFileSystem from "./testing/FaultFileSystem.js"

/**
 * @since 0.1.0
 */
export * as PowerLoss from "./testing/PowerLoss.js"
