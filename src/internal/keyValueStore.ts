/**
 * `@effect/platform`'s `KeyValueStore` on a `Client`: one file per key inside
 * one directory, so every operation gets the Client's locks, atomic
 * replacement and (when the Client is durable) fsyncs.
 *
 * Keys are encoded into file names that are the same on Linux and macOS:
 * - `a`-`z`, `0`-`9` and `_` stay as they are, and so do `-` and `.` except
 *   as the first character (no hidden file, no `.`/`..`, no name a shell
 *   reads as an option);
 * - an upper-case ASCII letter is `^` and the letter in lower case;
 * - any other UTF-16 code unit is `%` and two lower-case hex digits below
 *   0x80, `%u` and four above (lone surrogates included, so every JavaScript
 *   string has an encoding and two strings never share one);
 * - the empty key is `%`.
 * The names use only lower-case ASCII, so keys that differ in case or in
 * Unicode normalisation stay distinct on a case-insensitive or normalising
 * file system (macOS), and no name can contain `/` or NUL. (Windows would
 * also need a trailing `.` and device names such as `con` escaped.)
 *
 * An encoding longer than `SEGMENT` characters is cut into pieces of
 * `SEGMENT`, one path segment each: every piece but the last is a directory
 * whose name ends with `+`, every piece but the first starts with `+`. `+`
 * never occurs in an encoding, so a directory never has a key's name, and the
 * pieces joined give the key back. Encodings longer than `MAX_ENCODED` are
 * refused: the path must stay within the system's path length.
 *
 * A file counts as a key when its path below the directory is exactly the
 * encoding of some key; temp files of writers in progress (hidden names),
 * foreign files and directories do not.
 *
 * @internal
 */
import * as PlatformError from "@effect/platform/Error"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Api from "../Client.js"
import { isPersistenceError, type PersistenceError } from "../PersistenceError.js"
import { textOf } from "./errors.js"
import { protoMemberIn, protoRefusal, withoutBom } from "./jsonCodec.js"
import { join, normalize, ROOT } from "./path.js"

/**
 * Characters of an encoding per path segment: with its markers a name stays
 * below the 255 bytes most file systems allow, and the Client's temp name
 * beside it (about 26 bytes longer) too. Not below eCryptfs's 143: there a
 * set of a key whose last piece is longer than about 115 characters fails
 * with `ENAMETOOLONG`.
 *
 * @internal
 */
export const SEGMENT = 128

/**
 * The longest encoding accepted: 2,048 lower-case ASCII characters, 1,024
 * upper-case ones, 341 UTF-16 code units outside ASCII. With its markers and
 * the directory, the path stays below Linux's 4,096 bytes for directories up
 * to about 1,900.
 *
 * @internal
 */
export const MAX_ENCODED = 2048

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")

/** The key as one string of the name alphabet, before it is cut into segments. */
const encodeText = (key: string): string => {
  if (key.length === 0) return "%"
  let out = ""
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95 || (i > 0 && (c === 45 || c === 46))) {
      out += key[i]
    } else if (c >= 65 && c <= 90) {
      out += "^" + String.fromCharCode(c + 32)
    } else if (c < 0x80) {
      out += "%" + hex(c, 2)
    } else {
      out += "%u" + hex(c, 4)
    }
  }
  return out
}

/**
 * The path of `key` below the store's directory, or why it has none.
 *
 * @internal
 */
export const encodeKey = (key: string): Either.Either<string, string> => {
  const text = encodeText(key)
  if (text.length > MAX_ENCODED) {
    return Either.left(`the key encodes to ${text.length} characters, at most ${MAX_ENCODED} are allowed`)
  }
  if (text.length <= SEGMENT) return Either.right(text)
  const pieces: Array<string> = []
  for (let i = 0; i < text.length; i += SEGMENT) pieces.push(text.slice(i, i + SEGMENT))
  return Either.right(
    pieces.map((piece, i) => (i > 0 ? "+" : "") + piece + (i < pieces.length - 1 ? "+" : "")).join("/")
  )
}

/** Pieces of the longest encoding: at most this many path segments below the store's directory. */
const MAX_PIECES = Math.ceil(MAX_ENCODED / SEGMENT)

/**
 * Whether a directory `depth` levels below the store's could hold pieces of
 * long keys: every piece but the last is exactly `SEGMENT` characters, with
 * its markers.
 */
const isPieceDirectory = (name: string, depth: number): boolean =>
  name.endsWith("+") && (depth === 0 ?
    name.length === SEGMENT + 1 && !name.startsWith("+") :
    name.length === SEGMENT + 2 && name.startsWith("+"))

const hexDigits = /^[0-9a-f]+$/

/** Reads the name alphabet back; `undefined` for text no key encodes to (checked by the caller). */
const decodeText = (text: string): string | undefined => {
  if (text === "%") return ""
  let out = ""
  for (let i = 0; i < text.length;) {
    const c = text[i]
    if (c === "^") {
      out += text.charAt(i + 1).toUpperCase()
      i += 2
    } else if (c === "%") {
      const wide = text[i + 1] === "u"
      const digits = wide ? text.slice(i + 2, i + 6) : text.slice(i + 1, i + 3)
      if (digits.length !== (wide ? 4 : 2) || !hexDigits.test(digits)) return undefined
      out += String.fromCharCode(parseInt(digits, 16))
      i += wide ? 6 : 3
    } else {
      out += c
      i += 1
    }
  }
  return out
}

/**
 * The key whose encoding is exactly `path` (relative to the store's
 * directory, `/`-separated), if there is one.
 *
 * @internal
 */
export const decodeKey = (path: string): Option.Option<string> => {
  const parts = path.split("/")
  let text = ""
  for (let i = 0; i < parts.length; i++) {
    let part = parts[i]
    if (i > 0) {
      if (!part.startsWith("+")) return Option.none()
      part = part.slice(1)
    }
    if (i < parts.length - 1) {
      if (!part.endsWith("+")) return Option.none()
      part = part.slice(0, -1)
    }
    text += part
  }
  const key = decodeText(text)
  // Only the one canonical spelling counts: anything else is not ours.
  if (key === undefined) return Option.none()
  const again = encodeKey(key)
  return Either.isRight(again) && again.right === path ? Option.some(key) : Option.none()
}

const shown = (key: string) => JSON.stringify(key.length > 80 ? key.slice(0, 80) + "..." : key)

const systemReason: Partial<Record<string, PlatformError.SystemErrorReason>> = {
  NotFound: "NotFound",
  PermissionDenied: "PermissionDenied",
  AlreadyExists: "AlreadyExists",
  Busy: "Busy",
  TimedOut: "TimedOut",
  InvalidData: "InvalidData",
  // A remote lock authority that did not answer in time.
  Timeout: "TimedOut"
}

/**
 * The platform's error for one of ours: bad input is a `BadArgument`,
 * anything else a `SystemError`; ours is the `cause`, and its message the
 * description.
 */
const toPlatform =
  (method: string, key: string | undefined) => (error: PersistenceError): PlatformError.PlatformError => {
    const description = key === undefined ? error.message : `key ${shown(key)}: ${error.message}`
    if (error._tag === "InvalidPathError" || error._tag === "InvalidArgumentError") {
      return new PlatformError.BadArgument({ module: "KeyValueStore", method, description, cause: error })
    }
    const reason = "reason" in error ? systemReason[error.reason] : undefined
    const path = "path" in error && typeof error.path === "string" ? { pathOrDescriptor: error.path } : {}
    return new PlatformError.SystemError({
      module: "KeyValueStore",
      method,
      reason: reason ?? "Unknown",
      ...path,
      description,
      cause: error
    })
  }

const badKey = (method: string, description: string) =>
  new PlatformError.BadArgument({ module: "KeyValueStore", method, description })

/** A `modify` on a missing key: the update stops before writing anything. */
class Absent {
  readonly _tag = "Absent"
}
const absent = new Absent()

/**
 * A Node `Buffer` (what the file system reads) as a plain `Uint8Array` view
 * of the same bytes, as the in-memory store gives: equality checks, `toString`
 * and `JSON.stringify` then behave the same on both.
 */
const plain = (bytes: Uint8Array): Uint8Array =>
  Object.getPrototypeOf(bytes) === Uint8Array.prototype ?
    bytes :
    new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * @internal
 */
export const make = (
  client: Api.ClientService,
  options: { readonly directory: string }
): Effect.Effect<KeyValueStore.KeyValueStore, PlatformError.PlatformError> =>
  Effect.gen(function*() {
    const normal = normalize(options?.directory)
    if (Either.isLeft(normal) || normal.right === ROOT) {
      return yield* badKey(
        "layerKeyValueStore",
        `options.directory must be an absolute path other than "/", got ${JSON.stringify(options?.directory)}`
      )
    }
    const directory = normal.right
    // Refuses now what every operation would refuse later (a directory
    // outside the client's root, a file where the directory should be); a
    // missing directory is made by the first `set`.
    yield* client.collect(directory).pipe(
      Effect.catchIf((e) => e._tag === "FileSystemError" && e.reason === "NotFound", () => Effect.void),
      Effect.mapError(toPlatform("layerKeyValueStore", undefined))
    )

    const fileOf = (method: string, key: string): Either.Either<string, PlatformError.BadArgument> => {
      if (typeof key !== "string") return Either.left(badKey(method, `a key must be a string, got ${typeof key}`))
      return Either.mapBoth(encodeKey(key), {
        onLeft: (reason) => badKey(method, `key ${shown(key)}: ${reason}`),
        onRight: (path) => join(directory, path)
      })
    }

    /** Runs `f` on the key's file; a missing file is `None`. */
    const read = <A>(
      method: string,
      key: string,
      f: (file: string) => Effect.Effect<A, Api.ReadError>
    ): Effect.Effect<Option.Option<A>, PlatformError.PlatformError> =>
      Effect.flatMap(fileOf(method, key), (file) =>
        f(file).pipe(
          Effect.map(Option.some),
          Effect.catchIf((e) => e._tag === "FileSystemError" && e.reason === "NotFound", () => Effect.succeedNone),
          Effect.mapError(toPlatform(method, key))
        ))

    /**
     * One read-modify-write under the key's write lock: `None` (and no write)
     * when the key is missing. `update` may be an effect: `forSchema` decodes
     * and encodes inside the lock.
     */
    const modifyWith = <A extends string | Uint8Array, E, R>(
      method: string,
      key: string,
      update: (current: Uint8Array, file: string) => A | Effect.Effect<A, E, R>
    ): Effect.Effect<Option.Option<A>, PlatformError.PlatformError | E, R> =>
      Effect.flatMap(fileOf(method, key), (file) =>
        client.modify<A, E | Absent, R>(
          file,
          (current) => Option.isNone(current) ? Effect.fail(absent) : update(current.value, file)
        ).pipe(
          Effect.map(Option.some),
          // Not `=== absent`: a failure inside a span is a proxy of the value failed with.
          Effect.catchIf((e): e is Absent => e instanceof Absent, () => Effect.succeedNone),
          Effect.mapError((e) => isPersistenceError(e) ? toPlatform(method, key)(e) : e as E)
        ))

    /**
     * The files of this store's keys. Only where a key can be is listed: the
     * directory, and below it the directories of long keys' pieces, each
     * under its own read lock. A foreign tree beside the keys (a `.git`) is
     * never walked, and no link is followed into: a link to a directory,
     * even one named as a piece, is not descended. A link named as a key is
     * a key when it leads to a file this Client may read (as `get` would read
     * through it); `clear` removes it in any case, and never what it leads to.
     */
    const keyFiles = (
      method: string,
      links: "readable" | "all"
    ): Effect.Effect<Array<string>, PlatformError.PlatformError> => {
      const below = (prefix: string, depth: number): Effect.Effect<Array<string>, PersistenceError> =>
        client.collectEntries(prefix === "" ? directory : join(directory, prefix), { followLinks: false }).pipe(
          // A piece directory removed since its parent was listed holds nothing.
          Effect.catchIf((e) => e._tag === "FileSystemError" && e.reason === "NotFound", () => Effect.succeed([])),
          Effect.flatMap((entries) => {
            const files: Array<Effect.Effect<Array<string>, PersistenceError>> = []
            for (const { name, type } of entries) {
              const path = prefix + name
              if (type === "Directory") {
                if (depth < MAX_PIECES - 1 && isPieceDirectory(name, depth)) files.push(below(`${path}/`, depth + 1))
              } else if ((type === "File" || type === "SymbolicLink") && Option.isSome(decodeKey(path))) {
                const file = join(directory, path)
                files.push(
                  type === "File" || links === "all" ?
                    Effect.succeed([file]) :
                    client.stat(file).pipe(
                      Effect.map((info) => info.type === "File" ? [file] : []),
                      // Dangling, a loop, out of a confined root, hidden by another user's directory.
                      Effect.orElseSucceed(() => [])
                    )
                )
              }
            }
            return Effect.map(Effect.all(files, { concurrency: 8 }), (found) => found.flat())
          })
        )
      return Effect.mapError(below("", 0), toPlatform(method, undefined))
    }

    const store: KeyValueStore.KeyValueStore = KeyValueStore.make({
      get: (key) => read("get", key, (file) => client.readString(file)),
      getUint8Array: (key) => read("getUint8Array", key, (file) => Effect.map(client.read(file), plain)),
      has: (key) => Effect.map(read("has", key, (file) => client.read(file)), Option.isSome),
      set: (key, value) =>
        Effect.flatMap(
          fileOf("set", key),
          (file) => Effect.mapError(client.write(file, value), toPlatform("set", key))
        ),
      remove: (key) =>
        Effect.flatMap(
          fileOf("remove", key),
          (file) => Effect.mapError(client.delete(file, { force: true }), toPlatform("remove", key))
        ),
      modify: (key, f) =>
        modifyWith("modify", key, (current, file) =>
          Effect.flatMap(
            Effect.mapError(textOf("KeyValueStore.modify", file, current), toPlatform("modify", key)),
            (text) => {
              // The schema store's update is an effect (see `makeSchemaStore`).
              const next: unknown = f(text)
              return Effect.isEffect(next) ? next as Effect.Effect<string> : Effect.succeed(next as string)
            }
          )),
      modifyUint8Array: (key, f) => modifyWith("modifyUint8Array", key, (current) => f(plain(current))),
      size: Effect.map(keyFiles("size", "readable"), (files) => files.length),
      // Key by key, each removal atomic (and durable with a durable Client):
      // a key set while `clear` runs may survive it. Foreign files stay.
      clear: Effect.flatMap(keyFiles("clear", "all"), (files) =>
        Effect.forEach(
          files,
          (file) => Effect.mapError(client.delete(file, { force: true }), toPlatform("clear", undefined)),
          { concurrency: 8, discard: true }
        )),
      forSchema<A, I, R>(this: KeyValueStore.KeyValueStore | undefined, schema: Schema.Schema<A, I, R>) {
        // `this`, as the platform does, so a prefixed store's schema store keeps the prefix.
        return makeSchemaStore(this ?? store, schema)
      }
    })
    return store
  })

/**
 * The platform's schema store, with a `modify` that decodes, updates and
 * encodes inside one locked read-modify-write (the platform's own is a `get`
 * then a `set`, which loses concurrent updates).
 */
const makeSchemaStore = <A, I, R>(
  store: KeyValueStore.KeyValueStore,
  schema: Schema.Schema<A, I, R>
): KeyValueStore.SchemaStore<A, R> => {
  const json = Schema.parseJson(schema)
  const decodeText = Schema.decodeUnknown(json)
  const encodeText = Schema.encode(json)
  /** As `encodeText`, refusing what `decode` would refuse to read back. */
  const encode = (value: A): Effect.Effect<string, ParseResult.ParseError, R> =>
    Effect.flatMap(encodeText(value), (text) => {
      const proto = protoMemberIn(text)
      return proto === undefined ?
        Effect.succeed(text) :
        Effect.fail(ParseResult.parseError(new ParseResult.Type(json.ast, value, protoRefusal(proto))))
    })
  /**
   * As `decodeText`, after a byte order mark (a value saved by an editor as
   * "UTF-8 with BOM"), refusing a value with a member named `__proto__` (see
   * `protoMemberIn`).
   */
  const decode = (value: string): Effect.Effect<A, ParseResult.ParseError, R> => {
    const text = withoutBom(value)
    const proto = protoMemberIn(text)
    return proto === undefined ?
      decodeText(text) :
      Effect.fail(ParseResult.parseError(new ParseResult.Type(json.ast, text, protoRefusal(proto))))
  }

  const get = (key: string) =>
    Effect.flatMap(
      store.get(key),
      (text) => Option.isNone(text) ? Effect.succeedNone : Effect.asSome(decode(text.value))
    )

  const set = (key: string, value: A) => Effect.flatMap(encode(value), (text) => store.set(key, text))

  const modify = (key: string, f: (value: A) => A) =>
    Effect.suspend(() => {
      let next: Option.Option<A> = Option.none()
      // The update is an effect, which this store's `modify` runs under the
      // key's lock; a prefixing wrapper passes it through unchanged.
      const update = (text: string): Effect.Effect<string, ParseResult.ParseError, R> =>
        Effect.flatMap(decode(text), (value) => {
          const updated = f(value)
          next = Option.some(updated)
          return encode(updated)
        })
      return store.modify(key, update as unknown as (text: string) => string).pipe(
        Effect.map((written) => Option.isSome(written) ? next : Option.none<A>())
      ) as Effect.Effect<Option.Option<A>, PlatformError.PlatformError | ParseResult.ParseError, R>
    })

  return {
    [KeyValueStore.SchemaStoreTypeId]: KeyValueStore.SchemaStoreTypeId,
    get,
    set,
    modify,
    remove: store.remove,
    clear: store.clear,
    size: store.size,
    has: store.has,
    isEmpty: store.isEmpty
  }
}
