/**
 * The public Testing module, used the way its documentation says.
 */
import { NodeFileSystem } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
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
      let commits = 0
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
        if (committed) commits++
        expect(content).toBe(committed ? "new" : "old")
        expect(tempFiles(dir)).toEqual([])
        nodeFs.writeFileSync(`${dir}/doc`, "old")
      }
      expect(points).toBeGreaterThan(3)
      // Each run makes every call a first run makes, the directory fsync after the rename included.
      expect(commits).toBeGreaterThan(0)
    }).pipe(Effect.provide(Testing.FaultFileSystem.layer().pipe(Layer.provide(NodeFileSystem.layer)))))

  it.scoped("FaultFileSystem over PowerLoss: a failed fsync loses its data, and retrying the fsync does not save it", () =>
    Effect.gen(function*() {
      const disk = new Testing.PowerLoss.SimulatedDisk({ "/d/f": "old" })
      const faults = Testing.FaultFileSystem.wrap(Testing.PowerLoss.fileSystem(disk))
      const file = yield* faults.fileSystem.open("/d/f", { flag: "w" })
      yield* file.writeAll(new TextEncoder().encode("new"))
      yield* faults.reset({ failAt: 1, fault: "EIO" })
      expect(Exit.isFailure(yield* Effect.exit(file.sync))).toBe(true)
      // What a program that retries fsync on EIO sees: success, and the new
      // content read back from the cache.
      yield* file.sync
      expect(new TextDecoder().decode(yield* faults.fileSystem.readFile("/d/f"))).toBe("new")
      // The disk never got the data, only the truncation of the open "w" (the
      // inode's size, which the retried fsync made durable): an empty file.
      expect(disk.crashStates().map((state) => state["/d/f"])).toEqual([""])
      // Writing it again, then an fsync that succeeds, is what makes it durable.
      yield* file.seek(0, "start")
      yield* file.writeAll(new TextEncoder().encode("new"))
      yield* file.sync
      expect(disk.crashStates().map((state) => state["/d/f"])).toEqual(["new"])
    }))

  it.effect("a durable Client.write whose file fsync fails reports it and leaves the old content in every crash state", () =>
    Effect.gen(function*() {
      const disk = new Testing.PowerLoss.SimulatedDisk({ "/data/": "", "/data/doc": "old" })
      const faults = Testing.FaultFileSystem.wrap(Testing.PowerLoss.fileSystem(disk))
      const client = yield* Client.make({ durable: true }).pipe(
        Effect.provide(LockManager.layer),
        Effect.provideService(FileSystem.FileSystem, faults.fileSystem)
      )
      let syncs = 0
      for (let n = 1;; n++) {
        yield* faults.reset({ failAt: n, fault: "EIO" })
        const exit = yield* Effect.exit(client.write("/data/doc", "new"))
        const hit = yield* faults.hit
        if (Option.isNone(hit)) break
        if (hit.value.method !== "File.sync") continue
        syncs++
        const committed = Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "CommitError"
        expect(Exit.isSuccess(exit)).toBe(false)
        for (const state of disk.crashStates({ omit: (path) => path.endsWith(".tmp") })) {
          // Only a failure after the rename (of the directory's fsync) may have replaced it.
          expect(committed ? ["old", "new"] : ["old"]).toContain(state["/data/doc"])
        }
        yield* Effect.orDie(client.write("/data/doc", "old"))
      }
      expect(syncs).toBeGreaterThan(0)
    }))
})
