/**
 * Bad input across the Client's operations: each gives a tagged error in the
 * error channel (no defect, no thrown exception) and leaves the disk as it was.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import { leftoverName, snapshot, tempDir, tempFiles } from "./utils/client.js"

interface Env {
  readonly dir: string
  /** The confinement root of `confined`. */
  readonly root: string
  readonly client: Client.ClientService
  readonly confined: Client.ClientService
  /** Builds a Client with `options` on the same manager. */
  readonly build: (options: Client.ClientOptions) => Effect.Effect<unknown, unknown>
}

interface Hostile {
  readonly name: string
  readonly run: (env: Env) => Effect.Effect<unknown, unknown>
  /** The expected error; without it, any tagged error. */
  readonly error?: { readonly _tag: string; readonly reason?: string }
}

const bytesOf = (s: string) => new TextEncoder().encode(s)
/** A name the Client gives its temp files. */
const tempLike = leftoverName("doc")
const long = "x".repeat(300)
const invalid = (reason: string) => ({ _tag: "InvalidPathError", reason })
const fsError = (reason: string) => ({ _tag: "FileSystemError", reason })
/** Plain JavaScript callers are not stopped by the types. */
const js = <A>(value: unknown): A => value as A
const drain = (stream: Stream.Stream<Uint8Array, unknown>) => Stream.runDrain(stream)
const into = (sink: Client.ClientService["sink"], path: string, chunks: ReadonlyArray<unknown>) =>
  Stream.run(Stream.fromIterable(chunks.map((c) => js<Uint8Array>(c))), sink(path))

const cases: ReadonlyArray<Hostile> = [
  // Malformed paths: refused before any I/O or locking.
  { name: "write to a relative path", run: (e) => e.client.write("data/x", "x"), error: invalid("Relative") },
  { name: "read an empty path", run: (e) => e.client.read(""), error: invalid("Empty") },
  {
    name: "write to a path with a NUL byte",
    run: (e) => e.client.write(`${e.dir}/a\0b`, "x"),
    error: invalid("NulByte")
  },
  { name: "stream an empty path", run: (e) => drain(e.client.stream("")), error: invalid("Empty") },
  { name: "collect a relative path", run: (e) => e.client.collect("."), error: invalid("Relative") },
  { name: "recover a path with a NUL byte", run: (e) => e.client.recover(`${e.dir}\0`), error: invalid("NulByte") },
  // The filesystem root.
  { name: "write the root", run: (e) => e.client.write("/", "x"), error: invalid("Root") },
  { name: "read the root as a file", run: (e) => e.client.readString("/"), error: invalid("Root") },
  {
    name: "delete the root recursively (spelled /..)",
    run: (e) => e.client.delete("/..", { recursive: true, force: true }),
    error: invalid("Root")
  },
  { name: "rename a file onto the root", run: (e) => e.client.rename(`${e.dir}/f`, "//"), error: invalid("Root") },
  { name: "sink into the root", run: (e) => into(e.client.sink, "/", [bytesOf("x")]), error: invalid("Root") },
  { name: "modify the root", run: (e) => e.client.modify("/./", () => "x"), error: invalid("Root") },
  // Escapes from a root-confined client.
  {
    name: "confined: write escaping with ..",
    run: (e) => e.confined.write(`${e.root}/../outside/x`, "x"),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: write through a symlink to a directory outside",
    run: (e) => e.confined.write(`${e.root}/escape/new/file`, "x"),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: read a symlink to a file outside",
    run: (e) => e.confined.read(`${e.root}/secretlink`),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: modify a file outside through a symlinked directory",
    run: (e) => e.confined.modify(`${e.root}/escape/secret`, () => "stolen"),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: rename into a symlinked directory outside",
    run: (e) => e.confined.rename(`${e.root}/ok.txt`, `${e.root}/escape/stolen`),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: delete through a symlinked directory outside",
    run: (e) => e.confined.delete(`${e.root}/escape/secret`),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: collect the root's parent",
    run: (e) => e.confined.collect(`${e.root}/inside/../..`),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: sink through a symlinked directory outside",
    run: (e) => into(e.confined.sink, `${e.root}/escape/sunk`, [bytesOf("x")]),
    error: invalid("OutsideRoot")
  },
  {
    name: "confined: rename a missing source in a missing directory",
    run: (e) => e.confined.rename(`${e.root}/nodir/missing`, `${e.root}/new/x`),
    error: fsError("NotFound")
  },
  {
    name: "confined: delete in a missing directory",
    run: (e) => e.confined.delete(`${e.root}/nodir/missing`),
    error: fsError("NotFound")
  },
  {
    name: "confined: delete a directory without recursive",
    run: (e) => e.confined.delete(`${e.root}/inside`),
    error: fsError("IsADirectory")
  },
  {
    name: "confined: write the root itself",
    run: (e) => e.confined.write(e.root, "x"),
    error: invalid("Root")
  },
  {
    // The link exists but its target does not: the path still leads outside.
    name: "confined: write through a dangling symlink pointing outside",
    run: (e) => e.confined.write(`${e.root}/dangling/x`, "x"),
    error: invalid("OutsideRoot")
  },
  // Names too long.
  { name: "read a 300-character name", run: (e) => e.client.read(`${e.dir}/${long}`), error: fsError("NameTooLong") },
  {
    name: "write a 300-character name",
    run: (e) => e.client.write(`${e.dir}/${long}`, "x"),
    error: fsError("NameTooLong")
  },
  {
    name: "write below a 300-character directory name",
    run: (e) => e.client.write(`${e.dir}/${long}/child`, "x"),
    error: fsError("NameTooLong")
  },
  {
    name: "rename to a 300-character name",
    run: (e) => e.client.rename(`${e.dir}/f`, `${e.dir}/${long}`),
    error: fsError("NameTooLong")
  },
  {
    name: "write a path longer than PATH_MAX",
    run: (e) => e.client.write(`${e.dir}/${Array.from({ length: 20 }, () => "y".repeat(250)).join("/")}`, "x"),
    error: fsError("NameTooLong")
  },
  // A directory where a file is expected, and the reverse.
  { name: "read a directory", run: (e) => e.client.read(`${e.dir}/d`), error: fsError("IsADirectory") },
  { name: "stream a directory", run: (e) => drain(e.client.stream(`${e.dir}/d`)), error: fsError("IsADirectory") },
  { name: "write over a directory", run: (e) => e.client.write(`${e.dir}/d`, "x"), error: fsError("IsADirectory") },
  {
    name: "sink over a directory",
    run: (e) => into(e.client.sink, `${e.dir}/d`, [bytesOf("x")]),
    error: fsError("IsADirectory")
  },
  {
    name: "modify a directory",
    run: (e) => e.client.modify(`${e.dir}/d`, () => "x"),
    error: fsError("IsADirectory")
  },
  {
    name: "delete a directory without recursive",
    run: (e) => e.client.delete(`${e.dir}/d`),
    error: fsError("IsADirectory")
  },
  {
    name: "rename a file over a directory",
    run: (e) => e.client.rename(`${e.dir}/f`, `${e.dir}/d`),
    error: fsError("IsADirectory")
  },
  { name: "collect a file", run: (e) => e.client.collect(`${e.dir}/f`), error: fsError("NotADirectory") },
  { name: "recover a file", run: (e) => e.client.recover(`${e.dir}/f`), error: fsError("NotADirectory") },
  // A parent that is a file.
  {
    name: "write below a file",
    run: (e) => e.client.write(`${e.dir}/f/child/x`, "x"),
    error: fsError("NotADirectory")
  },
  { name: "read below a file", run: (e) => e.client.read(`${e.dir}/f/child`), error: fsError("NotADirectory") },
  {
    name: "rename to below a file",
    run: (e) => e.client.rename(`${e.dir}/d/inside`, `${e.dir}/f/child`),
    error: fsError("NotADirectory")
  },
  {
    name: "delete (forced) below a file",
    run: (e) => e.client.delete(`${e.dir}/f/child`, { force: true }),
    error: fsError("NotADirectory")
  },
  // Other impossible moves.
  {
    name: "rename a directory into itself",
    run: (e) => e.client.rename(`${e.dir}/d`, `${e.dir}/d/sub/d`),
    error: { _tag: "InvalidArgumentError" }
  },
  {
    name: "rename a directory into itself through a symlink",
    run: (e) => e.client.rename(`${e.dir}/d`, `${e.dir}/dlink/sub/d`),
    error: { _tag: "InvalidArgumentError" }
  },
  // Names of the form of the Client's temp files, which recover would remove.
  {
    name: "write to a temp file's name",
    run: (e) => e.client.write(`${e.dir}/${tempLike}`, "x"),
    error: invalid("TempName")
  },
  {
    name: "rename to below a temp file's name",
    run: (e) => e.client.rename(`${e.dir}/f`, `${e.dir}/${tempLike}/f`),
    error: invalid("TempName")
  },
  {
    name: "rename a missing source to new parents",
    run: (e) => e.client.rename(`${e.dir}/missing`, `${e.dir}/new/parents/x`),
    error: fsError("NotFound")
  },
  // Wrong types from plain JavaScript: paths.
  { name: "write to a number path", run: (e) => e.client.write(js(42), "x"), error: invalid("NotAString") },
  { name: "read an undefined path", run: (e) => e.client.read(js(undefined)), error: invalid("NotAString") },
  { name: "delete a null path", run: (e) => e.client.delete(js(null)), error: invalid("NotAString") },
  {
    name: "rename from an object path",
    run: (e) => e.client.rename(js({ path: `${e.dir}/f` }), `${e.dir}/g`),
    error: invalid("NotAString")
  },
  { name: "stream a number path", run: (e) => drain(e.client.stream(js(7))), error: invalid("NotAString") },
  {
    name: "sink into a null path",
    run: (e) => into(e.client.sink, js(null), [bytesOf("x")]),
    error: invalid("NotAString")
  },
  {
    name: "modify an undefined path",
    run: (e) => e.client.modify(js(undefined), () => "x"),
    error: invalid("NotAString")
  },
  {
    name: "readJson a String object path",
    run: (e) => e.client.readJson(js(new String(`${e.dir}/f`)), Schema.Unknown),
    error: invalid("NotAString")
  },
  // Wrong types from plain JavaScript: data (the target has missing parents,
  // so work done before the data is looked at would show).
  { name: "write the number 42", run: (e) => e.client.write(`${e.dir}/new/sub/x`, js(42)) },
  { name: "write undefined", run: (e) => e.client.write(`${e.dir}/new/sub/x`, js(undefined)) },
  { name: "write null", run: (e) => e.client.write(`${e.dir}/new/sub/x`, js(null)) },
  { name: "write a plain object", run: (e) => e.client.write(`${e.dir}/f`, js({ length: 3 })) },
  { name: "modify returning undefined", run: (e) => e.client.modify(`${e.dir}/f`, () => js(undefined)) },
  { name: "modify returning a number", run: (e) => e.client.modify(`${e.dir}/f`, () => js(42)) },
  { name: "sink of strings instead of bytes", run: (e) => into(e.client.sink, `${e.dir}/f`, ["a", "b"]) },
  {
    name: "writeJson a value its schema refuses",
    run: (e) => e.client.writeJson(`${e.dir}/f`, Schema.Number, js("not a number")),
    error: { _tag: "DecodeError" }
  },
  // Wrong options.
  { name: "write with a string mode", run: (e) => e.client.write(`${e.dir}/f`, "x", js({ mode: "rw" })) },
  { name: "readString with an unknown encoding", run: (e) => e.client.readString(`${e.dir}/f`, "klingon") },
  { name: "stream with options that are not an object", run: (e) => drain(e.client.stream(`${e.dir}/f`, js(7))) },
  // A zero chunk size must not make a non-empty file look empty.
  { name: "stream with a zero chunk size", run: (e) => drain(e.client.stream(`${e.dir}/f`, { chunkSize: 0 })) },
  { name: "stream with a negative chunk size", run: (e) => drain(e.client.stream(`${e.dir}/f`, { chunkSize: -1 })) },
  // Past 1 GiB: a typed error, not a RangeError from the allocation.
  {
    name: "stream with a chunk size of 2 ** 40",
    run: (e) => drain(e.client.stream(`${e.dir}/f`, { chunkSize: 2 ** 40 })),
    error: { _tag: "InvalidArgumentError" }
  },
  { name: "stream from a fractional offset", run: (e) => drain(e.client.stream(`${e.dir}/f`, { offset: 1.5 })) },
  {
    name: "a Client with a numeric tempSuffix",
    run: (e) => e.build(js({ tempSuffix: 42 })),
    error: { _tag: "InvalidPathError" }
  },
  { name: "a Client with a relative root", run: (e) => e.build({ root: "data" }), error: invalid("Relative") },
  // copy, exists, stat, makeDirectory.
  { name: "copy from a relative path", run: (e) => e.client.copy("f", `${e.dir}/g`), error: invalid("Relative") },
  { name: "copy onto the root", run: (e) => e.client.copy(`${e.dir}/f`, "/"), error: invalid("Root") },
  { name: "copy a directory", run: (e) => e.client.copy(`${e.dir}/d`, `${e.dir}/g`), error: fsError("IsADirectory") },
  { name: "copy below a file", run: (e) => e.client.copy(`${e.dir}/f`, `${e.dir}/f/g`) },
  { name: "copy with a string mode", run: (e) => e.client.copy(`${e.dir}/f`, `${e.dir}/g`, js({ mode: "rw" })) },
  {
    name: "confined: copy a file outside in through a symlink",
    run: (e) => e.confined.copy(`${e.root}/secretlink`, `${e.root}/stolen`),
    error: invalid("OutsideRoot")
  },
  { name: "exists of a number path", run: (e) => e.client.exists(js(1)), error: invalid("NotAString") },
  {
    name: "confined: stat through a symlinked directory outside",
    run: (e) => e.confined.stat(`${e.root}/escape/secret`),
    error: invalid("OutsideRoot")
  },
  { name: "makeDirectory of the root", run: (e) => e.client.makeDirectory("/"), error: invalid("Root") },
  {
    name: "makeDirectory over a file",
    run: (e) => e.client.makeDirectory(`${e.dir}/f`),
    error: fsError("AlreadyExists")
  },
  {
    name: "confined: makeDirectory through a symlinked directory outside",
    run: (e) => e.confined.makeDirectory(`${e.root}/escape/new`),
    error: invalid("OutsideRoot")
  }
]

/**
 * A directory with a file, a directory, a confined root holding symbolic
 * links that lead outside it, and a secret outside.
 */
const fixture = (dir: string) => {
  nodeFs.writeFileSync(`${dir}/f`, "content")
  nodeFs.mkdirSync(`${dir}/d`)
  nodeFs.writeFileSync(`${dir}/d/inside`, "inside")
  nodeFs.symlinkSync(`${dir}/d`, `${dir}/dlink`)
  nodeFs.mkdirSync(`${dir}/outside`)
  nodeFs.writeFileSync(`${dir}/outside/secret`, "secret")
  const root = `${dir}/root`
  nodeFs.mkdirSync(`${root}/inside`, { recursive: true })
  nodeFs.writeFileSync(`${root}/ok.txt`, "ok")
  nodeFs.symlinkSync(`${dir}/outside`, `${root}/escape`)
  nodeFs.symlinkSync(`${dir}/outside/secret`, `${root}/secretlink`)
  nodeFs.symlinkSync(`${dir}/outside/not-yet`, `${root}/dangling`)
  return root
}

describe("hostile input", () => {
  it("covers at least 20 bad inputs", () => {
    expect(cases.length).toBeGreaterThanOrEqual(20)
  })

  for (const c of cases) {
    it.scoped(c.name, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const root = fixture(dir)
        const manager = yield* LockManager.make
        const build = (options: Client.ClientOptions) =>
          Client.make(options).pipe(
            Effect.provideService(LockManager.LockManager, manager),
            Effect.provide(NodeFileSystem.layer)
          )
        const client = yield* build({})
        const confined = yield* build({ root })
        const before = snapshot(dir)

        let effect: Effect.Effect<unknown, unknown>
        try {
          effect = c.run({ dir, root, client, confined, build })
        } catch (thrown) {
          return expect.fail(`threw instead of returning an effect: ${String(thrown)}`)
        }
        const exit = yield* Effect.exit(effect)

        const problems: Array<string> = []
        const after = snapshot(dir)
        for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
          if (before[key] !== after[key]) {
            problems.push(`disk changed: ${key} ${before[key] === undefined ? "created" : "changed or removed"}`)
          }
        }
        if (tempFiles(dir).length > 0) problems.push(`temp files left: ${tempFiles(dir)}`)
        const stats = yield* manager.stats
        if (stats.held + stats.pending + stats.nodes > 0) problems.push(`locks left: ${JSON.stringify(stats)}`)
        if (Exit.isSuccess(exit)) {
          problems.push("succeeded")
        } else if (Cause.isDie(exit.cause)) {
          problems.push(`a defect, not a typed error: ${Cause.pretty(exit.cause).split("\n")[0]}`)
        } else {
          const failure = Cause.failureOption(exit.cause)
          if (Option.isNone(failure)) {
            problems.push(`no typed error: ${Cause.pretty(exit.cause)}`)
          } else {
            const error = failure.value as { readonly _tag?: unknown; readonly reason?: unknown }
            const seen = { _tag: error._tag, reason: error.reason }
            if (typeof error._tag !== "string") problems.push(`an untagged error: ${String(error)}`)
            else if (
              c.error !== undefined &&
              (seen._tag !== c.error._tag || (c.error.reason !== undefined && seen.reason !== c.error.reason))
            ) {
              problems.push(`expected ${JSON.stringify(c.error)}, got ${JSON.stringify(seen)}: ${String(error)}`)
            }
          }
        }
        expect(problems).toEqual([])
      }))
  }
})
