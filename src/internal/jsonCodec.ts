/**
 * JSON documents typed by a `Schema`. The text is parsed and printed here and
 * only the value goes through the schema, so a file that is not JSON at all
 * and a document that does not match are two different errors. The schema's
 * decoder and encoder are built once per schema (as the platform's
 * `KeyValueStore.layerSchema` does), not on every call.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { DecodeError } from "../PersistenceError.js"

/** @internal */
export interface JsonCodec<A, R> {
  readonly decode: (operation: string, path: string, text: string) => Effect.Effect<A, DecodeError, R>
  readonly encode: (operation: string, path: string, value: A) => Effect.Effect<string, DecodeError, R>
}

// Keyed by the schema object: a schema built anew on every call (an inline
// `Schema.Struct`) gets its own entry, collected with it.
const codecs = new WeakMap<object, JsonCodec<any, any>>()

/**
 * The codec of `schema`: the same object for the same schema.
 *
 * @internal
 */
export const jsonCodec = <A, I, R>(schema: Schema.Schema<A, I, R>): JsonCodec<A, R> => {
  let codec = codecs.get(schema)
  if (codec === undefined) {
    codec = make(schema)
    codecs.set(schema, codec)
  }
  return codec
}

/** A `JSON.stringify` replacer that throws on a number JSON cannot represent. */
const finiteOnly = (_key: string, value: unknown): unknown => {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new Error(`${value} has no JSON form (it would be written as null)`)
  }
  return value
}

/**
 * JSON text without the byte order mark some editors write before a
 * document: no part of it, and `JSON.parse` refuses it.
 *
 * @internal
 */
export const withoutBom = (text: string): string => text.charCodeAt(0) === 0xfeff ? text.slice(1) : text

/**
 * Whether JSON text may have a member named `__proto__`: by that name, or
 * spelled with escapes. Most documents have neither, and need no walk.
 */
const mayNameProto = (text: string): boolean => text.includes("__proto__") || text.includes("\\u")

/**
 * Where a parsed document has a member named `__proto__` (`$.a[0]`), if it
 * has one. `JSON.parse` makes such a member an own property, but a schema's
 * record decoder assigns it, which sets the decoded object's prototype: the
 * document would choose what the object inherits (`{"__proto__":
 * {"admin": true}}` reads as `admin`), and the member would be gone from the
 * next write. Walked without recursion: a document may nest deeper than the
 * stack.
 */
const protoMember = (document: unknown): string | undefined => {
  interface Step {
    readonly value: unknown
    readonly key: string | number | undefined
    readonly parent: Step | undefined
  }
  const where = (step: Step): string => {
    let out = ""
    for (let at: Step | undefined = step; at?.key !== undefined; at = at.parent) {
      const key = at.key
      out = (typeof key === "number"
        ? `[${key}]`
        : /^[A-Za-z_$][\w$]*$/.test(key)
        ? `.${key}`
        : `[${JSON.stringify(key)}]`) +
        out
    }
    return "$" + out
  }
  const stack: Array<Step> = [{ value: document, key: undefined, parent: undefined }]
  while (stack.length > 0) {
    const step = stack.pop()!
    const value = step.value
    if (typeof value !== "object" || value === null) continue
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push({ value: value[i], key: i, parent: step })
      continue
    }
    if (Object.hasOwn(value, "__proto__")) return where({ value: undefined, key: "__proto__", parent: step })
    for (const key of Object.keys(value)) stack.push({ value: (value as any)[key], key, parent: step })
  }
  return undefined
}

/**
 * Where the JSON `text` has a member named `__proto__` (see `protoMember`),
 * if it has one; `document` is the text parsed, when the caller has it. Text
 * that is not JSON has none (its parse reports it).
 *
 * @internal
 */
export const protoMemberIn = (text: string, document: () => unknown = () => JSON.parse(text)): string | undefined => {
  if (!mayNameProto(text)) return undefined
  let parsed: unknown
  try {
    parsed = document()
  } catch {
    return undefined
  }
  return protoMember(parsed)
}

/**
 * Why a document's `__proto__` member is refused.
 *
 * @internal
 */
export const protoRefusal = (where: string): string =>
  `the member ${where} would be decoded as the object's prototype, not as a member`

const make = <A, I, R>(schema: Schema.Schema<A, I, R>): JsonCodec<A, R> => {
  const decodeValue = Schema.decodeUnknown(schema)
  const encodeValue = Schema.encode(schema)
  return {
    decode: (operation, path, text) => {
      let json: unknown
      try {
        json = JSON.parse(withoutBom(text))
      } catch (cause) {
        return Effect.fail(new DecodeError({ operation, path, reason: "InvalidJson", cause }))
      }
      const proto = protoMemberIn(text, () => json)
      if (proto !== undefined) {
        return Effect.fail(
          new DecodeError({ operation, path, reason: "Decode", cause: new Error(protoRefusal(proto)) })
        )
      }
      return Effect.suspend(() => decodeValue(json)).pipe(
        Effect.mapError((cause: ParseResult.ParseError) =>
          new DecodeError({ operation, path, reason: "Decode", cause })
        ),
        // A recursive schema walks the document by recursion: one nested deeper
        // than the stack (JSON.parse itself takes it) does not match it.
        Effect.catchSomeDefect((defect) =>
          defect instanceof RangeError ?
            Option.some(Effect.fail(new DecodeError({ operation, path, reason: "Decode", cause: defect }))) :
            Option.none()
        )
      )
    },
    encode: (operation, path, value) =>
      Effect.flatMap(
        Effect.mapError(encodeValue(value), (cause) => new DecodeError({ operation, path, reason: "Encode", cause })),
        (encoded) => {
          try {
            // `undefined` (and functions, symbols) have no JSON text: writing "undefined" would make a file
            // that no reader can parse.
            const text: string | undefined = JSON.stringify(encoded)
            // NaN and the infinities print as `null`, which the schema would
            // then refuse on every read: look again only when a null was printed.
            if (text?.includes("null")) JSON.stringify(encoded, finiteOnly)
            if (text === undefined) {
              return Effect.fail(
                new DecodeError({ operation, path, reason: "Encode", cause: new Error("the value has no JSON form") })
              )
            }
            // What no read would take back (see `protoMember`) is not written.
            const proto = protoMemberIn(text)
            return proto === undefined ?
              Effect.succeed(text) :
              Effect.fail(new DecodeError({ operation, path, reason: "Encode", cause: new Error(protoRefusal(proto)) }))
          } catch (cause) {
            // A cycle, a BigInt, a throwing toJSON, a number that is not finite.
            return Effect.fail(new DecodeError({ operation, path, reason: "Encode", cause }))
          }
        }
      )
  }
}
