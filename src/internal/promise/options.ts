/**
 * Reading the Node-style option arguments (an encoding string, an options
 * object or nothing) with Node's validation errors.
 *
 * @internal
 */
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

/** @internal */
export const integerOf = (bag: Bag, name: string, min = 0): number | undefined => {
  const value = bag[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number") throw invalidArgType(`options.${name}`, "of type number", value)
  if (!Number.isInteger(value) || value < min) throw outOfRange(`options.${name}`, `an integer >= ${min}`, value)
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

/** Options a locked stream cannot honour. @internal */
export const refuseStreamOptions = (bag: Bag): void => {
  if (bag.fd !== undefined && bag.fd !== null) throw invalidArgValue("options.fd", bag.fd, "is not supported")
  if (bag.fs !== undefined && bag.fs !== null) throw invalidArgValue("options.fs", "fs", "is not supported")
  if (bag.autoClose === false) {
    throw invalidArgValue("options.autoClose", false, "must not be false (the lock is released when the stream closes)")
  }
}

/** @internal */
export const signalOf = (bag: Bag): AbortSignal | undefined => validateSignal(bag.signal)
