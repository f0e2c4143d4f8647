/**
 * The Client against hostile input: huge chunk sizes.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Layer, Option, Stream } from "effect"
import * as nodeFs from "node:fs"
import { makeClient, tempDir } from "./utils/client.js"
import { expectIdle } from "./utils/locks.js"

/** The tag and reason of a failed effect's typed error, or a description of what happened instead. */
const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return "succeeded"
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) return `no typed error: ${Cause.pretty(exit.cause)}`
    const error = failure.value as { _tag: string; reason?: string; argument?: string }
    return [error._tag, error.reason ?? error.argument].filter((x) => x !== undefined).join(" ")
  })

/** A file system whose files record the size of every buffer `read` is given. */
const recordingReads = Effect.gen(function*() {
  const real = yield* FileSystem.FileSystem
  const sizes: Array<number> = []
  const wrap = (file: FileSystem.File): FileSystem.File => ({
    [FileSystem.FileTypeId]: FileSystem.FileTypeId,
    fd: file.fd,
    get stat() {
      return file.stat
    },
    seek: (offset, from) => file.seek(offset, from),
    sync: file.sync,
    read: (buffer) => Effect.suspend(() => (sizes.push(buffer.length), file.read(buffer))),
    readAlloc: (size) => file.readAlloc(size),
    truncate: (length) => file.truncate(length),
    write: (buffer) => file.write(buffer),
    writeAll: (buffer) => file.writeAll(buffer)
  })
  const fs = FileSystem.make({ ...real, open: (path, options) => Effect.map(real.open(path, options), wrap) })
  return { fs, sizes }
}).pipe(Effect.provide(NodeFileSystem.layer))

describe("stream: chunk sizes", () => {
  it.scoped("a chunk size past 1 GiB is a typed error before anything is read", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/f`, "hello")
      const { client, manager } = yield* makeClient()
      for (const chunkSize of [2 ** 40, 2 ** 30 + 1, 1e300]) {
        expect(yield* failureOf(Stream.runDrain(client.stream(`${dir}/f`, { chunkSize })))).toBe(
          "InvalidArgumentError options.chunkSize"
        )
      }
      yield* expectIdle(manager)
    }))

  it.scoped("a chunk size larger than the file allocates what the file holds, not the chunk size", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/small`, "hello")
      const big = Buffer.alloc(300_001, 7)
      nodeFs.writeFileSync(`${dir}/big`, big)
      const { fs, sizes } = yield* recordingReads
      const { client, manager } = yield* makeClient({}, Layer.succeed(FileSystem.FileSystem, fs))
      for (const chunkSize of [1e9, 2 ** 30]) {
        sizes.length = 0
        const chunks = yield* Stream.runCollect(client.stream(`${dir}/small`, { chunkSize }))
        expect(Chunk.toReadonlyArray(chunks).map((c) => Buffer.from(c).toString())).toEqual(["hello"])
        expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024)
      }
      // Chunks keep their size: only the last is short.
      sizes.length = 0
      const chunks = Chunk.toReadonlyArray(
        yield* Stream.runCollect(client.stream(`${dir}/big`, { chunkSize: 100_000 }))
      )
      expect(chunks.map((c) => c.length)).toEqual([100_000, 100_000, 100_000, 1])
      expect(Buffer.concat(chunks).equals(big)).toBe(true)
      expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(big.length + 64 * 1024)
      // From an offset, the allocation is what is left after it.
      sizes.length = 0
      const tail = yield* Stream.runCollect(client.stream(`${dir}/big`, { chunkSize: 1e9, offset: 300_000 }))
      expect(Chunk.toReadonlyArray(tail).map((c) => c.length)).toEqual([1])
      expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024)
      yield* expectIdle(manager)
    }))
})
