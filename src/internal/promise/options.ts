/**
 * Reading the Node-style option arguments (an encoding string, an options
 * object or nothing) with Node's validation errors.
 *
 * @internal
 */
import { constants } from "node:buffer"
import { invalidArgType, invalidArgValue, outOfRange, unknownEncoding } from "./errors.js"
import { validateSignal } from "./run.js"

/** `null` stands for "bytes" (a Buffer), as in Node. @internal */
export type Encoding = BufferEncoding | "buffer" | null

type Bag = Record<string, unknown>

/** @internal */
export const bagOf = (name: string, options: unknown): Bag => {
  if (options === undefined || options === null) return {}
  if (typeof options === "string") return { encoding: options }
  if (typeof options === "object") return options as Bag
  throw invalidArgType(name, "of type string or an instance of Object", options)
}

/**
 * As `bagOf`, for the calls whose options the original read field by field
 * (`options?.encoding`, ...) rather than passing them to Node: a number or a
 * boolean there has no fields, so it was ignored, and is here.
 *
 * @internal
 */
export const fieldsOf = (options: unknown): Bag =>
  typeof options === "string" || (typeof options === "object" && options !== null) ?
    bagOf("options", options) :
    {}

/**
 * The options of `delete`, which the original passed to Node's `rm`: nothing,
 * or an object (`null`, a string, a number, an array are refused as `rm`
 * refuses them, before anything is removed).
 *
 * @internal
 */
export const objectOf = (options: unknown): Bag => {
  if (options === undefined) return {}
  if (typeof options === "object" && options !== null && !Array.isArray(options)) return options as Bag
  throw invalidArgType("options", "of type object", options)
}

/**
 * The encoding option. `"buffer"` (bytes, no decoding) is one only where Node
 * takes it, in a directory listing (`allowBuffer`); elsewhere the original
 * failed on it as Node does (`ERR_UNKNOWN_ENCODING`).
 *
 * @internal
 */
export const encodingOf = (bag: Bag, fallback: Encoding, allowBuffer = false): Encoding => {
  const encoding = bag.encoding
  if (encoding === undefined || encoding === null) return encoding === null ? null : fallback
  if (encoding === "buffer" && allowBuffer) return encoding
  if (typeof encoding === "string" && Buffer.isEncoding(encoding)) return encoding
  if (encoding === "buffer") throw unknownEncoding(encoding)
  throw invalidArgValue("encoding", encoding, "is invalid encoding")
}

/** A flag Node checks to be a boolean (`rm`'s `recursive` and `force`). @internal */
export const booleanOf = (bag: Bag, name: string): boolean => {
  const value = bag[name]
  if (value === undefined || value === null) return false
  if (typeof value !== "boolean") throw invalidArgType(`options.${name}`, "of type boolean", value)
  return value
}

/**
 * `flush`: only `true` asks for fsync. The original ignored the option (its
 * Client's `durable` decided), so any other value is ignored as it was.
 *
 * @internal
 */
export const flushOf = (bag: Bag): boolean => bag.flush === true

/** A flag Node reads by truthiness (`readdir`'s `recursive` and `withFileTypes`). @internal */
export const truthyOf = (bag: Bag, name: string): boolean => Boolean(bag[name])

/**
 * An integer option, checked as Node's `validateInteger` checks it (and with
 * its messages): `label` is the name Node's error gives it.
 *
 * @internal
 */
export const integerOf = (
  bag: Bag,
  key: string,
  label = `options.${key}`,
  min = 0,
  max = Number.MAX_SAFE_INTEGER
): number | undefined => {
  const value = bag[key]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number") throw invalidArgType(label, "of type number", value)
  if (!Number.isInteger(value)) throw outOfRange(label, "an integer", value)
  if (value < min || value > max) throw outOfRange(label, `>= ${min} && <= ${max}`, value)
  return value
}

/**
 * The largest `highWaterMark` of a read stream: the largest Buffer Node can
 * make (a read of more could not be held in one). The original failed above
 * it only once reading began, with a stream error; the facade refuses it at
 * the call.
 *
 * @internal
 */
export const READ_HIGH_WATER_MARK_MAX = constants.MAX_LENGTH

/**
 * `highWaterMark` as Node's streams check it: an integer >= 0, else
 * `ERR_INVALID_ARG_VALUE` with Node's message. A read stream also needs it
 * between 1 (Node's fs stream reads nothing with 0) and
 * {@link READ_HIGH_WATER_MARK_MAX}, else `ERR_OUT_OF_RANGE`. A write stream
 * takes any: it is only the amount buffered before `write` says wait.
 *
 * @internal
 */
export const highWaterMarkOf = (bag: Bag, stream: "read" | "write"): number | undefined => {
  const value = bag.highWaterMark
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw invalidArgValue("options.highWaterMark", value)
  }
  if (stream === "read" && (value < 1 || value > READ_HIGH_WATER_MARK_MAX)) {
    throw outOfRange("options.highWaterMark", `>= 1 && <= ${READ_HIGH_WATER_MARK_MAX}`, value)
  }
  return value
}

/**
 * Permission bits, checked as Node's `parseFileMode` checks them (and with
 * its errors): an octal string or an integer from 0 to 2^32 - 1. Bits above
 * the permissions (a file type's, `0o100644`) are dropped, as `open` drops
 * them.
 *
 * @internal
 */
export const modeOf = (bag: Bag): number | undefined => {
  let value = bag.mode
  if (value === undefined || value === null) return undefined
  if (typeof value === "string") {
    if (!/^[0-7]+$/.test(value)) {
      throw invalidArgValue("mode", value, "must be a 32-bit unsigned integer or an octal string")
    }
    value = parseInt(value, 8)
  }
  if (typeof value !== "number") throw invalidArgType("mode", "of type number", value)
  if (!Number.isInteger(value)) throw outOfRange("mode", "an integer", value)
  if (value < 0 || value > 0xffffffff) throw outOfRange("mode", ">= 0 && <= 4294967295", value)
  return value & 0o7777
}

/** Only the flag an operation always uses is accepted: anything else would change its meaning. @internal */
export const flagOf = (bag: Bag, name: "flag" | "flags", only: string): void => {
  const value = bag[name]
  if (value !== undefined && value !== null && value !== only) {
    throw invalidArgValue(`options.${name}`, value, `is not supported (only "${only}")`)
  }
}

/** @internal */
export const signalOf = (bag: Bag): AbortSignal | undefined => validateSignal(bag.signal)
