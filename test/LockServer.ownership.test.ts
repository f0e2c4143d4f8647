/**
 * What the lock server does with combined requests with modes, and what it
 * does not do (yet) with ownership: the README's "Several processes" section
 * states both, these tests pin them.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option } from "effect"
import * as nodePath from "node:path"
import * as LockManager from "../src/LockManager.js"
import * as LockServer from "../src/LockServer.js"
import { tempDir } from "./utils/client.js"
import { waitUntil } from "./utils/locks.js"

const setup = Effect.gen(function*() {
  const dir = yield* tempDir
  const socket = nodePath.join(dir, "lockd.sock")
  const server = yield* LockServer.make({ socket, gracePeriod: 0 })
  return { socket, server }
})

describe("lock server: combined requests with modes", () => {
  it.live("a read path of a combined request is read on the server: other readers overlap it, writers wait", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server, socket } = yield* setup
      const a = yield* LockManager.makeRemote({ socket })
      const b = yield* LockManager.makeRemote({ socket })
      const copy = yield* a.lockAll([["/from", "read"], ["/to", "write"]])
      expect(copy.mode).toBe("write")
      expect(copy.paths).toEqual(["/from", "/to"])
      // Another process reads the source meanwhile.
      expect(yield* b.withLock("/from", "read")(Effect.succeed("read"))).toBe("read")
      const writer = yield* Effect.fork(b.withLock("/from", "write")(Effect.void))
      yield* waitUntil(Effect.map(server.manager.stats, (s) => s.pending === 1), "the writer queued")
      expect(yield* server.manager.stats).toEqual({ held: 1, pending: 1, nodes: 3 })
      yield* Fiber.interrupt(writer)
    })))

  it.live("a malformed mode list from a client is refused with a typed error", () =>
    Effect.scoped(Effect.gen(function*() {
      const { socket } = yield* setup
      const a = yield* LockManager.makeRemote({ socket })
      const error = yield* Effect.flip(Effect.scoped(a.lockAll([["/x", "sometimes" as LockManager.LockMode]])))
      expect(error._tag).toBe("InvalidArgumentError")
    })))
})

describe("lock server: no ownership", () => {
  it.live("a nested request of a fiber that holds the path waits (not re-entrant): bound it with a timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const { server, socket } = yield* setup
      const a = yield* LockManager.makeRemote({ socket })
      const exit = yield* a.withLock("/p", "write")(
        Effect.exit(Effect.timeout(a.withLock("/p", "read")(Effect.void), "200 millis"))
      )
      expect(Exit.isFailure(exit) && Option.map(Cause.failureOption(exit.cause), (e) => e._tag)).toEqual(
        Option.some("TimeoutException")
      )
      expect(yield* server.manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))
})
