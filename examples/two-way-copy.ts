/**
 * Two programs that used to hang forever, and now end:
 *
 * 1. Two copies in opposite directions, each a `client.stream` into a `client.sink`: each holds one
 *    file's lock and asks for the other's. One side is refused at once with a `DeadlockError` (it keeps
 *    nothing), the other completes. `client.copy` takes both locks as one request and never deadlocks.
 * 2. Nested use of one path in one fiber: a read inside `modify` is granted at once (re-entrant); a
 *    read of the directory above one's own write is refused at once, and taking the directory first
 *    works.
 *
 * Run: npx tsx examples/two-way-copy.ts
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Console, Effect, Layer, Stream } from "effect"
import { Client, LockManager } from "effect-persistence"
import * as path from "node:path"

const PersistenceLive = Client.layer().pipe(Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer)))

const program = Effect.gen(function*() {
  const client = yield* Client.Client
  const manager = yield* LockManager.LockManager
  const fs = yield* FileSystem.FileSystem
  const dir = yield* Effect.acquireRelease(
    fs.makeTempDirectory({ prefix: "two-way-copy-" }),
    (dir) => Effect.orDie(client.delete(dir, { recursive: true, force: true }))
  )
  const a = path.join(dir, "a.txt")
  const b = path.join(dir, "b.txt")
  yield* client.write(a, "A".repeat(1_000_000))
  yield* client.write(b, "B".repeat(1_000_000))

  // 1. The stream-into-sink copy, both ways at once.
  const streamCopy = (from: string, to: string) =>
    client.stream(from).pipe(
      Stream.run(client.sink(to)),
      Effect.as(`${path.basename(from)} -> ${path.basename(to)}: done`),
      Effect.catchTag("DeadlockError", (e) =>
        Effect.succeed(`${path.basename(from)} -> ${path.basename(to)}: refused (${e.reason})`))
    )
  const outcomes = yield* Effect.all([streamCopy(a, b), streamCopy(b, a)], { concurrency: 2 })
  for (const outcome of outcomes) yield* Console.log(`stream into sink, ${outcome}`)
  const same = (yield* client.readString(a)) === (yield* client.readString(b))
  yield* Console.log(`after the stream copies, a and b are equal: ${same}`)

  // ... and with client.copy: one combined request (read on from, write on to) each, served in turn.
  yield* client.write(b, "B".repeat(1_000_000))
  yield* Effect.all([client.copy(a, b), client.copy(b, a)], { concurrency: 2 })
  yield* Console.log(
    `client.copy both ways: both done, a and b equal: ${
      (yield* client.readString(a)) === (yield* client.readString(b))
    }`
  )

  // 2. Nested use of one path.
  const counter = path.join(dir, "counter")
  yield* client.write(counter, "41")
  const next = yield* client.modify(counter, () => Effect.map(client.readString(counter), (n) => String(Number(n) + 1)))
  yield* Console.log(`modify(counter, () => readString(counter)): ${next}`)

  const refused = yield* client.modify(counter, () => Effect.map(client.collect(dir), (names) => names.join(","))).pipe(
    Effect.flip
  )
  yield* Console.log(`modify(counter, () => collect(dir)): ${refused._tag}: ${refused.message}`)

  const listed = yield* manager.withLock(dir, "write")(
    client.modify(counter, () => Effect.map(client.collect(dir), (names) => names.sort().join(",")))
  )
  yield* Console.log(`with the directory taken first: ${listed}`)
  yield* Console.log(`locks at the end: ${JSON.stringify(yield* manager.stats)}`)
})

program.pipe(Effect.scoped, Effect.provide(PersistenceLive), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
