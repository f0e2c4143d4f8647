/**
 * The two programs of issue 16 that used to hang forever, through the Client:
 * nested use of one path (re-entrancy, or a DeadlockError at once), and two
 * stream copies in opposite directions (one side is refused, the other
 * completes). Also `copy` both ways at once, which never deadlocks.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import * as nodeFs from "node:fs"
import { makeClient, tempDir, tempFiles } from "./utils/client.js"
import { expectIdle, waitUntil } from "./utils/locks.js"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** A generous deadline: only a hang reaches it. */
const noHang = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => new Error("hung") })

describe("nested use of one path through the Client", () => {
  it.scoped("modify(p, () => readString(p)) reads the current content under the same lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const p = `${dir}/doc`
      nodeFs.writeFileSync(p, "current")
      const written = yield* noHang(client.modify(p, () => Effect.map(client.readString(p), (s) => `${s}+1`)))
      expect(written).toBe("current+1")
      expect(nodeFs.readFileSync(p, "utf8")).toBe("current+1")
      yield* expectIdle(manager)
    }))

  it.scoped("modify(p, () => write(p, x)) writes under the same lock; modify's result is written last", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const p = `${dir}/doc`
      const seen = yield* noHang(
        client.modify(p, (current) =>
          client.write(p, "inner").pipe(
            Effect.zipRight(client.readString(p)),
            Effect.map((inner) => `${Option.isNone(current) ? "none" : "some"},${inner}`)
          ))
      )
      expect(seen).toBe("none,inner")
      expect(nodeFs.readFileSync(p, "utf8")).toBe("none,inner")
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.scoped("manager.withLock(p, write)(client.readString(p)) and nested writes in forked fibers end", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/a`, "a")
      const read = yield* noHang(manager.withLock(`${dir}/a`, "write")(client.readString(`${dir}/a`)))
      expect(read).toBe("a")
      // A write lock on the directory covers everything the region does below it, also from forked fibers.
      const names = yield* noHang(
        manager.withLock(dir, "write")(
          Effect.all([client.write(`${dir}/x`, "x"), client.write(`${dir}/y`, "y")], { concurrency: 2 }).pipe(
            Effect.zipRight(client.collect(dir))
          )
        )
      )
      expect(names.sort()).toEqual(["a", "x", "y"])
      yield* expectIdle(manager)
    }))

  it.scoped("modify(p, () => collect(dir)) is refused at once: a read of the directory above one's own write", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const p = `${dir}/doc`
      nodeFs.writeFileSync(p, "old")
      const error = yield* noHang(Effect.flip(client.modify(p, () => Effect.map(client.collect(dir), (n) => n.join()))))
      expect(error).toMatchObject({
        _tag: "DeadlockError",
        reason: "Upgrade",
        operation: "LockManager.withLock",
        cycle: [{ path: dir, mode: "read", held: false }, { path: p, mode: "write", held: true }]
      })
      expect(nodeFs.readFileSync(p, "utf8")).toBe("old")
      // What to do instead: take the directory first; its write lock covers both.
      const listed = yield* manager.withLock(dir, "write")(
        client.modify(p, () => Effect.map(client.collect(dir), (n) => n.join()))
      )
      expect(listed).toBe("doc")
      yield* expectIdle(manager)
    }))

  it.scoped("stream(p) into sink(p) works (the sink's write covers the read); a write while streaming is refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/p`, "same")
      yield* noHang(client.stream(`${dir}/p`).pipe(Stream.run(client.sink(`${dir}/p`))))
      expect(nodeFs.readFileSync(`${dir}/p`, "utf8")).toBe("same")
      // Here the read comes first: the write is an upgrade of the fiber's own read.
      const error = yield* noHang(
        Effect.flip(client.stream(`${dir}/p`).pipe(Stream.runForEach(() => client.write(`${dir}/p`, "other"))))
      )
      expect(error).toMatchObject({ _tag: "DeadlockError", reason: "Upgrade" })
      expect(nodeFs.readFileSync(`${dir}/p`, "utf8")).toBe("same")
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))
})

describe("two copies in opposite directions", () => {
  it.scoped("stream into sink both ways: one side gets a DeadlockError at once, the other completes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      for (let round = 0; round < 20; round++) {
        const a = `${dir}/a${round}`
        const b = `${dir}/b${round}`
        nodeFs.writeFileSync(a, "A".repeat(100_000))
        nodeFs.writeFileSync(b, "B".repeat(100_000))
        // The sink takes its write lock first, the stream its read lock on the first pull. The gate
        // makes both sides hold their write lock before either asks for its read: the deadlock every time.
        const gate = waitUntil(Effect.map(manager.stats, (s) => s.held >= 2), "both sides hold a lock")
        const copy = (from: string, to: string) =>
          Stream.unwrap(Effect.as(gate, client.stream(from))).pipe(Stream.run(client.sink(to)), Effect.either)
        const [ab, ba] = yield* noHang(Effect.all([copy(a, b), copy(b, a)], { concurrency: 2 }))
        const outcomes = [ab, ba].map((e) => e._tag === "Left" ? e.left._tag : "done").sort()
        expect(outcomes).toEqual(["DeadlockError", "done"])
        // The completed copy made both files equal; the refused one changed nothing.
        expect(nodeFs.readFileSync(a, "utf8")).toBe(nodeFs.readFileSync(b, "utf8"))
        yield* expectIdle(manager)
      }
      expect(tempFiles(dir)).toEqual([])
    }))

  it.scoped("client.copy both ways at once never deadlocks: one combined request each, served in turn", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      for (let round = 0; round < 20; round++) {
        nodeFs.writeFileSync(`${dir}/a`, "A".repeat(100_000))
        nodeFs.writeFileSync(`${dir}/b`, "B".repeat(100_000))
        yield* noHang(
          Effect.all([client.copy(`${dir}/a`, `${dir}/b`), client.copy(`${dir}/b`, `${dir}/a`)], {
            concurrency: 2
          })
        )
        const [a, b] = [text(nodeFs.readFileSync(`${dir}/a`)), text(nodeFs.readFileSync(`${dir}/b`))]
        expect(a).toBe(b)
        expect(["A", "B"]).toContain(a[0])
        yield* expectIdle(manager)
      }
    }))
})
