/**
 * The boundary between the library's tagged errors and the errors Promise
 * callers expect from Node: `Error` instances with a `code` (`ENOENT`,
 * `ERR_INVALID_ARG_VALUE`, `ABORT_ERR`, ...), a readable message and the
 * tagged error kept as `cause`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type { FileSystemReason, PersistenceError } from "../../PersistenceError.js"
import { isPersistenceError } from "../../PersistenceError.js"

/** @internal */
export interface NodeError extends Error {
  code?: string
  errno?: number
  syscall?: string
  path?: string
  committed?: boolean
}

const withProps = <E extends Error>(error: E, props: Record<string, unknown>): E & NodeError => {
  for (const [key, value] of Object.entries(props)) {
    if (value !== undefined) Object.defineProperty(error, key, { value, writable: true, configurable: true })
  }
  return error
}

/** @internal */
export const invalidArgValue = (name: string, value: unknown, reason: string): TypeError & NodeError =>
  withProps(new TypeError(`The argument '${name}' ${reason}. Received ${show(value)}`), {
    code: "ERR_INVALID_ARG_VALUE"
  })

/** @internal */
export const invalidArgType = (name: string, expected: string, value: unknown): TypeError & NodeError =>
  withProps(new TypeError(`The "${name}" argument must be ${expected}. Received ${show(value)}`), {
    code: "ERR_INVALID_ARG_TYPE"
  })

/** @internal */
export const outOfRange = (name: string, range: string, value: unknown): RangeError & NodeError =>
  withProps(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${show(value)}`), {
    code: "ERR_OUT_OF_RANGE"
  })

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "function") return "function"
  if (typeof value === "object" && value !== null) return Array.isArray(value) ? "an array" : "an object"
  return String(value)
}

/**
 * What Node's streams give a write (or `end`) that a destroyed stream will
 * never perform (`ERR_STREAM_DESTROYED`).
 *
 * @internal
 */
export const streamDestroyed = (method: "write" | "end"): NodeError =>
  withProps(new Error(`Cannot call ${method} after a stream was destroyed`), { code: "ERR_STREAM_DESTROYED" })

/**
 * The error Node gives an aborted operation: name `AbortError`, code
 * `ABORT_ERR`, the signal's reason as `cause`.
 *
 * @internal
 */
export class AbortError extends Error {
  readonly code = "ABORT_ERR"
  constructor(message = "The operation was aborted", options?: { cause?: unknown }) {
    super(message, options)
    this.name = "AbortError"
  }
}

/** @internal */
export const abortError = (signal: AbortSignal | undefined): AbortError =>
  signal?.reason === undefined ? new AbortError() : new AbortError(undefined, { cause: signal.reason })

// When the platform gave no errno code, the reason decides.
const codeByReason: Record<FileSystemReason, string | undefined> = {
  NotFound: "ENOENT",
  PermissionDenied: "EACCES",
  AlreadyExists: "EEXIST",
  NoSpace: "ENOSPC",
  Busy: "EBUSY",
  NotADirectory: "ENOTDIR",
  IsADirectory: "EISDIR",
  NotEmpty: "ENOTEMPTY",
  CrossDevice: "EXDEV",
  NameTooLong: "ENAMETOOLONG",
  TimedOut: "ETIMEDOUT",
  InvalidData: undefined,
  IoError: "EIO",
  Unknown: undefined
}

/** The Node error behind a platform error, if any (`FileSystemError.cause.cause`). */
const nodeCause = (error: { readonly cause?: unknown }): { errno?: unknown; syscall?: unknown } | undefined => {
  const platform = error.cause
  return Predicate.hasProperty(platform, "cause") && Predicate.isObject(platform.cause) ?
    platform.cause as { errno?: unknown; syscall?: unknown } :
    undefined
}

const fromPersistence = (error: PersistenceError): NodeError => {
  switch (error._tag) {
    case "InvalidPathError":
      return withProps(new TypeError(error.message, { cause: error }), {
        code: error.reason === "NotAString" ? "ERR_INVALID_ARG_TYPE" : "ERR_INVALID_ARG_VALUE"
      })
    case "FileSystemError": {
      const code = error.code === "ERR_FS_EISDIR" ? "EISDIR" : error.code ?? codeByReason[error.reason]
      const node = nodeCause(error)
      return withProps(new Error(error.message, { cause: error }), {
        code,
        errno: typeof node?.errno === "number" ? node.errno : undefined,
        syscall: typeof node?.syscall === "string" ? node.syscall : undefined,
        path: error.path
      })
    }
    case "CommitError": {
      // The change is visible; only its durability failed. Keep the errno of the fsync.
      const inner = Predicate.hasProperty(error.cause, "code") && typeof error.cause.code === "string" ?
        error.cause.code :
        "EIO"
      return withProps(new Error(error.message, { cause: error }), { code: inner, path: error.path, committed: true })
    }
    case "LockLostError":
      // A remote manager lost the lock before the commit: nothing changed.
      return withProps(new Error(error.message, { cause: error }), { code: "ERR_LOCK_LOST" })
    default:
      // DecodeError: the facade has no typed-document operations.
      return new Error(error.message, { cause: error })
  }
}

/**
 * A failure of the data source given to `write` (an iterable or stream that
 * threw): reported as the source's own error, as Node does.
 *
 * @internal
 */
export class SourceFailure {
  readonly _tag = "SourceFailure"
  constructor(readonly error: unknown) {}
}

/** @internal */
export const toNodeError = (u: unknown): Error => {
  if (isPersistenceError(u)) return fromPersistence(u)
  if (u instanceof SourceFailure) return toNodeError(u.error)
  if (u instanceof Error) return u
  return new Error(typeof u === "string" ? u : `Unexpected failure: ${show(u)}`, { cause: u })
}

/**
 * The error of a failed run: an `AbortError` when the run was interrupted
 * (the only cause of interruption here is an abort signal or a destroyed
 * stream), else the failure, else the defect.
 *
 * @internal
 */
export const fromCause = (cause: Cause.Cause<unknown>, signal?: AbortSignal): Error => {
  if (Cause.isInterruptedOnly(cause)) return abortError(signal)
  const failure = Cause.failureOption(cause)
  return toNodeError(Option.isSome(failure) ? failure.value : Cause.squash(cause))
}
