/**
 * Validation of input other than paths (data, options), for callers from
 * plain JavaScript as much as from TypeScript: bad input is a typed error
 * before any lock or I/O, never a defect.
 *
 * @internal
 */
import * as Either from "effect/Either"
import { InvalidArgumentError } from "../PersistenceError.js"
import { CHUNK_SIZE_MAX } from "./fileStream.js"

const encoder = new TextEncoder()

const fail = (operation: string, path: unknown, argument: string, detail: string) =>
  Either.left(new InvalidArgumentError({ operation, path, argument, detail }))

/** The bytes to write: a string (UTF-8) or a `Uint8Array` (a `Buffer` is one). */
export const bytes = (
  operation: string,
  path: unknown,
  data: unknown
): Either.Either<Uint8Array, InvalidArgumentError> =>
  typeof data === "string" ?
    Either.right(encoder.encode(data)) :
    data instanceof Uint8Array ?
    Either.right(data) :
    fail(operation, path, "data", `expected a string or a Uint8Array, got ${describe(data)}`)

/** An options argument as its fields: absent (`undefined` or `null`) is no field set. */
export const bag = (
  operation: string,
  path: unknown,
  options: unknown
): Either.Either<Readonly<Record<string, unknown>>, InvalidArgumentError> =>
  options === undefined || options === null ?
    Either.right(NO_OPTIONS) :
    typeof options === "object" ?
    Either.right(options as Record<string, unknown>) :
    fail(operation, path, "options", `expected an object, got ${describe(options)}`)

const NO_OPTIONS: Readonly<Record<string, unknown>> = Object.freeze({})

/**
 * Boolean options: each of `defaults` read from `options`, its default when
 * absent. Anything but a boolean is refused: a string "false" would be truthy.
 */
export const flags = <K extends string>(
  operation: string,
  path: unknown,
  options: unknown,
  defaults: Readonly<Record<K, boolean>>
): Either.Either<Record<K, boolean>, InvalidArgumentError> =>
  Either.flatMap(bag(operation, path, options), (fields) => {
    const read: Record<K, boolean> = { ...defaults }
    for (const name in defaults) {
      const value = fields[name]
      if (value === undefined) continue
      if (typeof value !== "boolean") {
        return fail(operation, path, `options.${name}`, `expected a boolean, got ${describe(value)}`)
      }
      read[name] = value
    }
    return Either.right(read)
  })

/** The permission bits of a write's options (`options.mode`). */
export const writeMode = (
  operation: string,
  path: unknown,
  options: unknown
): Either.Either<number | undefined, InvalidArgumentError> =>
  options === undefined ?
    Either.right(undefined) :
    Either.flatMap(bag(operation, path, options), (fields) => mode(operation, path, fields.mode))

/** File permission bits. */
export const mode = (
  operation: string,
  path: unknown,
  value: unknown
): Either.Either<number | undefined, InvalidArgumentError> =>
  value === undefined || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0o7777) ?
    Either.right(value as number | undefined) :
    fail(operation, path, "options.mode", `expected an integer from 0 to 0o7777, got ${describe(value)}`)

/** A text encoding the platform can decode. */
export const encoding = (
  operation: string,
  path: unknown,
  value: unknown
): Either.Either<string | undefined, InvalidArgumentError> => {
  if (value === undefined) return Either.right(undefined)
  if (typeof value === "string") {
    try {
      new TextDecoder(value)
      return Either.right(value)
    } catch {
      // fall through
    }
  }
  return fail(operation, path, "encoding", `unknown text encoding ${describe(value)}`)
}

const nonNegative = (value: unknown) => value === undefined || (Number.isSafeInteger(value) && (value as number) >= 0)

/** Stream options: non-negative integer offset and length, a positive chunk size up to 1 GiB. */
export const streamOptions = (
  operation: string,
  path: unknown,
  options: unknown
): Either.Either<{ offset?: number; bytesToRead?: number; chunkSize?: number }, InvalidArgumentError> => {
  const fields = bag(operation, path, options)
  if (Either.isLeft(fields)) return fields
  const { bytesToRead, chunkSize, offset } = fields.right
  if (!nonNegative(offset)) {
    return fail(operation, path, "options.offset", `expected a non-negative integer, got ${describe(offset)}`)
  }
  if (!nonNegative(bytesToRead)) {
    return fail(operation, path, "options.bytesToRead", `expected a non-negative integer, got ${describe(bytesToRead)}`)
  }
  if (
    chunkSize !== undefined &&
    !(Number.isSafeInteger(chunkSize) && (chunkSize as number) > 0 && (chunkSize as number) <= CHUNK_SIZE_MAX)
  ) {
    return fail(
      operation,
      path,
      "options.chunkSize",
      `expected a positive integer up to ${CHUNK_SIZE_MAX} (1 GiB), got ${describe(chunkSize)}`
    )
  }
  return Either.right(fields.right as { offset?: number; bytesToRead?: number; chunkSize?: number })
}

const describe = (value: unknown): string =>
  value === null ?
    "null" :
    typeof value === "string" ?
    JSON.stringify(value) :
    typeof value === "object" ?
    (value.constructor?.name ?? "object") :
    `${typeof value} ${String(value)}`
