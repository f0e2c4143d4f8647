/**
 * The service-level model test of test/LockManager.model.test.ts, run against
 * a lock server process (`lockd`) through `LockManager.layerRemote`, over a Unix
 * socket and over TCP: after every step (acquire, release, interrupt a waiting
 * request) the server grants exactly what the reference model of the fairness
 * rule grants. Release and interruption are confirmed by the server before they
 * return, so the check after each step is exact. Grant ids must increase.
 *
 * Replay a failure with REMOTE_MODEL_SEED=<seed>; REMOTE_MODEL_SEEDS and STEPS
 * run more.
 */
import { afterAll, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as LockManager from "../src/LockManager.js"
import type * as PersistenceError from "../src/PersistenceError.js"
import { type Child, killAll, remoteOptions, startLockd } from "./fixtures/lock-processes.js"
import { seedsFromEnv } from "./utils/random.js"
import { runRemoteModel } from "./utils/remoteModel.js"

const SEED_VAR = "REMOTE_MODEL_SEED"
const { seeds, steps } = seedsFromEnv({
  seeds: 5,
  steps: 300,
  seedVar: SEED_VAR,
  seedsVar: "REMOTE_MODEL_SEEDS"
})

afterAll(killAll)

/** Lock ids are the server's grant numbers: each grant's id exceeds every earlier one. */
const runModel = (
  name: string,
  manager: LockManager.LockManagerService<PersistenceError.RemoteLockError>,
  seed: number
) => runRemoteModel(manager, { name, seed, steps, seedVar: SEED_VAR, within: "10 seconds", ids: "grant" })

const lockd = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.promise(() => startLockd(args)),
    (server: Child & { readonly address: string }) => Effect.promise(() => (server.signal("SIGTERM"), server.closed))
  )

/** The service `LockManager.layerRemote` provides, for the current scope. */
const remoteManager = (address: string) =>
  Effect.map(Layer.build(LockManager.layerRemote(remoteOptions(address))), Context.get(LockManager.LockManager))

describe("remote LockManager against the reference model", () => {
  it.live("matches the model over a Unix socket", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "lockserver-model-"))),
        (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
      )
      const server = yield* lockd(["--socket", nodePath.join(dir, "lockd.sock")])
      const manager = yield* remoteManager(server.address)
      for (const seed of seeds) yield* runModel("unix", manager, seed)
    })), 60_000)

  it.live("matches the model over TCP", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* lockd(["--port", "0"])
      const manager = yield* remoteManager(server.address)
      yield* runModel("tcp", manager, seeds[0] + 1000)
    })), 60_000)
})
