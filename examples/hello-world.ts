/**
 * The original library's usage section, the Effect way: set up through layers,
 * then write, read, collect, stream, sink, rename and delete.
 *
 * Run: npm start
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Console, Effect, Layer, Schema, Stream } from "effect"
import { Client, LockManager } from "effect-persistence"
import * as os from "node:os"
import * as path from "node:path"

// Setup: one LockManager for the process, a durable Client on the Node file system.
const PersistenceLive = Client.layer({ durable: true }).pipe(
  Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer))
)

const Message = Schema.Struct({ message: Schema.String })

const program = Effect.gen(function*() {
  const client = yield* Client.Client
  const dir = path.join(os.tmpdir(), `effect-persistence-hello-${process.pid}`)
  const file = path.join(dir, "example.json")

  // Write to a file (atomically: temp file + rename; durable: fsync'd).
  yield* client.write(file, JSON.stringify({ message: "Hello, World!" }))
  yield* Console.log(`wrote ${file}`)

  // Read from a file.
  const data = yield* client.readString(file)
  yield* Console.log("read:", JSON.parse(data))

  // The same document, typed by a Schema.
  const typed = yield* client.readJson(file, Message)
  yield* Console.log("read as Message:", typed.message)

  // Collect directory contents.
  yield* Console.log("collect:", yield* client.collect(dir))

  // A sink: nothing is visible at the target until the input ends.
  yield* Stream.make(JSON.stringify({ message: "Streaming Hello, World!" }) + "\n").pipe(
    Stream.encodeText,
    Stream.run(client.sink(file))
  )
  yield* Console.log("sink committed")

  // A stream: holds a read lock until it ends.
  const streamed = yield* client.stream(file).pipe(Stream.decodeText(), Stream.mkString)
  yield* Console.log("stream:", streamed.trim())

  // Rename, then delete.
  const moved = path.join(dir, "archive", "example.json")
  yield* client.rename(file, moved)
  yield* Console.log("collect after rename:", yield* client.collect(dir, { recursive: true }))
  yield* client.delete(dir, { recursive: true })
  yield* Console.log(`deleted ${dir}`)

  const stats = yield* (yield* LockManager.LockManager).stats
  yield* Console.log("locks at the end:", JSON.stringify(stats))
})

program.pipe(Effect.provide(PersistenceLive), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
