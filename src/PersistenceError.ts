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
    detail: Schema.optional(Schema.String),
    /** The client's confinement root, when the path was refused for being it (`Root`) or outside it. */
    root: Schema.optional(Schema.String)
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
    const detail = this.detail === undefined ? "" : ` (${this.detail})`
    // A combined request shows its set (`[]`), not an empty string.
    const shown = typeof this.path === "string" || Array.isArray(this.path) ?
      JSON.stringify(this.path) :
      String(this.path)
    const subject = Array.isArray(this.path) ? "path set" : "path"
    const text = this.root === undefined ?
      invalidPathText[this.reason] :
      this.reason === "Root" ?
      `the client's root directory ${JSON.stringify(this.root)} cannot be used for this operation` :
      `${invalidPathText[this.reason]} ${JSON.stringify(this.root)}`
    return `${this.operation}: invalid ${subject} ${shown}: ${text}${detail}`
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
    // Settings of a constructor concern no path: nothing to show.
    const shown = this.path === undefined && this.argument.startsWith("options") ?
      "" :
      ` ${typeof this.path === "string" ? JSON.stringify(this.path) : String(this.path)}`
    return `${this.operation}${shown}: invalid ${this.argument}: ${this.detail}`
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
    /** What to do about it, when the library knows (`pass { recursive: true } ...`). */
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
    const code = this.code === undefined ? "" : ` (${this.code})`
    const detail = this.detail === undefined ? "" : `: ${this.detail}`
    return `${this.operation} ${JSON.stringify(this.path)}: ${fileSystemText[this.reason]}${code}${detail}`
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
 * Why a JSON document or value was refused:
 * - `InvalidJson`: the file is not JSON at all (the cause is the parser's error);
 * - `Decode`: the document is JSON but does not match its schema;
 * - `Encode`: the value to write does not match its schema or has no JSON form.
 *
 * @since 0.1.0
 * @category models
 */
export const DecodeErrorReason = Schema.Literal("InvalidJson", "Decode", "Encode")

/**
 * @since 0.1.0
 * @category models
 */
export type DecodeErrorReason = typeof DecodeErrorReason.Type

const decodeText: Record<DecodeErrorReason, string> = {
  InvalidJson: "the document is not valid JSON",
  Decode: "the document does not match its schema",
  Encode: "the value does not match its schema"
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
    /** `Decode` unless given. */
    reason: Schema.optionalWith(DecodeErrorReason, { default: () => "Decode" }),
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
    return `${this.operation} ${JSON.stringify(this.path)}: ${decodeText[this.reason]}${detail}`
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
 * Why a remote lock authority (a lock server, an etcd cluster, or the lock
 * server itself starting up) failed:
 * - `Unreachable`: nothing accepts connections at the address;
 * - `Timeout`: the connection or its handshake did not complete in time (for
 *   etcd: no member answered in time, as during a lost quorum);
 * - `ProtocolMismatch`: the peer speaks another protocol version (or is not a
 *   lock server);
 * - `Disconnected`: the connection dropped (closed, or the server stopped
 *   answering heartbeats) while the request was in flight; for etcd, the
 *   session's lease expired or could not be renewed in time;
 * - `ListenFailed`: the server could not listen at its address;
 * - `Unauthorized`: the secret did not match (the server refused the client's,
 *   or the server could not prove it knows the client's), or one side has a
 *   secret and the other none;
 * - `RequestTooLarge`: the request would exceed the protocol's bound on a
 *   message (4 MiB), which the server answers by dropping the connection; it
 *   was not sent;
 * - `Rejected`: the authority answered and refused the request (for etcd: out
 *   of space, a transaction over its operation limit, permission denied).
 *
 * @since 0.1.0
 * @category models
 */
export const RemoteLockErrorReason = Schema.Literal(
  "Unreachable",
  "Timeout",
  "ProtocolMismatch",
  "Disconnected",
  "ListenFailed",
  "Unauthorized",
  "RequestTooLarge",
  "Rejected"
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
  ListenFailed: "could not listen",
  Unauthorized: "failed authentication",
  RequestTooLarge: "cannot take a request this large",
  Rejected: "refused the request"
}

// An etcd cluster is named by its endpoints; anything else is a lock server.
const authority = (address: string): string =>
  address.startsWith("etcd:") ? `etcd cluster ${address.slice(5)}` : `lock server ${address}`

/**
 * A remote lock authority (`LockManager.layerRemote` and its lock server,
 * `LockManager.layerEtcd` and its cluster) could not be reached, answered with
 * another protocol or dropped the connection: one error type for every remote
 * backend, so the `Client`'s error unions do not grow with each. A request that
 * failed with it holds nothing on the authority: a waiting request is gone from
 * its queue (from etcd's at the latest when its lease expires), and locks held
 * over the dropped connection or expired lease are released (their `Lock.lost`
 * completes).
 *
 * @since 0.1.0
 * @category errors
 */
export class RemoteLockError extends Schema.TaggedError<RemoteLockError>("effect-persistence/RemoteLockError")(
  "RemoteLockError",
  {
    operation: Schema.String,
    /**
     * Where the authority is: `unix:<path>` or `tcp:<host>:<port>` for a lock
     * server, `etcd:<endpoint>,<endpoint>...` for an etcd cluster.
     */
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
    return `${this.operation}: ${authority(this.address)} ${reasonText[this.reason]}${detail}`
  }
}

/**
 * Why a lock request was refused as a deadlock:
 * - `Upgrade`: it conflicts with a lock that its own fiber holds (or the
 *   region it was forked in): a write where it holds a read, or a path above
 *   or below a held one that the held lock does not cover. It could only be
 *   granted once that lock is released, and that waits for this request.
 * - `Cycle`: it would wait for a lock held or requested by another fiber that
 *   waits, directly or through others, for a lock the requester holds.
 *
 * @since 0.1.0
 * @category models
 */
export const DeadlockReason = Schema.Literal("Upgrade", "Cycle")

/**
 * @since 0.1.0
 * @category models
 */
export type DeadlockReason = typeof DeadlockReason.Type

/**
 * One lock on the cycle of a {@link DeadlockError}: a path and its mode, and
 * whether that request is held or waiting.
 *
 * @since 0.1.0
 * @category models
 */
export const DeadlockStep = Schema.Struct({
  path: Schema.String,
  mode: Schema.Literal("read", "write"),
  held: Schema.Boolean
})

/**
 * @since 0.1.0
 * @category models
 */
export type DeadlockStep = typeof DeadlockStep.Type

const stepText = (step: DeadlockStep) => `${step.mode} ${JSON.stringify(step.path)}`

/**
 * A lock request that would wait forever, refused at once: granting it needs
 * a lock that its own fiber holds, directly or through fibers that wait for
 * each other. Nothing was queued and nothing else changed: the requester keeps
 * the locks it holds, so its caller can release them and retry (or take the
 * stronger lock first).
 *
 * `cycle` starts with the refused request's lock, follows what each one waits
 * for (a held lock leads to the request its holder waits with), and ends with
 * a lock the requester holds.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlockError extends Schema.TaggedError<DeadlockError>("effect-persistence/DeadlockError")(
  "DeadlockError",
  {
    operation: Schema.String,
    /** The normalised paths of the refused request. */
    paths: Schema.Array(Schema.String),
    reason: DeadlockReason,
    cycle: Schema.Array(DeadlockStep)
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
    let chain = this.cycle.length === 0 ? "" : stepText(this.cycle[0])
    for (let i = 1; i < this.cycle.length; i++) {
      const before = this.cycle[i - 1]
      const step = this.cycle[i]
      const link = i === 1 ? " waits for " : before.held ? ", whose holder waits for " : ", which waits for "
      const state = i === this.cycle.length - 1 ? "held by the requester" : step.held ? "held" : "queued"
      chain += `${link}${stepText(step)} (${state})`
    }
    return `${this.operation} ${this.paths.map((p) => JSON.stringify(p)).join(", ")}: refused, it would wait ` +
      `forever: ${chain}. Nothing was queued; the locks already held are kept`
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
  | DeadlockError

/**
 * @since 0.1.0
 * @category refinements
 */
export const isPersistenceError = (u: unknown): u is PersistenceError => Predicate.hasProperty(u, TypeId)
