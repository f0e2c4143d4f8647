/**
 * copy, exists, stat and makeDirectory: what each does, its lock, its errors
 * and its confinement. (Durability is in test/powerLoss.test.ts, failures at
 * every file system call in test/faults.test.ts.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as nodeFs from "node:fs"
import { makeClient, snapshot, tempDir, tempFiles } from "./utils/client.js"
import { expectIdle, hold, waitUntil } from "./utils/locks.js"
import { pseudoRandom } from "./utils/random.js"

describe("Client.copy", () => {
  it.scoped("copies any size, byte for byte, creating missing parents and replacing the target", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      for (const size of [0, 1, 65_536, 3 * 1024 * 1024 + 7]) {
        const content = pseudoRandom(size, size)
        nodeFs.writeFileSync(`${dir}/src`, content)
        nodeFs.mkdirSync(`${dir}/old`, { recursive: true })
        nodeFs.writeFileSync(`${dir}/old/target`, "previous")
        yield* client.copy(`${dir}/src`, `${dir}/old/target`)
        yield* client.copy(`${dir}/src`, `${dir}/new/deep/target`, { mode: 0o600 })
        expect(nodeFs.readFileSync(`${dir}/old/target`).equals(content)).toBe(true)
        expect(nodeFs.readFileSync(`${dir}/new/deep/target`).equals(content)).toBe(true)
        expect(nodeFs.statSync(`${dir}/new/deep/target`).mode & 0o777).toBe(0o600)
        expect(nodeFs.readFileSync(`${dir}/src`).equals(content)).toBe(true)
        nodeFs.rmSync(`${dir}/new`, { recursive: true })
      }
      expect(tempFiles(dir)).toEqual([])
      yield* expectIdle(manager)
    }))

  it.scoped("a missing source fails as NotFound and creates nothing; a directory is not copied", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/target`, "kept")
      nodeFs.mkdirSync(`${dir}/folder`)
      const before = snapshot(dir)
      const missing = yield* Effect.flip(client.copy(`${dir}/missing`, `${dir}/new/parents/target`))
      expect(missing).toMatchObject({ _tag: "FileSystemError", reason: "NotFound", operation: "Client.copy" })
      const folder = yield* Effect.flip(client.copy(`${dir}/folder`, `${dir}/target`))
      expect(folder).toMatchObject({ _tag: "FileSystemError", reason: "IsADirectory" })
      const onItself = yield* Effect.flip(client.copy(`${dir}/folder`, `${dir}/folder/`))
      expect(onItself).toMatchObject({ _tag: "FileSystemError", reason: "IsADirectory" })
      expect(snapshot(dir)).toEqual(before)
      // Onto itself: nothing changes.
      yield* client.copy(`${dir}/target`, `${dir}//target`)
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))

  it.scoped("one combined request: reads of the source overlap it, the target is excluded, both at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/from`, "content")
      const reader = yield* hold(manager, `${dir}/from`, "read")
      const targetReader = yield* hold(manager, `${dir}/to`, "read")
      const copying = yield* Effect.fork(client.copy(`${dir}/from`, `${dir}/to`))
      // Waits for the reader of the target only, holding nothing meanwhile (one request).
      yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1 && s.held === 2), "the copy queued")
      yield* targetReader.release
      yield* Fiber.join(copying)
      expect(nodeFs.readFileSync(`${dir}/to`, "utf8")).toBe("content")
      yield* reader.release
      yield* expectIdle(manager)
    }))

  it.scoped("confined: a source or target outside the root is refused before anything is touched", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/root`)
      nodeFs.writeFileSync(`${dir}/root/in`, "in")
      nodeFs.writeFileSync(`${dir}/secret`, "secret")
      const { client, manager } = yield* makeClient({ root: `${dir}/root` })
      const before = snapshot(dir)
      for (const [from, to] of [[`${dir}/secret`, `${dir}/root/leak`], [`${dir}/root/in`, `${dir}/root/../out`]]) {
        expect(yield* Effect.flip(client.copy(from, to))).toMatchObject({
          _tag: "InvalidPathError",
          reason: "OutsideRoot"
        })
      }
      expect(snapshot(dir)).toEqual(before)
      yield* expectIdle(manager)
    }))
})

describe("Client.exists / Client.stat", () => {
  it.scoped("as the platform's FileSystem, under a read lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      nodeFs.writeFileSync(`${dir}/f`, "12345")
      expect(yield* client.exists(`${dir}/f`)).toBe(true)
      expect(yield* client.exists(`${dir}/missing`)).toBe(false)
      expect(yield* client.exists("/")).toBe(true)
      // Nothing exists below a file (as Node's existsSync), not an error.
      expect(yield* client.exists(`${dir}/f/below`)).toBe(false)
      const info = yield* client.stat(`${dir}/f`)
      expect(info.type).toBe("File")
      expect(Number(info.size)).toBe(5)
      expect((yield* client.stat(dir)).type).toBe("Directory")
      expect(yield* Effect.flip(client.stat(`${dir}/missing`))).toMatchObject({
        _tag: "FileSystemError",
        reason: "NotFound",
        operation: "Client.stat"
      })
      expect(yield* Effect.flip(client.exists("relative"))).toMatchObject({ _tag: "InvalidPathError" })
      // A writer holds the path: exists waits for it (it sees the committed state, never one in progress).
      const writer = yield* hold(manager, `${dir}/f`, "write")
      const asked = yield* Effect.fork(client.exists(`${dir}/f`))
      yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1), "exists queued")
      yield* writer.release
      expect(yield* Fiber.join(asked)).toBe(true)
      yield* expectIdle(manager)
    }))
})

describe("Client.makeDirectory", () => {
  it.scoped("creates the directory and its parents, succeeds when it exists, refuses a file in the way", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      yield* client.makeDirectory(`${dir}/a/b/c`)
      expect(nodeFs.statSync(`${dir}/a/b/c`).isDirectory()).toBe(true)
      yield* client.makeDirectory(`${dir}/a/b/c/`)
      yield* client.makeDirectory(`${dir}/a`)
      nodeFs.writeFileSync(`${dir}/file`, "x")
      expect(yield* Effect.flip(client.makeDirectory(`${dir}/file`))).toMatchObject({
        _tag: "FileSystemError",
        reason: "AlreadyExists",
        operation: "Client.makeDirectory",
        detail: "a File, not a directory, is at the path"
      })
      expect(yield* Effect.flip(client.makeDirectory(`${dir}/file/sub`))).toMatchObject({
        _tag: "FileSystemError",
        reason: "NotADirectory"
      })
      expect(nodeFs.readFileSync(`${dir}/file`, "utf8")).toBe("x")
      yield* expectIdle(manager)
    }))

  it.scoped("under a write lock on the path: a reader inside waits for it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const reader = yield* hold(manager, `${dir}/d/inner`, "read")
      const making = yield* Effect.fork(client.makeDirectory(`${dir}/d`))
      yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1), "makeDirectory queued")
      expect(nodeFs.existsSync(`${dir}/d`)).toBe(false)
      yield* reader.release
      yield* Fiber.join(making)
      expect(nodeFs.statSync(`${dir}/d`).isDirectory()).toBe(true)
      yield* expectIdle(manager)
    }))

  it.scoped("confined: the root itself and paths outside are refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      nodeFs.mkdirSync(`${dir}/root`)
      const { client, manager } = yield* makeClient({ root: `${dir}/root` })
      const before = snapshot(dir)
      expect(yield* Effect.flip(client.makeDirectory(`${dir}/root/../out`))).toMatchObject({ reason: "OutsideRoot" })
      expect(yield* Effect.flip(client.makeDirectory(`${dir}/root`))).toMatchObject({ reason: "Root" })
      expect(snapshot(dir)).toEqual(before)
      yield* client.makeDirectory(`${dir}/root/in`)
      expect(nodeFs.existsSync(`${dir}/root/in`)).toBe(true)
      yield* expectIdle(manager)
    }))

  it.scoped("interrupted while it waits for its lock: nothing is created", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { client, manager } = yield* makeClient()
      const reader = yield* hold(manager, `${dir}/d`, "read")
      const started = yield* Deferred.make<void>()
      const making = yield* Effect.fork(
        Deferred.succeed(started, undefined).pipe(Effect.zipRight(client.makeDirectory(`${dir}/d`)))
      )
      yield* Deferred.await(started)
      yield* waitUntil(Effect.map(manager.stats, (s) => s.pending === 1), "makeDirectory queued")
      yield* Fiber.interrupt(making)
      yield* reader.release
      expect(nodeFs.existsSync(`${dir}/d`)).toBe(false)
      yield* expectIdle(manager)
    }))
})
