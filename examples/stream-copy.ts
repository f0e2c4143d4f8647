/**
 * Copies a large file with constant memory: `client.stream` (a read lock on the source while it flows)
 * into `client.sink` (a temp file next to the target, renamed over it when the input ends), printing the
 * progress, then checks that the copy is identical (SHA-256 of both files, read through the client).
 *
 * The source is made by the program: SIZE_MIB MiB of random bytes (default 64) in a temp directory,
 * removed at the end.
 *
 * Run: SIZE_MIB=256 npx tsx examples/stream-copy.ts
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Config, Console, Effect, Layer, Option, Stream } from "effect"
import { Client, LockManager } from "effect-persistence"
import { createHash, randomBytes } from "node:crypto"
import * as path from "node:path"

const MiB = 1024 * 1024

const PersistenceLive = Client.layer({ durable: true }).pipe(
  Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer))
)

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

/** `size` random bytes, one MiB per chunk, generated as the sink pulls them. */
const randomContent = (size: number) =>
  Stream.unfold(0, (offset) =>
    offset >= size ?
      Option.none() :
      Option.some([new Uint8Array(randomBytes(Math.min(MiB, size - offset))), offset + MiB] as const))

const program = Effect.gen(function*() {
  const client = yield* Client.Client
  const fs = yield* FileSystem.FileSystem
  const sizeMiB = yield* Config.number("SIZE_MIB").pipe(
    Config.validate({ message: "SIZE_MIB must be a positive number", validation: (n) => n > 0 }),
    Config.withDefault(64)
  )
  const size = Math.round(sizeMiB * MiB)

  // Removed at the end, also on failure or interruption.
  const dir = yield* Effect.acquireRelease(
    fs.makeTempDirectory({ prefix: "stream-copy-" }),
    (dir) => Effect.orDie(client.delete(dir, { recursive: true, force: true }))
  )
  const source = path.join(dir, "source", "data.bin")
  const copy = path.join(dir, "copy", "data.bin")

  yield* randomContent(size).pipe(Stream.run(client.sink(source)))
  yield* Console.log(`source: ${source} (${mib(size)})`)

  // Progress at every tenth of the size crossed (the sink sees nothing of this).
  let copied = 0
  let reported = 0
  yield* client.stream(source).pipe(
    Stream.tap((chunk) => {
      copied += chunk.length
      const tenth = Math.floor((copied * 10) / size)
      if (tenth === reported) return Effect.void
      reported = tenth
      return Console.log(`copied ${mib(copied)} / ${mib(size)} (${Math.floor((copied * 100) / size)}%)`)
    }),
    Stream.run(client.sink(copy))
  )

  const sha256 = (file: string) =>
    client.stream(file).pipe(
      Stream.runFold(createHash("sha256"), (hash, chunk) => hash.update(chunk)),
      Effect.map((hash) => hash.digest("hex"))
    )
  const [a, b] = yield* Effect.all([sha256(source), sha256(copy)], { concurrency: 2 })
  yield* Console.log(`sha256 source: ${a}`)
  yield* Console.log(`sha256 copy:   ${b}`)
  const identical = a === b && copied === size
  yield* Console.log(`done: ${copied} bytes, identical: ${identical}`)
  if (!identical) return yield* Effect.dieMessage("the copy differs from the source")
})

program.pipe(Effect.scoped, Effect.provide(PersistenceLive), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
