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
 * import { Client, LockManager } from "effect-persistence"
 * import * as Testing from "effect-persistence/testing"
 *
 * const disk = new Testing.PowerLoss.SimulatedDisk({ "/data/": "" })
 * const client = Client.make({ durable: true }).pipe(
 *   Effect.provide(Layer.merge(LockManager.layer, Testing.PowerLoss.layer(disk)))
 * )
 * // ... run a write, then: every state in disk.crashStates() has the new content
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
