/**
 * `Client.layerKeyValueStore`: the platform's documented `KeyValueStore`
 * behaviour, run against the platform's in-memory store and ours (the same
 * tests on both), then what only a store on files has to get right: no lost
 * update under concurrent `modify`, keys that cannot leave the directory or
 * collide, `size` and `clear` that see only this store's keys, errors as
 * `PlatformError`s that keep ours as the cause, and durability.
 */
import { KeyValueStore } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import * as PlatformError from "@effect/platform/Error"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck, Layer, Option, ParseResult, Schema, type Scope } from "effect"
import * as nodeFs from "node:fs"
import * as nodePath from "node:path"
import * as Client from "../src/Client.js"
import { decodeKey, encodeKey, MAX_ENCODED, SEGMENT } from "../src/internal/keyValueStore.js"
import * as LockManager from "../src/LockManager.js"
import * as Testing from "../src/Testing.js"
import { clientLayer, tempDir } from "./utils/client.js"
import { check } from "./utils/powerLoss.js"

type Store = KeyValueStore.KeyValueStore

/** A store on a fresh Client (and LockManager) over the real file system. */
const fileStore = (
  directory: string,
  options?: Client.ClientOptions
): Effect.Effect<Store, PlatformError.PlatformError> =>
  Effect.provide(
    KeyValueStore.KeyValueStore,
    Client.layerKeyValueStore({ directory }).pipe(Layer.provide(clientLayer(options)))
  )

interface Implementation {
  readonly name: string
  /** A fresh, empty store. */
  readonly make: Effect.Effect<Store, never, Scope.Scope>
}

const implementations: ReadonlyArray<Implementation> = [
  { name: "KeyValueStore.layerMemory", make: Effect.provide(KeyValueStore.KeyValueStore, KeyValueStore.layerMemory) },
  {
    name: "Client.layerKeyValueStore",
    make: Effect.flatMap(tempDir, (dir) => Effect.orDie(fileStore(`${dir}/kv`)))
  }
]

const bytesOf = (s: string) => new TextEncoder().encode(s)

/** Keys that a file name could not hold as they are, or that would collide if taken as names. */
const awkwardKeys: ReadonlyArray<string> = [
  "",
  " ",
  "/",
  "/foo/bar",
  "foo/bar",
  ".",
  "..",
  "../x",
  "a\0b",
  "\0",
  "User",
  "user",
  "USER",
  "caf\u00e9", // NFC
  "cafe\u0301", // NFD: the same text to a normalising file system
  "\ud800", // lone surrogates: distinct strings with no UTF-8 form
  "\udfff",
  "%",
  "%25",
  "^a",
  "+",
  "a+",
  "-rf",
  "x".repeat(SEGMENT),
  "x".repeat(SEGMENT + 1),
  "y".repeat(1000),
  "\u{1f600}".repeat(100)
]

for (const implementation of implementations) {
  describe(`KeyValueStore behaviour: ${implementation.name}`, () => {
    const withStore = <A, E>(f: (store: Store) => Effect.Effect<A, E>) => Effect.flatMap(implementation.make, f)

    it.scoped("get of a missing key is None; set then get gives the value; set again replaces it", () =>
      withStore((store) =>
        Effect.gen(function*() {
          expect(yield* store.get("foo")).toEqual(Option.none())
          yield* store.set("foo", "bar")
          expect(yield* store.get("foo")).toEqual(Option.some("bar"))
          yield* store.set("foo", "baz")
          expect(yield* store.get("foo")).toEqual(Option.some("baz"))
          yield* store.set("/foo/bar", "nested")
          expect(yield* store.get("/foo/bar")).toEqual(Option.some("nested"))
          expect(yield* store.size).toBe(2)
        })
      ))

    it.scoped("a value is given back as it was set, a leading U+FEFF too, and modify sees it", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* store.set("bom", "\ufeffx")
          expect(yield* store.get("bom")).toEqual(Option.some("\ufeffx"))
          expect(yield* store.modify("bom", (value) => value + "y")).toEqual(Option.some("\ufeffxy"))
          expect(yield* store.getUint8Array("bom")).toEqual(Option.some(bytesOf("\ufeffxy")))
        })
      ))

    it.scoped("getUint8Array gives the UTF-8 bytes of a string value, and bytes as they were set", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* store.set("text", "h\u00e9llo")
          expect(yield* store.getUint8Array("text")).toEqual(Option.some(bytesOf("h\u00e9llo")))
          const bytes = new Uint8Array([0, 1, 2, 0xff, 0xfe])
          yield* store.set("bytes", bytes)
          expect(yield* store.getUint8Array("bytes")).toEqual(Option.some(bytes))
          expect(yield* store.getUint8Array("missing")).toEqual(Option.none())
        })
      ))

    it.scoped("remove deletes a key; removing a missing key succeeds", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* store.set("foo", "bar")
          yield* store.set("other", "x")
          yield* store.remove("foo")
          expect(yield* store.get("foo")).toEqual(Option.none())
          expect(yield* store.get("other")).toEqual(Option.some("x"))
          expect(yield* store.size).toBe(1)
          yield* store.remove("foo")
          yield* store.remove("never-set")
        })
      ))

    it.scoped("has, isEmpty, size and clear", () =>
      withStore((store) =>
        Effect.gen(function*() {
          expect(yield* store.isEmpty).toBe(true)
          expect(yield* store.size).toBe(0)
          yield* store.set("a", "1")
          yield* store.set("b", "2")
          expect(yield* store.has("a")).toBe(true)
          expect(yield* store.has("c")).toBe(false)
          expect(yield* store.isEmpty).toBe(false)
          expect(yield* store.size).toBe(2)
          yield* store.clear
          expect(yield* store.size).toBe(0)
          expect(yield* store.isEmpty).toBe(true)
          expect(yield* store.get("a")).toEqual(Option.none())
          yield* store.set("a", "again")
          expect(yield* store.get("a")).toEqual(Option.some("again"))
        })
      ))

    it.scoped("modify updates an existing key and returns the new value; a missing key stays missing", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* store.set("foo", "bar")
          expect(yield* store.modify("foo", (v) => v + "bar")).toEqual(Option.some("barbar"))
          expect(yield* store.get("foo")).toEqual(Option.some("barbar"))
          expect(yield* store.modify("missing", (v) => v + "bar")).toEqual(Option.none())
          expect(yield* store.has("missing")).toBe(false)
          expect(yield* store.size).toBe(1)
        })
      ))

    it.scoped("modifyUint8Array works on bytes, and also leaves a missing key missing", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* store.set("bytes", new Uint8Array([1, 2]))
          const updated = yield* store.modifyUint8Array("bytes", (b) => new Uint8Array([...b, 3]))
          expect(updated).toEqual(Option.some(new Uint8Array([1, 2, 3])))
          expect(yield* store.getUint8Array("bytes")).toEqual(Option.some(new Uint8Array([1, 2, 3])))
          expect(yield* store.modifyUint8Array("missing", (b) => b)).toEqual(Option.none())
          expect(yield* store.size).toBe(1)
        })
      ))

    it.scoped("any string is a key: separators, dots, NUL, case, normalisation, surrogates, length", () =>
      withStore((store) =>
        Effect.gen(function*() {
          yield* Effect.forEach(awkwardKeys, (key, i) => store.set(key, `value ${i}`), { discard: true })
          expect(yield* store.size).toBe(awkwardKeys.length)
          for (const [i, key] of awkwardKeys.entries()) {
            expect(yield* store.get(key), JSON.stringify(key)).toEqual(Option.some(`value ${i}`))
          }
          yield* Effect.forEach(awkwardKeys, (key) => store.remove(key), { discard: true })
          expect(yield* store.isEmpty).toBe(true)
        })
      ))

    it.scoped("forSchema and layerSchema: typed values, updated by modify; a value of another shape is a ParseError", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const User = Schema.Struct({ name: Schema.String, age: Schema.Number })
          const users = store.forSchema(User)
          yield* users.set("ada", { name: "Ada", age: 36 })
          expect(yield* users.modify("ada", (u) => ({ ...u, age: u.age + 1 }))).toEqual(
            Option.some({ name: "Ada", age: 37 })
          )
          expect(yield* users.get("ada")).toEqual(Option.some({ name: "Ada", age: 37 }))
          expect(yield* users.modify("nobody", (u) => u)).toEqual(Option.none())
          yield* store.set("broken", JSON.stringify({ name: "x" }))
          expect(yield* Effect.flip(users.get("broken"))).toBeInstanceOf(ParseResult.ParseError)
          expect(yield* Effect.flip(users.modify("broken", (u) => u))).toBeInstanceOf(ParseResult.ParseError)
          expect(yield* store.get("broken")).toEqual(Option.some(JSON.stringify({ name: "x" })))

          const UserStore = KeyValueStore.layerSchema(User, "test/UserStore")
          const viaLayer = yield* Effect.provide(UserStore.tag, UserStore.layer).pipe(
            Effect.provideService(KeyValueStore.KeyValueStore, store)
          )
          expect(yield* viaLayer.get("ada")).toEqual(Option.some({ name: "Ada", age: 37 }))
        })
      ))

    it.scoped("prefix: a prefixed view reads and writes the store's prefixed keys, its schema store too", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const prefixed = KeyValueStore.prefix(store, "tenant/")
          yield* prefixed.set("foo", "bar")
          yield* prefixed.modify("foo", (v) => v + "bar")
          expect(yield* prefixed.get("foo")).toEqual(Option.some("barbar"))
          expect(yield* store.get("tenant/foo")).toEqual(Option.some("barbar"))
          const Count = Schema.NumberFromString
          const counts = prefixed.forSchema(Count)
          yield* counts.set("n", 1)
          expect(yield* counts.modify("n", (n) => n + 1)).toEqual(Option.some(2))
          expect(yield* store.get("tenant/n")).toEqual(Option.some(JSON.stringify("2")))
        })
      ))
  })
}

describe("Client.layerKeyValueStore: concurrency", () => {
  it.live("100 fibers x 10 modify on one key end at exactly 1000", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/kv`)
      yield* store.set("counter", "0")
      yield* Effect.forEach(
        Array.from({ length: 100 }),
        () => Effect.repeatN(store.modify("counter", (n) => String(Number(n) + 1)), 9),
        { concurrency: "unbounded", discard: true }
      )
      expect(yield* store.get("counter")).toEqual(Option.some("1000"))
    }).pipe(Effect.scoped))

  it.live("a schema store's modify is one locked update too: 50 fibers x 10, through a prefix, end at 500", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/kv`)
      const counts = KeyValueStore.prefix(store, "counts/").forSchema(Schema.Struct({ n: Schema.Number }))
      yield* counts.set("c", { n: 0 })
      yield* Effect.forEach(
        Array.from({ length: 50 }),
        () => Effect.repeatN(counts.modify("c", ({ n }) => ({ n: n + 1 })), 9),
        { concurrency: "unbounded", discard: true }
      )
      expect(yield* counts.get("c")).toEqual(Option.some({ n: 500 }))
      expect(yield* store.get("counts/c")).toEqual(Option.some(JSON.stringify({ n: 500 })))
    }).pipe(Effect.scoped))

  it.live("two stores on one directory and one LockManager do not lose updates between them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const manager = yield* LockManager.make
      // Two Clients (one durable), each with its own store, sharing the manager.
      const storeOn = (durable: boolean) =>
        Effect.orDie(Effect.provide(
          KeyValueStore.KeyValueStore,
          Client.layerKeyValueStore({ directory: `${dir}/kv` }).pipe(
            Layer.provide(Client.layer({ durable })),
            Layer.provide(Layer.merge(Layer.succeed(LockManager.LockManager, manager), NodeFileSystem.layer))
          )
        ))
      const a = yield* storeOn(false)
      const b = yield* storeOn(true)
      yield* a.set("n", "0")
      const bump = (store: Store) => Effect.repeatN(store.modify("n", (n) => String(Number(n) + 1)), 49)
      yield* Effect.all([bump(a), bump(b), bump(a), bump(b)], { concurrency: "unbounded" })
      expect(yield* b.get("n")).toEqual(Option.some("200"))
    }).pipe(Effect.scoped))
})

/** Every path below `dir` (files and directories), relative, sorted. */
const tree = (dir: string): Array<string> => (nodeFs.readdirSync(dir, { recursive: true }) as Array<string>).sort()

const NAME = /^[a-z0-9_%^+][a-z0-9_.%^+-]*$/

describe("Client.layerKeyValueStore: schema stores", () => {
  it.scoped("a value with a member named __proto__ is a ParseError naming it, modify leaves it; a leading BOM is skipped", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/kv`)
      const settings = store.forSchema(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
      const text = `{"theme":"dark","__proto__":{"admin":true}}`
      yield* store.set("s", text)
      const error = yield* Effect.flip(settings.get("s"))
      expect(error._tag).toBe("ParseError")
      expect(String(error.message)).toContain("the member $.__proto__ would be decoded as the object's prototype")
      expect((yield* Effect.flip(settings.modify("s", (s) => s)))._tag).toBe("ParseError")
      expect(yield* store.get("s")).toEqual(Option.some(text))
      // Nor is one written where the schema passes it on (a record's encoder makes it the prototype first).
      expect((yield* Effect.flip(store.forSchema(Schema.Unknown).set("w", JSON.parse(text))))._tag).toBe("ParseError")
      expect(yield* store.has("w")).toBe(false)
      // Without one, as ever; after a byte order mark too (a file saved as "UTF-8 with BOM").
      yield* store.set("t", `{"theme":"__proto__"}`)
      expect(yield* settings.get("t")).toEqual(Option.some({ theme: "__proto__" }))
      yield* store.set("u", `\ufeff{"theme":"dark"}`)
      expect(yield* settings.get("u")).toEqual(Option.some({ theme: "dark" }))
      expect(yield* settings.modify("u", (s) => ({ ...s, size: 2 }))).toEqual(Option.some({ theme: "dark", size: 2 }))
    }))
})

describe("Client.layerKeyValueStore: keys and files", () => {
  const hostile = Array.from(
    new Set([
      ...awkwardKeys,
      "../../etc/passwd",
      "/etc/passwd",
      "a/../../../b",
      "..\\..\\windows",
      "%2e%2e%2f",
      "..%2F..%2F",
      "con",
      "nul.txt",
      "a\nb",
      "\u202eevil", // right-to-left override
      "\uff21", // fullwidth A
      "A".repeat(SEGMENT),
      "z".repeat(MAX_ENCODED)
    ])
  )

  it.scoped("keys from a hostile list stay inside the directory, in distinct files with portable names", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/sentinel`, "untouched")
      const store = yield* fileStore(`${dir}/kv`)
      yield* Effect.forEach(hostile, (key, i) => store.set(key, String(i)), { discard: true })

      // Nothing outside the store's directory.
      expect(nodeFs.readdirSync(dir).sort()).toEqual(["kv", "sentinel"])
      expect(nodeFs.readFileSync(`${dir}/sentinel`, "utf8")).toBe("untouched")
      const files = tree(`${dir}/kv`).filter((p) => nodeFs.statSync(`${dir}/kv/${p}`).isFile())
      expect(files.length).toBe(hostile.length)
      for (const file of files) {
        for (const name of file.split("/")) {
          expect(name, file).toMatch(NAME)
          expect(Buffer.byteLength(name)).toBeLessThanOrEqual(SEGMENT + 2)
        }
        // Each file holds the value of the key its name decodes to.
        const key = Option.getOrThrow(decodeKey(file))
        expect(nodeFs.readFileSync(`${dir}/kv/${file}`, "utf8"), file).toBe(String(hostile.indexOf(key)))
      }
      // Distinct even where case is folded or Unicode normalised.
      expect(new Set(files.map((f) => f.toLowerCase().normalize("NFC"))).size).toBe(files.length)
      for (const [i, key] of hostile.entries()) {
        expect(yield* store.get(key), JSON.stringify(key)).toEqual(Option.some(String(i)))
      }
    }))

  it.scoped("a key too long for a path is a BadArgument and writes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/kv`)
      const key = "\u00e9".repeat(400) // 6 characters each
      const error = yield* Effect.flip(store.set(key, "x"))
      expect(error).toBeInstanceOf(PlatformError.BadArgument)
      expect(error.message).toContain(`the key encodes to 2400 characters, at most ${MAX_ENCODED} are allowed`)
      expect((yield* Effect.flip(store.get(key)))._tag).toBe("BadArgument")
      expect(nodeFs.existsSync(`${dir}/kv`)).toBe(false)
    }))

  it.scoped("size and clear see only this store's keys: not temp files, foreign files or directories", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const kv = `${dir}/kv`
      const store = yield* fileStore(kv)
      yield* store.set("a", "1")
      yield* store.set("b".repeat(SEGMENT * 2), "2")
      const foreign = [
        "README.TXT", // upper case: no key encodes to it
        ".a.0123456789ab.tmp", // a writer's temp file
        ".hidden",
        "x+", // a directory marker on a file
        "%zz",
        "%41", // "A" is spelled ^a
        "notes/readme", // inside a foreign directory
        `${"b".repeat(SEGMENT)}+/${".c".repeat(4)}` // inside our directory, not an encoding
      ]
      for (const path of foreign) {
        nodeFs.mkdirSync(nodePath.dirname(`${kv}/${path}`), { recursive: true })
        nodeFs.writeFileSync(`${kv}/${path}`, "foreign")
      }
      nodeFs.mkdirSync(`${kv}/empty`) // a directory with a key's name
      expect(yield* store.size).toBe(2)
      yield* store.clear
      expect(yield* store.size).toBe(0)
      for (const path of foreign) expect(nodeFs.readFileSync(`${kv}/${path}`, "utf8"), path).toBe("foreign")
      expect(nodeFs.statSync(`${kv}/empty`).isDirectory()).toBe(true)
    }))

  it.scoped("size and clear: a looping link, a link to outside named as a piece directory, a key-named link", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const kv = `${dir}/kv`
      const outside = `${dir}/outside`
      const piece = "y".repeat(SEGMENT)
      nodeFs.mkdirSync(kv)
      nodeFs.mkdirSync(outside)
      // What a walk through the linked piece directory would take for the key `piece + "z"`.
      nodeFs.writeFileSync(`${outside}/+z`, "outside")
      nodeFs.writeFileSync(`${outside}/secret`, "outside")
      nodeFs.symlinkSync(`${outside}/`, `${kv}/${piece}+`)
      nodeFs.symlinkSync(".x", `${kv}/.x`) // a loop, foreign
      nodeFs.symlinkSync("loop", `${kv}/loop`) // a loop, named as a key
      nodeFs.symlinkSync(`${outside}/secret`, `${kv}/linked`) // a key whose file is elsewhere
      nodeFs.symlinkSync(`${outside}/missing`, `${kv}/dangling`)
      const store = yield* fileStore(kv)
      yield* store.set("a", "1")
      yield* store.set("b".repeat(SEGMENT * 2), "2")
      // The keys `get` can read: "a", the long one and "linked".
      expect(yield* store.get("linked")).toEqual(Option.some("outside"))
      expect(yield* store.has("loop").pipe(Effect.either, Effect.map(Either.isLeft))).toBe(true)
      expect(yield* store.size).toBe(3)
      yield* store.clear
      expect(yield* store.size).toBe(0)
      // Links named as keys are removed, never what they lead to; the rest stays.
      // (`remove` and `clear` leave a long key's piece directories, empty.)
      const bPiece = `${"b".repeat(SEGMENT)}+`
      expect(nodeFs.readdirSync(kv).sort()).toEqual([".x", bPiece, `${piece}+`])
      expect(nodeFs.readdirSync(`${kv}/${bPiece}`)).toEqual([])
      expect(nodeFs.readdirSync(outside).sort()).toEqual(["+z", "secret"])
      expect(nodeFs.readFileSync(`${outside}/+z`, "utf8")).toBe("outside")
    }))

  it.scoped("size and clear list only where keys can be: a foreign tree beside them costs no file system call", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const kv = `${dir}/kv`
      /** The file system calls `size` then `clear` make on the store as it stands. */
      const callsOfSizeAndClear = Effect.gen(function*() {
        const faults = yield* Testing.FaultFileSystem.FaultFileSystem
        const store = yield* KeyValueStore.KeyValueStore
        const before = yield* faults.calls
        const size = yield* store.size
        yield* store.clear
        return { size, calls: (yield* faults.calls) - before }
      }).pipe(
        Effect.provide(
          Client.layerKeyValueStore({ directory: kv }).pipe(
            Layer.provideMerge(Client.layer()),
            Layer.provideMerge(LockManager.layer),
            Layer.provideMerge(Testing.FaultFileSystem.layer()),
            Layer.provide(NodeFileSystem.layer),
            Layer.orDie
          )
        )
      )
      const keys = (store: Store) =>
        Effect.forEach(["a", "b", "c".repeat(SEGMENT * 3)], (key) => store.set(key, key), { discard: true })
      yield* keys(yield* fileStore(kv))
      const plain = yield* callsOfSizeAndClear
      expect(plain.size).toBe(3)
      yield* keys(yield* fileStore(kv))
      // A foreign repository: directories, and directories named like pieces in it.
      for (let i = 0; i < 20; i++) {
        const sub = `${kv}/.git/objects/${i}/${"d".repeat(SEGMENT)}+`
        nodeFs.mkdirSync(sub, { recursive: true })
        nodeFs.writeFileSync(`${sub}/+e`, "foreign")
      }
      nodeFs.mkdirSync(`${kv}/notes`)
      const foreign = yield* callsOfSizeAndClear
      expect(foreign.size).toBe(3)
      // Two more entries at the top level, listed by `size` and by `clear`:
      // a `stat` and a `readLink` each, and nothing below them.
      expect(foreign.calls).toBe(plain.calls + 2 * 2 * 2)
      expect(nodeFs.readdirSync(`${kv}/.git/objects`).length).toBe(20)
    }))

  it.scoped("a confined store with a key's name planted as a link to outside the root: clear removes the link", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/root/kv`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/secret`, "outside")
      nodeFs.symlinkSync(`${dir}/secret`, `${dir}/root/kv/evil`)
      const store = yield* KeyValueStore.KeyValueStore.pipe(
        Effect.provide(
          Client.layerKeyValueStore({ directory: `${dir}/root/kv` }).pipe(
            Layer.provide(Client.layer({ root: `${dir}/root` })),
            Layer.provide(Layer.merge(LockManager.layer, NodeFileSystem.layer))
          )
        )
      )
      yield* store.set("a", "1")
      // Reading through it stays refused.
      expect((yield* Effect.flip(store.get("evil")))._tag).toBe("BadArgument")
      yield* store.clear
      expect(yield* store.size).toBe(0)
      expect(nodeFs.readdirSync(`${dir}/root/kv`)).toEqual([])
      expect(nodeFs.readFileSync(`${dir}/secret`, "utf8")).toBe("outside")
      // Removing it alone works too; then the key can be set.
      nodeFs.symlinkSync(`${dir}/secret`, `${dir}/root/kv/evil`)
      yield* store.remove("evil")
      yield* store.set("evil", "mine")
      expect(yield* store.get("evil")).toEqual(Option.some("mine"))
      expect(nodeFs.readFileSync(`${dir}/secret`, "utf8")).toBe("outside")
    }))

  it.scoped("the directory is created by the first set; a store on a missing directory is empty", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/a/b/kv`)
      expect(yield* store.size).toBe(0)
      expect(yield* store.get("k")).toEqual(Option.none())
      yield* store.clear
      yield* store.remove("k")
      expect(nodeFs.existsSync(`${dir}/a`)).toBe(false)
      yield* store.set("k", "v")
      expect(nodeFs.readFileSync(`${dir}/a/b/kv/k`, "utf8")).toBe("v")
    }))
})

describe("Client.layerKeyValueStore: key encoding", () => {
  it("round-trips every string, with names of the portable alphabet", () => {
    const seed = Number(process.env.KV_SEED ?? Math.floor(Math.random() * 0x7fffffff))
    const key = FastCheck.oneof(
      FastCheck.string({ unit: "binary", maxLength: 40 }),
      FastCheck.string({
        unit: FastCheck.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
        maxLength: 40
      }),
      FastCheck.string({ unit: FastCheck.constantFrom("a", "A", ".", "-", "%", "^", "+", "/", "\0"), maxLength: 400 })
    )
    FastCheck.assert(
      FastCheck.property(key, (k) => {
        const path = Either.getOrThrow(encodeKey(k))
        expect(decodeKey(path)).toEqual(Option.some(k))
        for (const name of path.split("/")) {
          expect(name).toMatch(NAME)
          expect(name.length).toBeLessThanOrEqual(SEGMENT + 2)
        }
      }),
      // fast-check names the seed in its failure message: replay with KV_SEED=<seed>.
      { seed, numRuns: 2000 }
    )
  })

  it("names that are not an encoding do not decode", () => {
    for (
      const name of [
        "A",
        ".a",
        "-a",
        "%41",
        "%2E",
        "%u0041",
        "%%",
        "%g0",
        "^",
        "^^",
        "a+",
        "+a",
        "a/b",
        "x".repeat(SEGMENT + 1),
        `${"x".repeat(SEGMENT)}+/x`, // too short to need a second piece
        `${"x".repeat(SEGMENT - 1)}+/+xx`, // a first piece shorter than a segment
        ".a.0123456789ab.tmp"
      ]
    ) {
      expect(decodeKey(name), name).toEqual(Option.none())
    }
    expect(decodeKey("%")).toEqual(Option.some(""))
  })
})

describe("Client.layerKeyValueStore: errors", () => {
  it.scoped("a directory that is not absolute, the root, or outside a confined client's root fails the layer", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (const directory of ["relative/kv", "", "/"]) {
        const error = yield* Effect.flip(fileStore(directory))
        expect(error).toBeInstanceOf(PlatformError.BadArgument)
        expect(error.message).toContain("options.directory must be an absolute path")
      }
      nodeFs.mkdirSync(`${dir}/root`)
      const outside = yield* Effect.flip(fileStore(`${dir}/elsewhere`, { root: `${dir}/root` }))
      expect(outside).toBeInstanceOf(PlatformError.BadArgument)
      expect(outside.cause).toMatchObject({ _tag: "InvalidPathError", reason: "OutsideRoot" })
      nodeFs.writeFileSync(`${dir}/file`, "x")
      const notADirectory = yield* Effect.flip(fileStore(`${dir}/file`))
      expect(notADirectory).toMatchObject({
        _tag: "SystemError",
        module: "KeyValueStore",
        method: "layerKeyValueStore"
      })
      expect(notADirectory.cause).toMatchObject({ _tag: "FileSystemError", reason: "NotADirectory" })
    }))

  it.scoped("an operation's failure is a SystemError naming the key, with the Client's error as cause", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* fileStore(`${dir}/kv`)
      nodeFs.mkdirSync(`${dir}/kv/k`, { recursive: true }) // a foreign directory where key "k" would be
      const error = yield* Effect.flip(store.get("k"))
      expect(error).toBeInstanceOf(PlatformError.SystemError)
      expect(error).toMatchObject({ module: "KeyValueStore", method: "get", pathOrDescriptor: `${dir}/kv/k` })
      expect(error.cause).toMatchObject({ _tag: "FileSystemError", reason: "IsADirectory" })
      expect(error.message).toContain(`key "k": Client.readString "${dir}/kv/k": is a directory`)
      const write = yield* Effect.flip(store.set("k", "v"))
      expect(write).toMatchObject({ _tag: "SystemError", method: "set" })
      // A value that is neither a string nor bytes (from plain JavaScript) is bad input.
      const bad = yield* Effect.flip(store.set("x", 42 as unknown as string))
      expect(bad).toBeInstanceOf(PlatformError.BadArgument)
      expect(bad.cause).toMatchObject({ _tag: "InvalidArgumentError", argument: "data" })
      const notAKey = yield* Effect.flip(store.get(7 as unknown as string))
      expect(notAKey).toBeInstanceOf(PlatformError.BadArgument)
      expect(notAKey.message).toBe("KeyValueStore.get: a key must be a string, got number")
      expect(nodeFs.readdirSync(`${dir}/kv`)).toEqual(["k"])
    }))
})

describe("Client.layerKeyValueStore: durability", () => {
  it.effect("with a durable Client, a set that returned survives a power loss; until then the old value or the new", () =>
    Effect.gen(function*() {
      const long = "k".repeat(SEGMENT * 2)
      const longPath = `/data/kv/${Either.getOrThrow(encodeKey(long))}`
      const verdict = yield* check({
        name: "KeyValueStore.set",
        initial: { "/data/kv/": "", "/data/kv/target": "old" },
        run: (client) =>
          Effect.gen(function*() {
            const store = yield* Effect.provide(
              KeyValueStore.KeyValueStore,
              Client.layerKeyValueStore({ directory: "/data/kv" })
            ).pipe(Effect.provideService(Client.Client, client))
            yield* store.set("target", "new")
            yield* store.set(long, "long")
          }),
        during: (s) =>
          (s["/data/kv/target"] === "old" || s["/data/kv/target"] === "new") &&
          (s[longPath] === undefined || s[longPath] === "long"),
        after: (s) => s["/data/kv/target"] === "new" && s[longPath] === "long"
      }, { durable: true })
      expect(verdict.during.violations).toBe(0)
      expect(verdict.after.violations).toBe(0)
      expect(verdict.after.states).toBeGreaterThan(0)
    }))
})
