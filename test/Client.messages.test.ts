/**
 * What a new user reads when something is wrong: the messages and error
 * fields of the mistakes one makes while trying the library, and the types of
 * the JSON helpers with a schema that has requirements.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Context, Effect, Option, ParseResult, Schema, type Scope } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import { jsonCodec } from "../src/internal/jsonCodec.js"
import * as LockManager from "../src/LockManager.js"
import type { DecodeError } from "../src/PersistenceError.js"
import { makeClient, tempDir } from "./utils/client.js"

describe("Client.make with a root that is not a directory", () => {
  it.scoped("a missing root fails at construction with NotFound, naming the root and what it must be", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* Effect.flip(makeClient({ root: `${dir}/missing` }))
      expect(error).toMatchObject({
        _tag: "FileSystemError",
        operation: "Client.make",
        path: `${dir}/missing`,
        reason: "NotFound",
        code: "ENOENT"
      })
      expect(error.message).toBe(
        `Client.make "${dir}/missing": no such file or directory (ENOENT): ` +
          "the client's root must be an existing directory"
      )
      expect(nodeFs.existsSync(`${dir}/missing`)).toBe(false)
    }))

  it.scoped("a root that is a file fails at construction with NotADirectory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/file`, "x")
      const error = yield* Effect.flip(makeClient({ root: `${dir}/file` }))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotADirectory", path: `${dir}/file` })
      expect(error.message).toContain("the client's root must be an existing directory")
    }))

  it.scoped("Client.layer fails the same way", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* Effect.flip(
        Effect.provide(Client.Client, Client.layer({ root: `${dir}/missing` })).pipe(
          Effect.provide(LockManager.layer),
          Effect.provide(NodeFileSystem.layer)
        )
      )
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", operation: "Client.make" })
    }))
})

describe("confinement messages name the client's root", () => {
  it.scoped("the client's own root is refused as the client's root, not the filesystem root", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient({ root: dir })
      const error = yield* Effect.flip(client.write(`${dir}/`, "x"))
      expect(error).toMatchObject({ _tag: "InvalidPathError", reason: "Root", root: dir })
      expect(error.message).toBe(
        `Client.write: invalid path "${dir}/": the client's root directory "${dir}" cannot be used for this operation`
      )
      const plain = yield* makeClient()
      expect((yield* Effect.flip(plain.client.write("/", "x"))).message).toBe(
        `Client.write: invalid path "/": the filesystem root cannot be used for this operation`
      )
    }))

  it.scoped("a path outside the root names the root", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/root`)
      const { client } = yield* makeClient({ root: `${dir}/root` })
      const error = yield* Effect.flip(client.read(`${dir}/other`))
      expect(error.message).toBe(
        `Client.read: invalid path "${dir}/other": the path is outside the client's root directory "${dir}/root"`
      )
    }))
})

describe("lockAll with no path", () => {
  it.scoped("says that at least one path is required and shows the empty set", () =>
    Effect.gen(function*() {
      const manager = yield* LockManager.make
      const attempts: ReadonlyArray<
        readonly [string, Effect.Effect<unknown, { readonly message: string }, Scope.Scope>]
      > = [
        ["lockAll", manager.lockAll([])],
        ["withLockAll", manager.withLockAll([])(Effect.void)]
      ]
      for (const [name, attempt] of attempts) {
        const error = yield* Effect.flip(attempt)
        expect(error).toMatchObject({ _tag: "InvalidPathError", reason: "EmptyPathSet" })
        expect(error.message).toBe(`LockManager.${name}: invalid path set []: at least one path is required`)
      }
    }))
})

describe("delete of a directory without recursive", () => {
  it.scoped("fails with IsADirectory, the errno code EISDIR and a hint, empty or not, and removes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/empty`)
      nodeFs.mkdirSync(`${dir}/full`)
      nodeFs.writeFileSync(`${dir}/full/f`, "f")
      const { client } = yield* makeClient()
      for (const name of ["empty", "full"]) {
        const error = yield* Effect.flip(client.delete(`${dir}/${name}`))
        expect(error).toMatchObject({ _tag: "FileSystemError", reason: "IsADirectory", code: "EISDIR" })
        expect(error.message).toBe(
          `Client.delete "${dir}/${name}": is a directory (EISDIR): ` +
            "pass { recursive: true } to remove a directory (even an empty one)"
        )
      }
      expect(nodeFs.readdirSync(dir).sort()).toEqual(["empty", "full"])
      yield* client.delete(`${dir}/empty`, { recursive: true })
      expect(nodeFs.readdirSync(dir)).toEqual(["full"])
    }))
})

const User = Schema.Struct({ name: Schema.String, visits: Schema.Number })

describe("JSON documents: what went wrong", () => {
  it.scoped("a file that is not JSON is InvalidJson; JSON of the wrong shape is Decode; a bad value is Encode", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/notjson`, "hello, world")
      nodeFs.writeFileSync(`${dir}/wrong.json`, JSON.stringify({ name: "ada" }))
      const { client } = yield* makeClient()

      const notJson = yield* Effect.flip(client.readJson(`${dir}/notjson`, User))
      expect(notJson).toMatchObject({ _tag: "DecodeError", reason: "InvalidJson", operation: "Client.readJson" })
      expect(notJson.message).toMatch(
        new RegExp(`^Client\\.readJson "${dir}/notjson": the document is not valid JSON: .+`)
      )
      expect(notJson.message).not.toContain("schema")
      const modified = yield* Effect.flip(client.modifyJson(`${dir}/notjson`, User, Option.getOrThrow))
      expect(modified).toMatchObject({ _tag: "DecodeError", reason: "InvalidJson" })
      expect(nodeFs.readFileSync(`${dir}/notjson`, "utf8")).toBe("hello, world")

      const wrong = yield* Effect.flip(client.readJson(`${dir}/wrong.json`, User))
      expect(wrong).toMatchObject({ _tag: "DecodeError", reason: "Decode" })
      expect(wrong.message).toContain(`"${dir}/wrong.json": the document does not match its schema: `)
      expect(wrong.cause).toBeInstanceOf(ParseResult.ParseError)

      const encode = yield* Effect.flip(client.writeJson(`${dir}/new.json`, User, { name: "x", visits: "1" } as never))
      expect(encode).toMatchObject({ _tag: "DecodeError", reason: "Encode" })
      expect(encode.message).toContain("the value does not match its schema")
      // A value with no JSON text is refused too, rather than written as a file no reader can parse.
      const nothing = yield* Effect.flip(client.writeJson(`${dir}/undefined.json`, Schema.Undefined, undefined))
      expect(nothing).toMatchObject({ _tag: "DecodeError", reason: "Encode" })
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      const cycle = yield* Effect.flip(client.writeJson(`${dir}/cycle.json`, Schema.Unknown, cyclic))
      expect(cycle).toMatchObject({ _tag: "DecodeError", reason: "Encode" })
      // A number JSON cannot hold would be written as null, which the same schema then refuses on every read.
      const Point = Schema.Struct({ x: Schema.Number, label: Schema.NullOr(Schema.String) })
      for (const x of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const notFinite = yield* Effect.flip(client.writeJson(`${dir}/point.json`, Point, { x, label: null }))
        expect(notFinite).toMatchObject({ _tag: "DecodeError", reason: "Encode" })
        expect(String(notFinite.cause)).toContain("written as null")
      }
      expect(nodeFs.readdirSync(dir).sort()).toEqual(["notjson", "wrong.json"])
      // A null of its own is written as it is.
      yield* client.writeJson(`${dir}/point.json`, Point, { x: 1, label: null })
      expect(yield* client.readJson(`${dir}/point.json`, Point)).toEqual({ x: 1, label: null })
    }))

  it("the codec of a schema is built once and reused", () => {
    expect(jsonCodec(User)).toBe(jsonCodec(User))
    expect(jsonCodec(Schema.String)).not.toBe(jsonCodec(User))
  })
})

/** A service a schema needs to decode: the current tenant, prefixed to names. */
class Tenant extends Context.Tag("test/Tenant")<Tenant, string>() {}

const TenantName = Schema.transformOrFail(Schema.String, Schema.String, {
  strict: true,
  decode: (name) => Effect.map(Tenant, (tenant) => `${tenant}/${name}`),
  encode: (name) => Effect.map(Tenant, (tenant) => name.startsWith(`${tenant}/`) ? name.slice(tenant.length + 1) : name)
})

describe("JSON helpers with a schema that has requirements", () => {
  it.scoped("carry the schema's requirements in R, and use the provided service", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient()
      const file = `${dir}/name.json`

      const write = client.writeJson(file, TenantName, "acme/ada")
      const read = client.readJson(file, TenantName)
      const modify = client.modifyJson(file, TenantName, (current) => Option.getOrElse(current, () => "none"))
      expectTypeOf(write).toEqualTypeOf<Effect.Effect<void, Client.WriteError | DecodeError, Tenant>>()
      expectTypeOf(read).toEqualTypeOf<Effect.Effect<string, Client.ReadError | DecodeError, Tenant>>()
      expectTypeOf(modify).toEqualTypeOf<Effect.Effect<string, Client.WriteError | DecodeError, Tenant>>()

      // The requirement is demanded: without the Tenant, the effect does not type-check as runnable.
      // @ts-expect-error Tenant is not provided
      const _unprovided: Effect.Effect<string, Client.ReadError | DecodeError> = read

      yield* Effect.provideService(write, Tenant, "acme")
      expect(nodeFs.readFileSync(file, "utf8")).toBe(JSON.stringify("ada"))
      expect(yield* Effect.provideService(read, Tenant, "other")).toBe("other/ada")
      expect(yield* Effect.provideService(modify, Tenant, "acme")).toBe("acme/ada")
    }))

  it.scoped("modifyJson: the function's own requirements and the schema's are both in R", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client } = yield* makeClient()
      class Suffix extends Context.Tag("test/Suffix")<Suffix, string>() {}
      const modify = client.modifyJson(`${dir}/n.json`, TenantName, (current) =>
        Effect.map(Suffix, (suffix) =>
          Option.getOrElse(current, () => "acme/new") + suffix))
      expectTypeOf(modify).toEqualTypeOf<Effect.Effect<string, Client.WriteError | DecodeError, Suffix | Tenant>>()
      const result = yield* modify.pipe(Effect.provideService(Suffix, "!"), Effect.provideService(Tenant, "acme"))
      expect(result).toBe("acme/new!")
      expect(nodeFs.readFileSync(`${dir}/n.json`, "utf8")).toBe(JSON.stringify("new!"))
    }))
})
