/**
 * The public Testing module, used the way its documentation says.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import * as Testing from "../src/Testing.js"
import { tempDir, tempFiles } from "./utils/client.js"

describe("Testing", () => {
  it.effect("PowerLoss: a durable write that returned is in every state the disk can come back in", () =>
    Effect.gen(function*() {
      const disk = new Testing.PowerLoss.SimulatedDisk({ "/data/": "", "/data/doc": "old" })
      const client = yield* Client.make({ durable: true }).pipe(
        Effect.provide(Layer.merge(LockManager.layer, Testing.PowerLoss.layer(disk)))
      )
      yield* client.write("/data/doc", "new")
      const states = disk.crashStates({ omit: (path) => path.endsWith(".tmp") })
      expect(states.length).toBeGreaterThan(0)
      for (const state of states) expect(state["/data/doc"]).toBe("new")
    }))

  it.effect("PowerLoss: without durability a power cut may lose or tear the same write", () =>
    Effect.gen(function*() {
      const disk = new Testing.PowerLoss.SimulatedDisk({ "/data/": "", "/data/doc": "old" })
      const client = yield* Client.make({ durable: false }).pipe(
        Effect.provide(Layer.merge(LockManager.layer, Testing.PowerLoss.layer(disk)))
      )
      yield* client.write("/data/doc", "new")
      const docs = new Set(disk.crashStates().map((state) => state["/data/doc"]))
      expect(docs.has("new")).toBe(true)
      expect([...docs].some((doc) => doc !== "new")).toBe(true)
    }))

  it.scoped("FaultFileSystem: a program checked at every failure point keeps the old content", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.writeFileSync(`${dir}/doc`, "old")
      const faults = yield* Testing.FaultFileSystem.FaultFileSystem
      // The layer provides the faulty FileSystem the Client is built on.
      const client = yield* Client.make({ durable: true }).pipe(Effect.provide(LockManager.layer))
      let points = 0
      for (let n = 1;; n++) {
        yield* faults.reset({ failAt: n, fault: "ENOSPC" })
        const exit = yield* Effect.exit(client.write(`${dir}/doc`, "new"))
        if (Option.isNone(yield* faults.hit)) {
          expect(Exit.isSuccess(exit)).toBe(true)
          break
        }
        points++
        const content = nodeFs.readFileSync(`${dir}/doc`, "utf8")
        const committed = Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "CommitError"
        expect(content).toBe(committed ? "new" : "old")
        expect(tempFiles(dir)).toEqual([])
        nodeFs.writeFileSync(`${dir}/doc`, "old")
      }
      expect(points).toBeGreaterThan(3)
    }).pipe(Effect.provide(Testing.FaultFileSystem.layer().pipe(Layer.provide(NodeFileSystem.layer)))))
})
