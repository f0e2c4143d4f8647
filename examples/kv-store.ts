/**
 * `@effect/platform`'s `KeyValueStore`, kept by effect-persistence: a program written against the
 * platform's interface moves from `KeyValueStore.layerFileSystem` (which writes in place, without
 * locks) to `Client.layerKeyValueStore` by changing one layer. The same program runs on both: 100
 * concurrent `modify` calls on one counter, a typed store through `KeyValueStore.layerSchema`, keys
 * that a file name could not hold as they are, then `clear`.
 *
 * Run: npx tsx examples/kv-store.ts
 */
import { FileSystem, KeyValueStore } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Console, Effect, Layer, Option, Schema } from "effect"
import { Client, LockManager } from "effect-persistence"

const Session = Schema.Struct({ user: Schema.String, expires: Schema.Number })
const Sessions = KeyValueStore.layerSchema(Session, "example/Sessions")

const program = (name: string) =>
  Effect.gen(function*() {
    const store = yield* KeyValueStore.KeyValueStore

    // A read-modify-write per request: each must see the previous one's result.
    yield* store.set("visits", "0")
    yield* Effect.forEach(
      Array.from({ length: 100 }),
      () => store.modify("visits", (n) => String(Number(n) + 1)),
      { concurrency: "unbounded", discard: true }
    )
    const visits = Option.getOrElse(yield* store.get("visits"), () => "none")
    yield* Console.log(`${name}: visits after 100 concurrent increments: ${visits}`)

    // Typed values, through the platform's own schema layer.
    const sessions = yield* Effect.provide(Sessions.tag, Sessions.layer)
    yield* sessions.set("ada", { user: "ada", expires: 1_900_000_000 })
    yield* sessions.modify("ada", (session) => ({ ...session, expires: session.expires + 3600 }))
    yield* Console.log(`${name}: session of ada:`, Option.getOrNull(yield* sessions.get("ada")))

    // Keys that differ only in case, or that look like paths.
    yield* store.set("User:1", "upper")
    yield* store.set("user:1", "lower")
    yield* store.set("../../etc/passwd", "just a key")
    yield* Console.log(`${name}: keys in the store: ${yield* store.size}`)
  })

const main = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const base = yield* fs.makeTempDirectoryScoped({ prefix: "kv-store-" })

  // The platform's store on the file system.
  const platformDir = `${base}/platform`
  yield* program("platform layerFileSystem").pipe(Effect.provide(KeyValueStore.layerFileSystem(platformDir)))

  // The same program on effect-persistence: one layer changes.
  const directory = `${base}/persistence`
  const StoreLive = Client.layerKeyValueStore({ directory }).pipe(
    Layer.provide(Client.layer({ durable: true })),
    Layer.provide(LockManager.layer)
  )
  yield* Effect.gen(function*() {
    yield* program("effect-persistence")

    // One file per key; names are lower-case ASCII, so "User:1" and "user:1" stay apart on a
    // case-insensitive file system, and no key reaches outside the directory.
    yield* Console.log("files:", (yield* fs.readDirectory(directory)).sort())

    const store = yield* KeyValueStore.KeyValueStore
    yield* store.clear
    yield* Console.log(`size after clear: ${yield* store.size}`)
  }).pipe(Effect.provide(StoreLive))
})

main.pipe(Effect.scoped, Effect.provide(NodeContext.layer), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
