/**
 * The boundary between the platform's errors and the library's: every
 * `PlatformError` becomes a `FileSystemError` carrying the operation, the path
 * and the platform error as `cause`.
 *
 * @internal
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import {
  FileSystemError,
  type FileSystemReason,
  InvalidPathError,
  type InvalidPathReason
} from "../PersistenceError.js"

// The Node platform maps only a few errno codes to reasons (ENOSPC, EXDEV,
// ENOTEMPTY, EPERM arrive as "Unknown"), so the errno code decides first.
const byCode: Record<string, FileSystemReason> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EROFS: "PermissionDenied",
  EEXIST: "AlreadyExists",
  ENOSPC: "NoSpace",
  EDQUOT: "NoSpace",
  EBUSY: "Busy",
  ENOTDIR: "NotADirectory",
  EISDIR: "IsADirectory",
  ERR_FS_EISDIR: "IsADirectory",
  ENOTEMPTY: "NotEmpty",
  EXDEV: "CrossDevice",
  ENAMETOOLONG: "NameTooLong",
  ETIMEDOUT: "TimedOut",
  EIO: "IoError"
}

const byReason: Partial<Record<string, FileSystemReason>> = {
  NotFound: "NotFound",
  PermissionDenied: "PermissionDenied",
  AlreadyExists: "AlreadyExists",
  Busy: "Busy",
  TimedOut: "TimedOut",
  InvalidData: "InvalidData"
}

/** The errno code behind a platform error, when there is one. */
export const errnoCode = (error: PlatformError): string | undefined => {
  const cause = error._tag === "SystemError" ? error.cause : undefined
  return Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
}

/**
 * The reason for an errno code.
 *
 * @internal
 */
export const reasonOf = (code: string | undefined): FileSystemReason =>
  (code !== undefined ? byCode[code] : undefined) ?? "Unknown"

/** Node's code for a file too large to read whole (over 2 GiB). */
const TOO_LARGE = "ERR_FS_FILE_TOO_LARGE"
const TOO_LARGE_DETAIL = "a file is read whole only up to 2 GiB: stream it instead"

/**
 * A file too large to read whole, as Node's `readFile` reports it, for a read
 * that does not go through `readFile`.
 *
 * @internal
 */
export const tooLarge = (operation: string, path: string, size: number): FileSystemError =>
  new FileSystemError({
    operation,
    path,
    reason: "Unknown",
    code: TOO_LARGE,
    detail: `${size} bytes; ${TOO_LARGE_DETAIL}`
  })

/** Node's code for text longer than V8's longest string. */
const STRING_TOO_LONG = "ERR_STRING_TOO_LONG"

/**
 * `bytes` decoded as text (`encoding` already validated), every character
 * kept: a leading U+FEFF is text as any other (Node's `readFile` keeps it),
 * so what was written comes back as it was. A file whose text is
 * longer than the longest string V8 makes (2^29 - 24 characters, about 512
 * MiB) fails with a `FileSystemError` saying so, where decoding would throw.
 *
 * @internal
 */
export const textOf = (
  operation: string,
  path: string,
  bytes: Uint8Array,
  encoding?: string
): Effect.Effect<string, FileSystemError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(new TextDecoder(encoding, { ignoreBOM: true }).decode(bytes))
    } catch (cause) {
      if (!Predicate.hasProperty(cause, "code") || cause.code !== STRING_TOO_LONG) throw cause
      return Effect.fail(
        new FileSystemError({
          operation,
          path,
          reason: "Unknown",
          code: STRING_TOO_LONG,
          detail: `${bytes.length} bytes decode to more characters than a string can hold (about 512 MiB): ` +
            "read the bytes or stream them instead",
          cause
        })
      )
    }
  })

/** @internal */
export const fromPlatform = (operation: string, path: string) => (error: PlatformError): FileSystemError => {
  const code = errnoCode(error)
  const reason = (code !== undefined ? byCode[code] : undefined) ??
    (error._tag === "SystemError" ? byReason[error.reason] : undefined) ?? "Unknown"
  // Node's `rm` names a directory ERR_FS_EISDIR; `code` holds errno names (the cause keeps Node's).
  const shown = code === "ERR_FS_EISDIR" ? "EISDIR" : code
  return new FileSystemError({
    operation,
    path,
    reason,
    ...(shown !== undefined ? { code: shown } : {}),
    ...(code === TOO_LARGE ? { detail: TOO_LARGE_DETAIL } : {}),
    cause: error
  })
}

/**
 * The same failure, reported for `path` (a missing directory reported as the
 * missing file inside it).
 *
 * @internal
 */
export const withPath = (error: FileSystemError, path: string): FileSystemError =>
  new FileSystemError({
    operation: error.operation,
    path,
    reason: error.reason,
    ...(error.code !== undefined ? { code: error.code } : {}),
    ...(error.cause !== undefined ? { cause: error.cause } : {})
  })

/**
 * Runs a platform call and translates its failure.
 *
 * @internal
 */
export const io = <A, R>(
  operation: string,
  path: string,
  effect: Effect.Effect<A, PlatformError, R>
): Effect.Effect<A, FileSystemError, R> => Effect.mapError(effect, fromPlatform(operation, path))

/**
 * Fails unless `at` is a regular file or a directory (following links), before
 * it is opened: opening a FIFO for reading blocks until a writer comes, in a
 * call nothing can interrupt, and a device may act on being opened. A special
 * file swapped in between this check and the open still blocks the open.
 *
 * @internal
 */
export const openable = (
  fs: FileSystem.FileSystem,
  operation: string,
  path: string,
  at: string
): Effect.Effect<FileSystem.File.Type, FileSystemError> =>
  io(operation, path, fs.stat(at)).pipe(
    Effect.filterOrFail(
      (info) => info.type === "File" || info.type === "Directory",
      (info) =>
        new FileSystemError({
          operation,
          path,
          reason: "InvalidData",
          detail: `a ${info.type}, not a file or a directory: it is not opened (opening it could block or act)`
        })
    ),
    Effect.map((info) => info.type)
  )

/**
 * Bad input: fails before any I/O or locking.
 *
 * @internal
 */
export const invalidPath = (operation: string, path: unknown, reason: InvalidPathReason, detail?: string) =>
  new InvalidPathError({ operation, path, reason, ...(detail !== undefined ? { detail } : {}) })
