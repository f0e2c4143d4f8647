/**
 * How a fault injected into `File.sync` reaches a file system that models
 * failed fsyncs: a file that has this method is told that its fsync failed
 * (the simulated disk's files: the data being written is dropped from what
 * survives a crash, as Linux does), where otherwise the call is only skipped.
 *
 * @internal
 */
export const SyncFailed: unique symbol = Symbol.for("effect-persistence/testing/SyncFailed")

/** @internal */
export interface FailableSync {
  /** Told the errno its fsync failed with. */
  readonly [SyncFailed]: (code: "EIO" | "ENOSPC") => void
}

/** @internal */
export const failableSync = (file: object): FailableSync | undefined =>
  typeof (file as Partial<FailableSync>)[SyncFailed] === "function" ? file as FailableSync : undefined
