import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { afterEach, beforeEach, expect } from "vitest"
import { Client, LockManager } from "../../src/promise.js"

/** What the Promise facade rejects with. */
export type NodeError = Error & { code?: string; cause?: unknown; path?: string; syscall?: string; committed?: boolean }

/**
 * A fresh temp directory for each test of the file: `at("a", "b")` is a path
 * inside it.
 */
export const perTestDirectory = (prefix: string) => {
  let dir = ""
  beforeEach(() => {
    dir = fs.realpathSync(fs.mkdtempSync(nodePath.join(os.tmpdir(), prefix)))
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return { dir: () => dir, at: (...segments: Array<string>) => nodePath.join(dir, ...segments) }
}

/** A facade manager and a client on it. */
export const setup = (options?: { durable?: boolean; tempSuffix?: string }) => {
  const manager = new LockManager()
  return { manager, client: new Client({ manager, ...options }) }
}

export const stats = (manager: LockManager) => Effect.runSync(manager.service.stats)

export const expectIdle = (manager: LockManager) => expect(stats(manager)).toEqual({ held: 0, pending: 0, nodes: 0 })

/** The rejection of a Promise that must reject. */
export const rejection = async (promise: Promise<unknown>): Promise<NodeError> => {
  try {
    await promise
  } catch (error) {
    return error as NodeError
  }
  throw new Error("expected a rejection")
}
