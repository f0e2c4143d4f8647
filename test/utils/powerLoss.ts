import type { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { FileSystem as FileSystemTag, FileTypeId } from "@effect/platform/FileSystem"
import { Deferred, Effect, Layer } from "effect"
import type * as Client from "../../src/Client.js"
import { basename } from "../../src/internal/path.js"
import { isTempName } from "../../src/internal/tempName.js"
import * as PowerLoss from "../../src/testing/PowerLoss.js"
import { makeClient } from "./client.js"

/**
 * One Client operation on the simulated disk and what a crash may leave.
 */
export interface Scenario {
  readonly name: string
  readonly initial: PowerLoss.InitialState
  readonly run: (client: Client.ClientService) => Effect.Effect<unknown, unknown>
  /** Must hold in every crash state from before the call until it returned ("old or new"). */
  readonly during: (state: PowerLoss.Snapshot) => boolean
  /** Must hold in every crash state once the call has returned ("success survives"). */
  readonly after: (state: PowerLoss.Snapshot) => boolean
}

/** How one invariant fared over a set of distinct crash states. */
export interface Tally {
  readonly states: number
  readonly violations: number
  /** The violating states themselves. */
  readonly violating: ReadonlyArray<PowerLoss.Snapshot>
  readonly example: PowerLoss.Snapshot | undefined
}

export interface Verdict {
  /** File system calls that changed the state, each followed by a crash-state enumeration. */
  readonly calls: number
  readonly during: Tally
  readonly after: Tally
}

export interface CheckOptions {
  readonly durable: boolean
  /** Wraps the simulated file system (the deliberately broken variants). */
  readonly wrap?: (fs: FileSystem.FileSystem) => FileSystem.FileSystem
  readonly limit?: number
}

/** Leftover temp files are `recover`'s business, not part of the state a reader sees. */
export const omitTemp = (path: string): boolean => isTempName(basename(path), "tmp")

const tally = (states: Iterable<PowerLoss.Snapshot>, ok: (state: PowerLoss.Snapshot) => boolean): Tally => {
  let count = 0
  const violating: Array<PowerLoss.Snapshot> = []
  for (const state of states) {
    count++
    if (!ok(state)) violating.push(state)
  }
  return { states: count, violations: violating.length, violating, example: violating[0] }
}

/** A Client over the simulated disk (optionally through a wrapper). */
export const simulatedClient = (disk: PowerLoss.SimulatedDisk, options: CheckOptions) => {
  const fs = PowerLoss.fileSystem(disk)
  return Effect.orDie(
    makeClient({ durable: options.durable }, Layer.succeed(FileSystemTag, options.wrap ? options.wrap(fs) : fs))
  )
}

/**
 * Runs the scenario once, enumerating the crash states after every call that
 * changed the disk (a crash "during" a simulated call is a crash before or
 * after it: each call is atomic), and checks both invariants. The operation
 * must succeed and its volatile effect must satisfy `after`: a scenario that
 * did nothing cannot pass.
 */
export const check = (scenario: Scenario, options: CheckOptions): Effect.Effect<Verdict> =>
  Effect.gen(function*() {
    const disk = new PowerLoss.SimulatedDisk(scenario.initial)
    const crashOptions = { omit: omitTemp, limit: options.limit ?? 50_000 }
    const seen = new Map<string, PowerLoss.Snapshot>()
    const record = () => {
      for (const state of disk.crashStates(crashOptions)) seen.set(PowerLoss.keyOf(state), state)
    }
    record()
    let calls = 0
    const unsubscribe = disk.subscribe(() => {
      calls++
      record()
    })
    const { client } = yield* simulatedClient(disk, options)
    yield* Effect.orDie(scenario.run(client))
    unsubscribe()
    const volatile = disk.volatile({ omit: omitTemp })
    if (!scenario.after(volatile)) {
      return yield* Effect.dieMessage(`${scenario.name}: the operation did not do its job: ${JSON.stringify(volatile)}`)
    }
    return {
      calls,
      during: tally(seen.values(), scenario.during),
      after: tally(disk.crashStates(crashOptions), scenario.after)
    }
  })

// -- deliberately broken variants -------------------------------------------------

const withSync = (file: FileSystem.File, sync: Effect.Effect<void, PlatformError>): FileSystem.File => ({
  [FileTypeId]: file[FileTypeId],
  fd: file.fd,
  get stat() {
    return file.stat
  },
  seek: (offset, from) => file.seek(offset, from),
  sync,
  read: (buffer) => file.read(buffer),
  readAlloc: (size) => file.readAlloc(size),
  truncate: (length) => file.truncate(length),
  write: (buffer) => file.write(buffer),
  writeAll: (buffer) => file.writeAll(buffer)
})

/** Replaces `File.sync` by `sync(file, type)`. */
const overrideSync = (
  fs: FileSystem.FileSystem,
  sync: (file: FileSystem.File, type: FileSystem.File.Type) => Effect.Effect<void, PlatformError>
): FileSystem.FileSystem => ({
  ...fs,
  open: (path, options) =>
    Effect.map(
      fs.open(path, options),
      (file) => withSync(file, Effect.flatMap(file.stat, (info) => sync(file, info.type)))
    )
})

/** (a) fsync of a directory descriptor does nothing. */
export const noDirectorySync = (fs: FileSystem.FileSystem) =>
  overrideSync(fs, (file, type) => type === "Directory" ? Effect.void : file.sync)

/** (b) fsync of a regular file does nothing. */
export const noFileSync = (fs: FileSystem.FileSystem) =>
  overrideSync(fs, (file, type) => type === "File" ? Effect.void : file.sync)

/**
 * (c) The file's fsync is deferred past the rename: a no-op when asked for,
 * done on the renamed file once the rename has returned.
 */
export const renameBeforeSync = (fs: FileSystem.FileSystem): FileSystem.FileSystem => {
  const broken = noFileSync(fs)
  return {
    ...broken,
    rename: (from, to) =>
      Effect.zipRight(
        fs.rename(from, to),
        Effect.scoped(
          Effect.flatMap(fs.open(to, { flag: "r" }), (file) =>
            Effect.flatMap(file.stat, (info) => info.type === "File" ? file.sync : Effect.void))
        )
      )
  }
}

/**
 * Not a broken variant: a scheduler. The first `makeDirectory(dir)` creates
 * the directory, then signals `reached` and waits (interruptibly) for
 * `release` before returning: the window between a mkdir and the fsync of its
 * parent, held open.
 */
export const pauseAfterMakeDirectory = (
  dir: string,
  reached: Deferred.Deferred<void>,
  release: Deferred.Deferred<void>
) =>
(fs: FileSystem.FileSystem): FileSystem.FileSystem => {
  let paused = false
  return {
    ...fs,
    makeDirectory: (path, options) =>
      Effect.zipRight(
        fs.makeDirectory(path, options),
        Effect.suspend(() => {
          if (path !== dir || paused) return Effect.void
          paused = true
          return Effect.zipRight(Deferred.succeed(reached, undefined), Deferred.await(release))
        })
      )
  }
}
