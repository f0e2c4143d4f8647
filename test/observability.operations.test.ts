import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import { makeClient, tempDir } from "./utils/client.js"
import { expectIdle } from "./utils/locks.js"
import { counts, outcomeOf, outcomes } from "./utils/observability.js"
import { recordSpans } from "./utils/tracing.js"

type Operation = Exclude<keyof Client.ClientService, "durable" | typeof Client.TypeId>

/**
 * For every operation of the Client, one call that succeeds and one that
 * fails, in a directory prepared for them. Typed by the service's keys: an
 * operation added to the Client without a row here does not compile.
 */
const calls = (
  client: Client.ClientService,
  dir: string
): Record<
  Operation,
  { readonly ok: Effect.Effect<unknown, unknown>; readonly fails: Effect.Effect<unknown, unknown> }
> => {
  const missing = `${dir}/missing`
  const file = `${dir}/file`
  const drain = (stream: Stream.Stream<Uint8Array, unknown>) => Stream.runDrain(stream)
  const sinkInto = (path: string) => Stream.run(Stream.make(new Uint8Array([1])), client.sink(path))
  return {
    read: { ok: client.read(file), fails: client.read(missing) },
    readString: { ok: client.readString(file), fails: client.readString(missing) },
    stream: { ok: drain(client.stream(file)), fails: drain(client.stream(missing)) },
    write: { ok: client.write(`${dir}/w`, "w"), fails: client.write("relative", "w") },
    sink: { ok: sinkInto(`${dir}/s`), fails: sinkInto("relative") },
    collect: { ok: client.collect(dir), fails: client.collect(missing) },
    collectEntries: { ok: client.collectEntries(dir), fails: client.collectEntries(missing) },
    delete: { ok: client.delete(`${dir}/victim`), fails: client.delete("relative") },
    rename: { ok: client.rename(`${dir}/from`, `${dir}/to`), fails: client.rename(missing, `${dir}/to2`) },
    copy: { ok: client.copy(file, `${dir}/copied`), fails: client.copy(missing, `${dir}/copied2`) },
    exists: { ok: client.exists(file), fails: client.exists("relative") },
    stat: { ok: client.stat(file), fails: client.stat(missing) },
    makeDirectory: { ok: client.makeDirectory(`${dir}/made/deep`), fails: client.makeDirectory(`${file}/below`) },
    modify: { ok: client.modify(`${dir}/m`, () => "m"), fails: client.modify(`${dir}/m2`, () => Effect.fail("no")) },
    readJson: { ok: client.readJson(`${dir}/doc.json`, Schema.Number), fails: client.readJson(file, Schema.Number) },
    writeJson: {
      ok: client.writeJson(`${dir}/j.json`, Schema.Number, 1),
      fails: client.writeJson(`${dir}/j2.json`, Schema.Number, "x" as unknown as number)
    },
    modifyJson: {
      ok: client.modifyJson(`${dir}/doc.json`, Schema.Number, () => 2),
      fails: client.modifyJson(file, Schema.Number, () => 3)
    },
    recover: { ok: client.recover(dir), fails: client.recover(missing) }
  }
}

const prepare = (dir: string) => {
  nodeFs.writeFileSync(`${dir}/file`, "content")
  nodeFs.writeFileSync(`${dir}/victim`, "v")
  nodeFs.writeFileSync(`${dir}/from`, "f")
  nodeFs.writeFileSync(`${dir}/doc.json`, "1")
}

describe("every Client operation", () => {
  for (const traced of [true, false]) {
    it.scoped(
      traced ?
        "makes one span named after it and is counted once, with the outcome its span ends with" :
        "is counted once with tracing disabled too",
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          prepare(dir)
          const { client, manager } = yield* makeClient()
          for (const [name, { fails, ok }] of Object.entries(calls(client, dir))) {
            const operation = `Client.${name}`
            for (const [expected, call] of [["success", ok], ["failure", fails]] as const) {
              const before = yield* counts(operation)
              const { result: exit, spans } = yield* recordSpans(
                Effect.exit(traced ? call : Effect.withTracerEnabled(call, false))
              )
              const delta = (yield* counts(operation)).map((n, i) => n - before[i])
              expect({ operation, expected, exit: Exit.isSuccess(exit) ? "success" : "failure" }).toEqual({
                operation,
                expected,
                exit: expected
              })
              if (traced) {
                // One span of its own, none of another operation.
                const mine = spans.filter((span) => span.name === operation).map(outcomeOf)
                const others = spans.filter((span) => span.name.startsWith("Client.") && span.name !== operation)
                expect({ operation, mine, others: others.map((s) => s.name) }).toEqual({
                  operation,
                  mine: [expected],
                  others: []
                })
              }
              expect({ operation, delta }).toEqual({ operation, delta: outcomes.map((o) => o === expected ? 1 : 0) })
            }
          }
          yield* expectIdle(manager)
        })
    )
  }

  it.scoped("is counted once when code of the caller's ends its span early", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const before = yield* counts("Client.modify")
      const { spans } = yield* recordSpans(
        client.modify(`${dir}/m`, () =>
          Effect.map(Effect.currentSpan, (span) => {
            span.end(BigInt(0), Exit.void)
            return "m"
          }))
      )
      expect(spans.filter((s) => s.name === "Client.modify").length).toBe(1)
      const delta = (yield* counts("Client.modify")).map((n, i) => n - before[i])
      expect(delta).toEqual([1, 0, 0])
      expect(nodeFs.readFileSync(`${dir}/m`, "utf8")).toBe("m")
      yield* expectIdle(manager)
    }))
})
