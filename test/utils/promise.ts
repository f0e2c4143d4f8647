import { Effect } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as nodePath from "node:path"
import type { Readable, Writable } from "node:stream"
import { fileURLToPath } from "node:url"
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

/** What the conformance tests use of a lock manager: the original's API. */
export interface LockManagerLike {
  acquire(path: string, type: "read" | "write"): Promise<number>
  acquireAll(paths: Array<string>): Promise<number>
  release(id: number): void
}

/** What the conformance tests use of a client: the original's API. */
export interface ClientLike {
  readonly durable: boolean
  read(path: string, options?: unknown): Promise<string | Buffer>
  write(path: string, data: unknown, options?: unknown): Promise<void>
  collect(path: string, options?: unknown): Promise<Array<unknown>>
  delete(path: string, options?: unknown): Promise<void>
  rename(oldPath: string, newPath: string): Promise<void>
  createReadStream(path: string, options?: unknown): Promise<Readable>
  createWriteStream(path: string, options?: unknown): Promise<Writable>
}

/** One implementation of the original library's API, under test. */
export interface Implementation {
  readonly name: string
  readonly manager: () => LockManagerLike
  readonly client: (manager: LockManagerLike, options?: { readonly durable?: boolean }) => ClientLike
}

/** The facade, as a program moved from the original uses it. */
export const facade: Implementation = {
  name: "facade",
  manager: () => new LockManager(),
  client: (manager, options) => new Client({ manager: manager as LockManager, ...options })
}

/**
 * Where the original library (@far-analytics/persistence 1.22.4, built) is
 * kept beside the repository. A user's clone has no `../shared`.
 */
export const ORIGINAL_DIST = fileURLToPath(new URL("../../../shared/original/dist/index.js", import.meta.url))

/** The module the original exports: its package's only entry point. */
export type OriginalModule = Record<string, unknown> & {
  readonly LockManager: new() => LockManagerLike
  readonly Client: new(options: { manager: LockManagerLike; durable?: boolean }) => ClientLike
}

/** The original, loaded at run time (CommonJS) with Node's own `require`; `undefined` when it is absent. */
export const loadOriginal = (): OriginalModule | undefined =>
  fs.existsSync(ORIGINAL_DIST) ? createRequire(import.meta.url)(ORIGINAL_DIST) as OriginalModule : undefined

/** The original as an {@link Implementation}. */
export const originalImplementation = (module: OriginalModule): Implementation => ({
  name: "original",
  manager: () => new module.LockManager(),
  client: (manager, options) => new module.Client({ manager, ...options })
})

/**
 * `promise`, or a rejection naming `label` if it has not settled within
 * `ms`: a generous deadline that turns a hang into a failure.
 */
export const within = <A>(promise: Promise<A>, label: string, ms = 10_000): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: not settled within ${ms} ms (a hang)`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}
