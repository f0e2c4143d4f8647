import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Client from "../../src/Client.js"
import { tempName } from "../../src/internal/tempName.js"
import * as LockManager from "../../src/LockManager.js"

/** A fresh temp directory for one test, removed with the scope. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => nodeFs.realpathSync(nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "persistence-")))),
  (dir) => Effect.sync(() => nodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Client + LockManager over the real Node file system. */
export const clientLayer = (options?: Client.ClientOptions) =>
  Client.layer(options).pipe(
    Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer)),
    Layer.orDie
  )

/** Builds a Client over `fs` and a fresh manager, returning both. */
export const makeClient = (options?: Client.ClientOptions, fs?: Layer.Layer<FileSystem.FileSystem>) =>
  Effect.gen(function*() {
    const manager = yield* LockManager.make
    const client = yield* Client.make(options).pipe(
      Effect.provideService(LockManager.LockManager, manager),
      Effect.provide(fs ?? NodeFileSystem.layer)
    )
    return { client, manager }
  })

/** Every file below `dir` with its content, for "nothing changed" checks. */
export const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const entry of nodeFs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = nodePath.join(entry.parentPath, entry.name)
    const rel = nodePath.relative(dir, full)
    if (entry.isSymbolicLink()) out[rel] = `-> ${nodeFs.readlinkSync(full)}`
    else if (entry.isDirectory()) out[rel + "/"] = ""
    else out[rel] = nodeFs.readFileSync(full, "latin1")
  }
  return out
}

/**
 * Names below `dir` that look like temp files of this library,
 * `.<name>.<20 [0-9a-z]>.<suffix>` (the check in the token is not verified:
 * this finds more rather than fewer).
 */
export const tempFiles = (dir: string, suffix = "tmp"): Array<string> =>
  (nodeFs.readdirSync(dir, { recursive: true }) as Array<string>).filter((name) =>
    new RegExp(`(^|/)\\.[^/]+\\.[0-9a-z]{20}\\.${suffix}$`).test(name)
  )

/** A name the library gives a temp file for `name`: what a crashed writer leaves behind. */
export const leftoverName = (name: string, suffix = "tmp"): string => tempName(name, suffix)
