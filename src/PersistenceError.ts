/**
 * The typed failures of effect-persistence.
 *
 * Every expected failure of the library is one of these tagged errors, in the
 * error channel, carrying the operation that failed and the path(s) involved.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-persistence/PersistenceError")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * Why a path was refused before any I/O or locking happened. (`TempName`: a
 * path to create has a segment of the form `.<name>.<token>.<suffix>` of the
 * Client's temp files, check included, which `recover` would remove.)
 *
 * @since 0.1.0
 * @category models
 */
export const InvalidPathReason = Schema.Literal(
  "NotAString",
  "Empty",
  "Relative",
  "NulByte",
  "Root",
  "OutsideRoot",
  "EmptyPathSet",
  "InvalidName",
  "TempName"
)

/**
 * @since 0.1.0
 * @category models
 */
export type InvalidPathReason = typeof InvalidPathReason.Type

const invalidPathText: Record<InvalidPathReason, string> = {
  NotAString: "a path must be a string",
  Empty: "a path must not be empty",
  Relative: "a path must be absolute (start with \"/\")",
  NulByte: "a path must not contain a NUL byte",
  Root: "the filesystem root cannot be used for this operation",
  OutsideRoot: "the path is outside the client's root directory",
  EmptyPathSet: "at least one path is required",
  InvalidName: "a name must not be empty or contain \"/\" or a NUL byte",
  TempName: "the client does not create a name of the form of its temp files (which recover removes)"
}

/**
 * Bad input: the path was refused before any I/O or locking happened, so
 * nothing on disk changed.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidPathError extends Schema.TaggedError<InvalidPathError>("effect-persistence/InvalidPathError")(
  "InvalidPathError",
  {
    operation: Schema.String,
    path: Schema.Unknown,
    reason: InvalidPathReason,
    detail: Schema.optional(Schema.String)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    const shown = typeof this.path === "string" ? JSON.stringify(this.path) : String(this.path)
    const detail = this.detail === undefined ? "" : ` (${this.detail})`
    return `${this.operation}: invalid path ${shown}: ${invalidPathText[this.reason]}${detail}`
  }
}

/**
 * Bad input other than a path (the data to write, an option): refused before
 * any I/O or locking, so nothing on disk changed.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArgumentError
  extends Schema.TaggedError<InvalidArgumentError>("effect-persistence/InvalidArgumentError")(
    "InvalidArgumentError",
    {
      operation: Schema.String,
      path: Schema.Unknown,
      /** Which argument: `data`, `options.mode`, `options.chunkSize`, ... */
      argument: Schema.String,
      detail: Schema.String
    }
  )
{
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    const shown = typeof this.path === "string" ? JSON.stringify(this.path) : String(this.path)
    return `${this.operation} ${shown}: invalid ${this.argument}: ${this.detail}`
  }
}

/**
 * What went wrong in a filesystem call. The Node platform maps only a few
 * errno codes to its own reasons; this library also reads the errno code of
 * the underlying cause so that, for example, a full disk is `NoSpace`.
 *
 * @since 0.1.0
 * @category models
 */
export const FileSystemReason = Schema.Literal(
  "NotFound",
  "PermissionDenied",
  "AlreadyExists",
  "NoSpace",
  "Busy",
  "NotADirectory",
  "IsADirectory",
  "NotEmpty",
  "CrossDevice",
  "NameTooLong",
  "TimedOut",
  "InvalidData",
  "IoError",
  "Unknown"
)

/**
 * @since 0.1.0
 * @category models
 */
export type FileSystemReason = typeof FileSystemReason.Type

const fileSystemText: Record<FileSystemReason, string> = {
  NotFound: "no such file or directory",
  PermissionDenied: "permission denied",
  AlreadyExists: "already exists",
  NoSpace: "no space left on device",
  Busy: "resource busy",
  NotADirectory: "a path component is not a directory",
  IsADirectory: "is a directory",
  NotEmpty: "directory not empty",
  CrossDevice: "cannot rename across filesystems",
  NameTooLong: "file name too long",
  TimedOut: "timed out",
  InvalidData: "invalid data",
  IoError: "input/output error",
  Unknown: "filesystem error"
}

/**
 * A filesystem call failed. Unless the error is a {@link CommitError}, a
 * failed mutation left its target as it was.
 *
 * @since 0.1.0
 * @category errors
 */
export class FileSystemError extends Schema.TaggedError<FileSystemError>("effect-persistence/FileSystemError")(
  "FileSystemError",
  {
    operation: Schema.String,
    path: Schema.String,
    reason: FileSystemReason,
    /** The errno code (`ENOENT`, `ENOSPC`, ...) when the platform gave one. */
    code: Schema.optional(Schema.String),
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    const code = this.code === undefined ? "" : ` (${this.code})`
    return `${this.operation} ${JSON.stringify(this.path)}: ${fileSystemText[this.reason]}${code}`
  }
}

/**
 * The change is committed (the rename or removal happened and is visible) but
 * making it durable failed afterwards (the directory fsync). The caller knows
 * the new state is in place; it may not survive a power loss.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommitError extends Schema.TaggedError<CommitError>("effect-persistence/CommitError")(
  "CommitError",
  {
    operation: Schema.String,
    path: Schema.String,
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * Always `true`: the change is visible, only its durability is in doubt.
   *
   * @since 0.1.0
   */
  readonly committed = true as const

  /**
   * @since 0.1.0
   */
  get message(): string {
    const detail = Predicate.hasProperty(this.cause, "message") ? `: ${String(this.cause.message)}` : ""
    return `${this.operation} ${
      JSON.stringify(this.path)
    }: the change is committed but could not be made durable${detail}`
  }
}

/**
 * A JSON document did not parse or did not match its schema (or a value did
 * not encode). Nothing was written.
 *
 * @since 0.1.0
 * @category errors
 */
export class DecodeError extends Schema.TaggedError<DecodeError>("effect-persistence/DecodeError")(
  "DecodeError",
  {
    operation: Schema.String,
    path: Schema.String,
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    const detail = Predicate.hasProperty(this.cause, "message") ? `: ${String(this.cause.message)}` : ""
    return `${this.operation} ${JSON.stringify(this.path)}: the document does not match its schema${detail}`
  }
}

/**
 * A lock was lost while held (a remote lock manager whose connection dropped):
 * the operation stopped before committing, so nothing changed under a lock
 * that no longer excludes others.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockLostError extends Schema.TaggedError<LockLostError>("effect-persistence/LockLostError")(
  "LockLostError",
  {
    operation: Schema.String,
    paths: Schema.Array(Schema.String),
    lockId: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    return `${this.operation} ${
      this.paths.join(", ")
    }: lock #${this.lockId} was lost before the commit; nothing was changed`
  }
}

/**
 * Why a remote lock authority (a lock server, or the lock server itself
 * starting up) failed:
 * - `Unreachable`: nothing accepts connections at the address;
 * - `Timeout`: the connection or its handshake did not complete in time;
 * - `ProtocolMismatch`: the peer speaks another protocol version (or is not a
 *   lock server);
 * - `Disconnected`: the connection dropped (closed, or the server stopped
 *   answering heartbeats) while the request was in flight;
 * - `ListenFailed`: the server could not listen at its address.
 *
 * @since 0.1.0
 * @category models
 */
export const RemoteLockErrorReason = Schema.Literal(
  "Unreachable",
  "Timeout",
  "ProtocolMismatch",
  "Disconnected",
  "ListenFailed"
)

/**
 * @since 0.1.0
 * @category models
 */
export type RemoteLockErrorReason = typeof RemoteLockErrorReason.Type

const reasonText: Record<RemoteLockErrorReason, string> = {
  Unreachable: "is unreachable",
  Timeout: "did not answer in time",
  ProtocolMismatch: "speaks another protocol",
  Disconnected: "dropped the connection",
  ListenFailed: "could not listen"
}

/**
 * A remote lock authority (`LockManager.layerRemote` and its lock server)
 * could not be reached, answered with another protocol or dropped the
 * connection: one error type for every remote backend, so the `Client`'s error
 * unions do not grow with each. A request that failed with it holds nothing on
 * the authority: a waiting request is gone from its queue, and locks held over
 * the dropped connection are released (their `Lock.lost` completes).
 *
 * @since 0.1.0
 * @category errors
 */
export class RemoteLockError extends Schema.TaggedError<RemoteLockError>("effect-persistence/RemoteLockError")(
  "RemoteLockError",
  {
    operation: Schema.String,
    /** Where the authority is: `unix:<path>` or `tcp:<host>:<port>` for a lock server. */
    address: Schema.String,
    reason: RemoteLockErrorReason,
    detail: Schema.optional(Schema.String),
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  get message(): string {
    const detail = this.detail !== undefined ?
      `: ${this.detail}` :
      Predicate.hasProperty(this.cause, "message") ?
      `: ${String(this.cause.message)}` :
      ""
    return `${this.operation}: lock server ${this.address} ${reasonText[this.reason]}${detail}`
  }
}

/**
 * Any error of this library.
 *
 * @since 0.1.0
 * @category errors
 */
export type PersistenceError =
  | InvalidPathError
  | InvalidArgumentError
  | FileSystemError
  | CommitError
  | DecodeError
  | LockLostError
  | RemoteLockError

/**
 * @since 0.1.0
 * @category refinements
 */
export const isPersistenceError = (u: unknown): u is PersistenceError => Predicate.hasProperty(u, TypeId)
