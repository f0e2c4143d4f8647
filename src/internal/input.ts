/**
 * Validation of input other than paths (data, options), for callers from
 * plain JavaScript as much as from TypeScript: bad input is a typed error
 * before any lock or I/O, never a defect.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
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
  // The values checked, not the caller's object: a getter could answer differently when read again.
  return Either.right({
    ...(offset !== undefined ? { offset: offset as number } : {}),
    ...(bytesToRead !== undefined ? { bytesToRead: bytesToRead as number } : {}),
    ...(chunkSize !== undefined ? { chunkSize: chunkSize as number } : {})
  })
}

/**
 * Why a setting (an option of a server, a remote manager or an etcd
 * manager) is refused: which one, and what was wrong with it.
 *
 * @internal
 */
export interface Refusal {
  readonly argument: string
  readonly detail: string
}

/** @internal */
export const refuse = (argument: string, detail: string): Either.Either<never, Refusal> =>
  Either.left({ argument, detail })

/**
 * A refused setting as the typed error of a constructor; `path` says which
 * authority or file the settings were for, when known.
 *
 * @internal
 */
export const invalidSetting = (operation: string, path: unknown, refusal: Refusal): InvalidArgumentError =>
  new InvalidArgumentError({ operation, path, argument: refusal.argument, detail: refusal.detail })

/** Would decode as a shorter duration than it says (`Duration.decode` takes NaN and negatives as 0). */
const negative = (value: unknown): boolean =>
  typeof value === "number" ?
    !(value >= 0) :
    typeof value === "bigint" ?
    value < BigInt(0) :
    typeof value === "string" ?
    /^\s*-/.test(value) :
    Array.isArray(value) && !value.every((n) => typeof n === "number" && n >= 0 && Number.isFinite(n))

/**
 * The longest delay a Node timer takes (about 24.8 days): a longer one fires
 * after 1 ms, a busy loop where a wait was meant.
 *
 * @internal
 */
export const MAX_TIMER = 2 ** 31 - 1

/**
 * A duration setting in milliseconds, from `min` to `max` (`fallback` when
 * absent). Refused: what is not a duration (it would throw), NaN and negative
 * values (they would count as 0), and anything out of range (an infinite
 * timeout would wait for ever).
 *
 * @internal
 */
export const millis = (
  argument: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number
): Either.Either<number, Refusal> => {
  if (value === undefined) return Either.right(fallback)
  const range = `from ${min} ms to ${max === Infinity ? "infinity" : `${max} ms`}`
  if (negative(value)) return refuse(argument, `expected a duration ${range}, got ${describe(value)}`)
  let ms: number
  try {
    ms = Duration.toMillis(Duration.decode(value as Duration.DurationInput))
  } catch {
    return refuse(argument, `expected a duration (milliseconds, "5 seconds", a Duration), got ${describe(value)}`)
  }
  return ms >= min && ms <= max ? Either.right(ms) : refuse(argument, `expected a duration ${range}, got ${ms} ms`)
}

/** A count setting: an integer from `min` up to a safe integer (`fallback` when absent). */
export const count = (
  argument: string,
  value: unknown,
  fallback: number,
  min: number
): Either.Either<number, Refusal> =>
  value === undefined ?
    Either.right(fallback) :
    Number.isSafeInteger(value) && (value as number) >= min ?
    Either.right(value as number) :
    refuse(argument, `expected an integer of at least ${min}, got ${describe(value)}`)

/** A string setting: non-empty, without a NUL byte (the system would cut it there). */
export const text = (argument: string, value: unknown): Either.Either<string, Refusal> =>
  typeof value !== "string" ?
    refuse(argument, `expected a string, got ${describe(value)}`) :
    value.length === 0 ?
    refuse(argument, "expected a non-empty string") :
    value.includes("\0") ?
    refuse(argument, "contains a NUL byte") :
    Either.right(value)

/** @internal */
export const describe = (value: unknown): string =>
  value === null ?
    "null" :
    typeof value === "string" ?
    JSON.stringify(value) :
    typeof value === "object" ?
    (value.constructor?.name ?? "object") :
    `${typeof value} ${String(value)}`
