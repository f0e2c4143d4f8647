/**
 * Reading the Node-style option arguments (an encoding string, an options
 * object or nothing) with Node's validation errors.
 *
 * @internal
 */
import { constants } from "node:buffer"
import { invalidArgType, invalidArgValue, outOfRange } from "./errors.js"
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

/** @internal */
export const encodingOf = (bag: Bag, fallback: Encoding): Encoding => {
  const encoding = bag.encoding
  if (encoding === undefined || encoding === null) return encoding === null ? null : fallback
  if (encoding === "buffer" || (typeof encoding === "string" && Buffer.isEncoding(encoding))) {
    return encoding as Encoding
  }
  throw invalidArgValue("encoding", encoding, "is invalid encoding")
}

/** @internal */
export const booleanOf = (bag: Bag, name: string): boolean => {
  const value = bag[name]
  if (value === undefined || value === null) return false
  if (typeof value !== "boolean") throw invalidArgType(`options.${name}`, "of type boolean", value)
  return value
}

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

/** Permission bits: a number, or an octal string as Node accepts. @internal */
export const modeOf = (bag: Bag): number | undefined => {
  const value = bag.mode
  if (value === undefined || value === null) return undefined
  const mode = typeof value === "string" && /^[0-7]+$/.test(value) ? parseInt(value, 8) : value
  if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw invalidArgValue("options.mode", value, "must be a 32-bit unsigned integer or an octal string")
  }
  return mode
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
