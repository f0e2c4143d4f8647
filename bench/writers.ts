/**
 * What the write benchmarks share: the Node file system service, Clients
 * over it, a temp directory per case, writers as fibers or async loops, the
 * check that each runner left exactly its files, and a FileSystem wrapper
 * that counts fsyncs by what they sync. Light on purpose: bench/durable.ts
 * loads it in child processes, where every imported module costs start-up time.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import type { Runner } from "./harness.js"

export const range = (n: number): Array<number> => Array.from({ length: n }, (_, i) => i)

export const nodeFileSystem: FileSystem.FileSystem = Effect.runSync(
  Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
)

export const makeClient = (
  options: Client.ClientOptions,
  fs: FileSystem.FileSystem = nodeFileSystem
): Client.ClientService =>
  Effect.runSync(
    Client.make(options).pipe(
      Effect.provideServiceEffect(LockManager.LockManager, LockManager.make),
      Effect.provideService(FileSystem.FileSystem, fs)
    )
  )

/** A case's own directory under `under` (the temp dir by default); `teardown` removes it. */
export const workspace = (name: string, under: string = os.tmpdir()) => {
  const root = nodeFs.mkdtempSync(path.join(under, `effect-persistence-bench-${name}-`))
  return {
    root,
    dir: (sub: string): string => {
      const dir = path.join(root, sub)
      nodeFs.mkdirSync(dir, { recursive: true })
      return dir
    },
    teardown: () => nodeFs.rmSync(root, { recursive: true, force: true })
  }
}

export const promiseRunner = (name: string, ops: number, run: () => Promise<void>): Runner => ({
  name,
  ops,
  run: async () => {
    const started = performance.now()
    await run()
    return performance.now() - started
  }
})

/** `writers` fibers, each doing `perWriter` operations one after another. */
export const effectWriters = <E>(writers: number, perWriter: number, op: (writer: number) => Effect.Effect<void, E>) =>
  Effect.forEach(range(writers), (writer) => Effect.forEach(range(perWriter), () => op(writer), { discard: true }), {
    concurrency: "unbounded",
    discard: true
  })

/** The same with Promises: `writers` async loops. */
export const promiseWriters =
  (writers: number, perWriter: number, op: (writer: number) => Promise<void>) => async () => {
    await Promise.all(
      range(writers).map(async (writer) => {
        for (let i = 0; i < perWriter; i++) await op(writer)
      })
    )
  }

/** The files of one runner's directory are exactly `names`, each of `size` bytes: no temp file left. */
export const expectFiles = (dir: string, names: ReadonlyArray<string>, size: number): void => {
  const found = nodeFs.readdirSync(dir).sort()
  const expected = [...names].sort()
  if (found.length !== expected.length || found.some((name, i) => name !== expected[i])) {
    const extra = found.filter((name) => !expected.includes(name))
    const missing = expected.filter((name) => !found.includes(name))
    throw new Error(`${dir}: unexpected entries ${JSON.stringify(extra)}, missing ${JSON.stringify(missing)}`)
  }
  for (const name of names) {
    const actual = nodeFs.statSync(path.join(dir, name)).size
    if (actual !== size) throw new Error(`${path.join(dir, name)}: ${actual} bytes, expected ${size}`)
  }
}

export const fileNames = (writers: number) => range(writers).map((i) => `f${i}.dat`)

/** A temp file name beside `target`, as the baselines that replace by rename use. */
export const tempBeside = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.${Math.random().toString(36).slice(2, 14)}.tmp`)

export interface SyncCounts {
  /** fsyncs of descriptors opened with flag "r" on a directory: the Client's directory fsyncs. */
  directories: number
  /** fsyncs of descriptors opened for writing: the temp files' data. */
  files: number
  /** fsyncs of descriptors opened with flag "r" on something else: none expected. */
  other: number
}

/** Counts `File.sync` calls by what the descriptor was opened on. */
const countingFile = (file: FileSystem.File, count: () => void): FileSystem.File => ({
  [FileSystem.FileTypeId]: FileSystem.FileTypeId,
  fd: file.fd,
  get stat() {
    return file.stat
  },
  seek: (offset, from) => file.seek(offset, from),
  sync: Effect.suspend((): Effect.Effect<void, PlatformError> => {
    count()
    return file.sync
  }),
  read: (buffer) => file.read(buffer),
  readAlloc: (size) => file.readAlloc(size),
  truncate: (length) => file.truncate(length),
  write: (buffer) => file.write(buffer),
  writeAll: (buffer) => file.writeAll(buffer)
})

/**
 * The Node FileSystem with `open` wrapped: the Client opens directories with
 * `{ flag: "r" }` only to fsync them, so a sync of such a descriptor on a
 * directory is a directory fsync.
 */
export const countingFileSystem = (fs: FileSystem.FileSystem, counts: SyncCounts): FileSystem.FileSystem => ({
  ...fs,
  open: (p, options) =>
    Effect.map(fs.open(p, options), (file) => {
      if (options?.flag !== "r") return countingFile(file, () => counts.files++)
      const directory = nodeFs.fstatSync(file.fd).isDirectory()
      return countingFile(file, directory ? () => counts.directories++ : () => counts.other++)
    })
})

interface RunCounts {
  readonly writes: number
  readonly directories: number
  readonly files: number
  readonly other: number
}

/** Wraps a runner to record the syncs of every run. */
export const countRuns = (runner: Runner, counts: SyncCounts) => {
  const runs: Array<RunCounts> = []
  return {
    runs,
    runner: {
      ...runner,
      run: async () => {
        const before = { ...counts }
        const ms = await runner.run()
        runs.push({
          writes: runner.ops,
          directories: counts.directories - before.directories,
          files: counts.files - before.files,
          other: counts.other - before.other
        })
        return ms
      }
    } satisfies Runner
  }
}

/**
 * Totals over every run but the first (it pays the one-off fsyncs of the
 * parents of a directory new to the Client), or over the only run.
 */
export const totals = (runs: ReadonlyArray<RunCounts>) => {
  const counted = runs.length > 1 ? runs.slice(1) : runs
  const sum = (key: keyof RunCounts) => counted.reduce((total, run) => total + run[key], 0)
  const writes = sum("writes")
  return {
    runs: counted.length,
    writes,
    directoryFsyncs: sum("directories"),
    fileFsyncs: sum("files"),
    otherFsyncs: sum("other"),
    directoryFsyncsPerWrite: writes === 0 ? 0 : sum("directories") / writes,
    fileFsyncsPerWrite: writes === 0 ? 0 : sum("files") / writes
  }
}
