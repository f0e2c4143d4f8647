import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import * as nodeFs from "node:fs"
import { makeClient, tempDir } from "./utils/client.js"
import { expectIdle, waitUntil } from "./utils/locks.js"
import { counts, outcomeOf, outcomes } from "./utils/observability.js"
import { recordSpans } from "./utils/tracing.js"

/**
 * Runs `use` and returns what changed: the outcomes the operation was counted
 * with (each once) and the outcomes its spans ended with.
 */
const observe = <A, E>(operation: string, use: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const before = yield* counts(operation)
    const { spans } = yield* recordSpans(Effect.exit(use))
    const after = yield* counts(operation)
    const counted = outcomes.flatMap((outcome, i) => Array.from({ length: after[i] - before[i] }, () => outcome))
    return { counted, spans: spans.filter((s) => s.name === operation).map(outcomeOf) }
  })

describe("observability of streams and sinks", () => {
  it.scoped("a stream is counted once, with the outcome its span ends with: drained, stopped early, failed, interrupted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/f`, "x".repeat(64))
      const stream = client.stream(`${dir}/f`, { chunkSize: 8 })
      const one = (counted: string) => ({ counted: [counted], spans: [counted] })
      expect(yield* observe("Client.stream", Stream.runDrain(stream))).toEqual(one("success"))
      // The consumer stops after the first chunk: the stream ends, not failed.
      const first = yield* observe("Client.stream", Stream.runCollect(Stream.take(stream, 1)))
      expect(first).toEqual(one("success"))
      expect(yield* observe("Client.stream", Stream.runDrain(client.stream(`${dir}/missing`)))).toEqual(
        one("failure")
      )
      // Interrupted by its consumer while it holds its lock.
      const interrupted = yield* observe(
        "Client.stream",
        Effect.gen(function*() {
          const started = yield* Deferred.make<void>()
          const fiber = yield* Effect.fork(
            Stream.runDrain(
              Stream.tap(stream, () => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never))
            )
          )
          yield* Deferred.await(started)
          yield* Fiber.interrupt(fiber)
        })
      )
      expect(interrupted).toEqual(one("interrupted"))
      yield* expectIdle(manager)
    }))

  it.scoped("a sink is counted once, with the outcome its span ends with, and its span lasts as long as the sink", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const one = (counted: string) => ({ counted: [counted], spans: [counted] })
      const bytes = new TextEncoder().encode("abc")
      const written = yield* observe(
        "Client.sink",
        Stream.run(Stream.make(bytes, bytes), client.sink(`${dir}/s`))
      )
      expect(written).toEqual(one("success"))
      expect(nodeFs.readFileSync(`${dir}/s`, "utf8")).toBe("abcabc")
      nodeFs.writeFileSync(`${dir}/file`, "not a directory")
      expect(yield* observe("Client.sink", Stream.run(Stream.make(bytes), client.sink(`${dir}/file/s`)))).toEqual(
        one("failure")
      )
      // The span is still open while the sink takes input, then ends with the interrupt.
      const { spans } = yield* recordSpans(Effect.gen(function*() {
        const before = yield* counts("Client.sink")
        const gate = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(
          Stream.run(
            Stream.concat(
              Stream.make(bytes),
              Stream.fromEffect(Effect.zipRight(Deferred.succeed(gate, undefined), Effect.never))
            ),
            client.sink(`${dir}/t`)
          )
        )
        yield* Deferred.await(gate)
        yield* waitUntil(Effect.map(manager.stats, (s) => s.held === 1), "sink holds its lock")
        const after = yield* counts("Client.sink")
        expect(after).toEqual(before)
        yield* Fiber.interrupt(fiber)
        const end = yield* counts("Client.sink")
        expect(end.map((n, i) => n - before[i])).toEqual([0, 0, 1])
        return Chunk.empty()
      }))
      const sinks = spans.filter((s) => s.name === "Client.sink")
      expect(sinks.map(outcomeOf)).toEqual(["interrupted"])
      expect(nodeFs.existsSync(`${dir}/t`)).toBe(false)
      yield* expectIdle(manager)
    }))
})
