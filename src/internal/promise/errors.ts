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
import { constants } from "node:os"
import { inspect } from "node:util"
import type { FileSystemReason, PersistenceError } from "../../PersistenceError.js"
import { isPersistenceError } from "../../PersistenceError.js"

/** @internal */
export interface NodeError extends Error {
  code?: string
  errno?: number
  syscall?: string
  path?: string
  dest?: string
  committed?: boolean
}

const withProps = <E extends Error>(error: E, props: Record<string, unknown>): E & NodeError => {
  for (const [key, value] of Object.entries(props)) {
    if (value !== undefined) Object.defineProperty(error, key, { value, writable: true, configurable: true })
  }
  return error
}

/**
 * How Node shows a received value in `ERR_INVALID_ARG_VALUE`: inspected, cut
 * at 128 characters.
 */
const inspected = (value: unknown): string => {
  const text = inspect(value)
  return text.length > 128 ? `${text.slice(0, 128)}...` : text
}

/** How Node describes a received value in `ERR_INVALID_ARG_TYPE`. */
const specificType = (value: unknown): string => {
  if (value === null || value === undefined) return String(value)
  switch (typeof value) {
    case "function":
      return `function ${value.name}`
    case "object": {
      const name = (value as { constructor?: { name?: unknown } }).constructor?.name
      return typeof name === "string" ? `an instance of ${name}` : inspect(value, { depth: -1 })
    }
    case "bigint":
      return `type bigint (${value}n)`
    case "number":
      return Object.is(value, -0) ? "type number (-0)" : `type number (${value})`
    case "symbol":
      return `type symbol (${String(value)})`
    default: {
      const text = inspect(value, { colors: false })
      return `type ${typeof value} (${text.length > 28 ? `${text.slice(0, 25)}...` : text})`
    }
  }
}

// Node calls a dotted name (`options.mode`) a property, any other an argument.
const kind = (name: string) => name.includes(".") ? "property" : "argument"

/**
 * Node's `ERR_INVALID_ARG_VALUE`, with Node's message.
 *
 * @internal
 */
export const invalidArgValue = (name: string, value: unknown, reason = "is invalid"): TypeError & NodeError =>
  withProps(new TypeError(`The ${kind(name)} '${name}' ${reason}. Received ${inspected(value)}`), {
    code: "ERR_INVALID_ARG_VALUE"
  })

/**
 * Node's `ERR_INVALID_ARG_TYPE`, with Node's message.
 *
 * @internal
 */
export const invalidArgType = (name: string, expected: string, value: unknown): TypeError & NodeError =>
  withProps(new TypeError(`The "${name}" ${kind(name)} must be ${expected}. Received ${specificType(value)}`), {
    code: "ERR_INVALID_ARG_TYPE"
  })

// Node writes large integers with separators: 1_099_511_627_776.
const withSeparators = (digits: string): string => digits.replace(/\B(?=(\d{3})+(?!\d))/g, "_")

/**
 * Node's `ERR_OUT_OF_RANGE`, with Node's message.
 *
 * @internal
 */
export const outOfRange = (name: string, range: string, value: unknown): RangeError & NodeError => {
  const received = typeof value === "number" && Number.isInteger(value) && Math.abs(value) > 2 ** 32 ?
    withSeparators(String(value)) :
    inspect(value)
  return withProps(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${received}`),
    {
      code: "ERR_OUT_OF_RANGE"
    }
  )
}

/**
 * Node's `ERR_UNKNOWN_ENCODING`, with Node's message.
 *
 * @internal
 */
export const unknownEncoding = (encoding: string): TypeError & NodeError =>
  withProps(new TypeError(`Unknown encoding: ${encoding}`), { code: "ERR_UNKNOWN_ENCODING" })

/**
 * Node's refusal of a path with a NUL byte (`ERR_INVALID_ARG_VALUE`), which
 * the original library passed on from `fs`.
 *
 * @internal
 */
export const nullBytes = (name: string, path: string): TypeError & NodeError =>
  invalidArgValue(name, path, "must be a string, Uint8Array, or URL without null bytes")

/**
 * An error of the original library itself: a plain `Error` with its message
 * and no `code` (callers of the original match on the message).
 *
 * @internal
 */
export const originalError = (message: string): Error => new Error(message)

/**
 * What `rename(2)` says of a directory moved into itself (`EINVAL`), as the
 * original passed it on from `fs.rename`.
 *
 * @internal
 */
export const intoItself = (from: string, to: string): NodeError =>
  withProps(new Error(`EINVAL: invalid argument, rename '${from}' -> '${to}'`), {
    code: "EINVAL",
    errno: -constants.errno.EINVAL,
    syscall: "rename",
    path: from,
    dest: to
  })

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

interface NodeCause {
  readonly code?: unknown
  readonly message?: unknown
  readonly errno?: unknown
  readonly syscall?: unknown
  readonly path?: unknown
  readonly dest?: unknown
}

/** The Node error behind a platform error, if any (`FileSystemError.cause.cause`). */
const nodeCause = (error: { readonly cause?: unknown }): NodeCause | undefined => {
  const platform = error.cause
  return Predicate.hasProperty(platform, "cause") && Predicate.isObject(platform.cause) ?
    platform.cause as NodeCause :
    undefined
}

const stringOf = (u: unknown): string | undefined => typeof u === "string" ? u : undefined

const fromPersistence = (error: PersistenceError): NodeError => {
  switch (error._tag) {
    case "InvalidPathError":
      return withProps(new TypeError(error.message, { cause: error }), {
        code: error.reason === "NotAString" ? "ERR_INVALID_ARG_TYPE" : "ERR_INVALID_ARG_VALUE"
      })
    case "InvalidArgumentError":
      return withProps(new TypeError(error.message, { cause: error }), { code: "ERR_INVALID_ARG_VALUE" })
    case "FileSystemError": {
      // Node's own code when a Node error is behind it: the Effect API reports
      // errno names (EISDIR), while Node's rm says ERR_FS_EISDIR, as the
      // original passed on.
      const node = nodeCause(error)
      const code = stringOf(node?.code) ?? error.code ?? codeByReason[error.reason]
      // What Node said about the call that failed, as the original passed it
      // on ("ENOENT: no such file or directory, open '/data/f'"); the
      // library's own words when no Node error is behind it.
      const nodeMessage = stringOf(node?.message)
      return withProps(new Error(nodeMessage ?? error.message, { cause: error }), {
        code,
        errno: typeof node?.errno === "number" ? node.errno : undefined,
        syscall: stringOf(node?.syscall),
        path: nodeMessage !== undefined ? stringOf(node?.path) ?? error.path : error.path,
        dest: nodeMessage !== undefined ? stringOf(node?.dest) : undefined
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
  return new Error(typeof u === "string" ? u : `Unexpected failure: ${inspect(u)}`, { cause: u })
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
