import { FileSystem } from "@effect/platform"
import { assert, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Queue, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as Client from "../src/Client.js"
import * as LockManager from "../src/LockManager.js"
import * as PromiseApi from "../src/promise.js"
import { leftoverName, makeClient, tempDir } from "./utils/client.js"
import { expectIdle as expectManagerIdle } from "./utils/locks.js"
import * as Recording from "./utils/recordingFileSystem.js"

const bytesOf = (s: string) => new TextEncoder().encode(s)
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Client + LockManager over a recording Node file system, with its log. */
const recordingLayer = (options: Client.ClientOptions) =>
  Client.layer(options).pipe(
    Layer.provideMerge(Layer.mergeAll(LockManager.layer, Recording.layer())),
    Layer.orDie
  )

const TEMP = /\.([^/ ]+)\.[0-9a-z]{20}\.tmp(?= |$)/g

/**
 * The log relative to `dir` (shown as `~`), each temp file name reduced to
 * `.<name>.<tmp>`: only a name of the documented shape is reduced, so a wrong
 * temp name shows up in the comparison.
 */
const eventsIn = (dir: string) =>
  Effect.map(
    Effect.flatMap(Recording.FileSystemLog, (log) => log.events),
    (events) => events.map((event) => event.replaceAll(dir, "~").replace(TEMP, ".$1.<tmp>"))
  )

/** Only what orders durability: directory changes, renames, removals and fsyncs that succeeded. */
const durabilityEvents = (dir: string) =>
  Effect.map(
    eventsIn(dir),
    (events) => events.filter((event) => /^(sync|rename|makeDirectory|remove) /.test(event) && !event.includes(" !"))
  )

const clearLog = Effect.flatMap(Recording.FileSystemLog, (log) => log.clear)

const expectIdle = Effect.flatMap(LockManager.LockManager, expectManagerIdle)

const parentOf = (path: string) => path.slice(0, path.lastIndexOf("/"))
const baseOf = (path: string) => path.slice(path.lastIndexOf("/") + 1)
const show = (events: ReadonlyArray<string>) => `\n  ${events.join("\n  ")}`

/** The index of the one event equal to `event`. */
const indexOfOnly = (events: ReadonlyArray<string>, event: string): number => {
  const found = events.flatMap((e, i) => e === event ? [i] : [])
  assert(found.length === 1, `expected exactly one "${event}" in:${show(events)}`)
  return found[0]
}

/**
 * Asserts that an fsync of `dir` *started* after the event at `after` (the
 * directory was opened for it after that event) and returns its index.
 */
const syncedAfter = (events: ReadonlyArray<string>, after: number, dir: string): number => {
  for (let i = after + 1; i < events.length; i++) {
    if (events[i] === `sync ${dir}/.` && events.lastIndexOf(`open ${dir}/. r`, i) > after) return i
  }
  return assert.fail(`no fsync of ${dir} started after "${events[after]}" in:${show(events)}`)
}

/** The fsyncs that completed after the event at `after`. */
const syncsAfter = (events: ReadonlyArray<string>, after: number) =>
  events.slice(after + 1).filter((event) => event.startsWith("sync "))

/**
 * A durable replacement of `target` (written as in the log, e.g. `~/f.txt`)
 * whose directory exists: the temp file in the target's directory is created
 * exclusively, written, fsynced, closed and renamed over the target, in that
 * order; the target is touched by nothing but that rename; after the rename,
 * exactly one fsync, of the target's directory, started after it.
 */
const expectDurableReplacement = (
  events: ReadonlyArray<string>,
  target: string,
  writes: ReadonlyArray<number>
) => {
  const dir = parentOf(target)
  const temp = `${dir}/.${baseOf(target)}.<tmp>`
  const rename = `rename ${temp} ${target}`
  const mentions = (path: string) => events.filter((event) => event.split(" ").includes(path))
  expect(mentions(temp), `the temp file's events in:${show(events)}`).toEqual([
    `open ${temp} wx`,
    ...writes.map((bytes) => `writeAll ${temp} ${bytes}`),
    `sync ${temp}`,
    `close ${temp}`,
    rename
  ])
  expect(mentions(target).filter((event) => !event.startsWith("readFile "))).toEqual([rename])
  const renamed = indexOfOnly(events, rename)
  syncedAfter(events, renamed, dir)
  expect(syncsAfter(events, renamed), `fsyncs after the rename in:${show(events)}`).toEqual([`sync ${dir}/.`])
}

/**
 * Exactly `dirs` were created, in this order (top-down), and after each
 * mkdir an fsync of its parent started.
 */
const expectCreatedAndSynced = (events: ReadonlyArray<string>, dirs: ReadonlyArray<string>) => {
  expect(events.filter((event) => event.startsWith("makeDirectory "))).toEqual(
    dirs.map((d) => `makeDirectory ${d}`)
  )
  for (const d of dirs) syncedAfter(events, indexOfOnly(events, `makeDirectory ${d}`), parentOf(d))
}

describe("Client durability (durable: true)", () => {
  it.scoped("write: temp created exclusively, written, fsynced, renamed, then the directory fsynced", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      const log = yield* Recording.FileSystemLog
      expect(client.durable).toBe(true)
      nodeFs.writeFileSync(`${dir}/f.txt`, "old")
      yield* log.clear
      yield* client.write(`${dir}/f.txt`, "hello")
      expect(nodeFs.readFileSync(`${dir}/f.txt`, "utf8")).toBe("hello")

      // One temp file, named `.<name>.<20 chars>.tmp` in the target's directory.
      const raw = yield* log.events
      const temps = new Set(raw.flatMap((event) => event.split(" ")).filter((word) => word.includes("/.f.txt.")))
      expect(temps.size).toBe(1)
      const [temp] = temps
      expect(temp.startsWith(`${dir}/`)).toBe(true)
      expect(temp.slice(dir.length + 1)).toMatch(/^\.f\.txt\.[0-9a-z]{20}\.tmp$/)

      expectDurableReplacement(yield* eventsIn(dir), "~/f.txt", [5])
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("write of bytes in a subdirectory fsyncs that directory after the rename", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      nodeFs.mkdirSync(`${dir}/sub`)
      yield* clearLog
      yield* client.write(`${dir}/sub/data.bin`, new Uint8Array([1, 2, 3]), { mode: 0o600 })
      expectDurableReplacement(yield* eventsIn(dir), "~/sub/data.bin", [3])
      expect(nodeFs.readFileSync(`${dir}/sub/data.bin`)).toEqual(Buffer.from([1, 2, 3]))
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("sink: every chunk goes to the temp file, fsynced before the rename, directory fsynced after", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      yield* clearLog
      // One element per stream chunk: one write each (the empty one is skipped).
      yield* Stream.make("ab", "cde", "").pipe(
        Stream.map(bytesOf),
        Stream.rechunk(1),
        Stream.run(client.sink(`${dir}/out`))
      )
      expect(nodeFs.readFileSync(`${dir}/out`, "utf8")).toBe("abcde")
      expectDurableReplacement(yield* eventsIn(dir), "~/out", [2, 3])
      // The small elements of one stream chunk: gathered into one write.
      yield* clearLog
      yield* Stream.make("fg", "hij", "").pipe(Stream.map(bytesOf), Stream.run(client.sink(`${dir}/out`)))
      expect(nodeFs.readFileSync(`${dir}/out`, "utf8")).toBe("fghij")
      expectDurableReplacement(yield* eventsIn(dir), "~/out", [5])
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("modify: reads, then replaces as write does (also when the file is missing)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      const increment = (current: Option.Option<Uint8Array>) =>
        String(Number(Option.getOrElse(Option.map(current, text), () => "0")) + 1)

      yield* clearLog
      expect(yield* client.modify(`${dir}/counter`, increment)).toBe("1")
      let events = yield* eventsIn(dir)
      expect(events[0]).toBe("readFile ~/counter !NotFound")
      expectDurableReplacement(events, "~/counter", [1])

      yield* clearLog
      expect(yield* client.modify(`${dir}/counter`, increment)).toBe("2")
      events = yield* eventsIn(dir)
      expect(events[0]).toBe("readFile ~/counter")
      expectDurableReplacement(events, "~/counter", [1])
      expect(nodeFs.readFileSync(`${dir}/counter`, "utf8")).toBe("2")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("delete: the removed entry's directory is fsynced after the removal", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      nodeFs.mkdirSync(`${dir}/sub/deep`, { recursive: true })
      nodeFs.writeFileSync(`${dir}/sub/f`, "f")
      nodeFs.writeFileSync(`${dir}/sub/deep/g`, "g")

      yield* clearLog
      yield* client.delete(`${dir}/sub/f`)
      let events = yield* eventsIn(dir)
      let removed = indexOfOnly(events, "remove ~/sub/f")
      syncedAfter(events, removed, "~/sub")
      expect(syncsAfter(events, removed)).toEqual(["sync ~/sub/."])

      yield* clearLog
      yield* client.delete(`${dir}/sub`, { recursive: true })
      events = yield* eventsIn(dir)
      removed = indexOfOnly(events, "remove ~/sub")
      syncedAfter(events, removed, "~")
      expect(syncsAfter(events, removed)).toEqual(["sync ~/."])
      expect(nodeFs.readdirSync(dir)).toEqual([])
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("delete with force succeeds when the parent directory does not exist, and fsyncs nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      yield* clearLog
      yield* client.delete(`${dir}/no/such/file`, { force: true })
      const events = yield* eventsIn(dir)
      expect(events[0]).toBe("remove ~/no/such/file")
      expect(events.filter((event) => event.startsWith("sync "))).toEqual([])
      expect(nodeFs.existsSync(`${dir}/no`)).toBe(false)

      // Without force a missing file is still an error.
      const error = yield* Effect.flip(client.delete(`${dir}/no/such/file`))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotFound" })
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("rename in one directory fsyncs that directory once, after the rename", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      nodeFs.writeFileSync(`${dir}/a`, "a")
      yield* clearLog
      yield* client.rename(`${dir}/a`, `${dir}/b`)
      const events = yield* eventsIn(dir)
      const renamed = indexOfOnly(events, "rename ~/a ~/b")
      syncedAfter(events, renamed, "~")
      expect(syncsAfter(events, renamed)).toEqual(["sync ~/."])
      expect(nodeFs.readFileSync(`${dir}/b`, "utf8")).toBe("a")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("rename across directories fsyncs the target's directory, then the source's", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      nodeFs.mkdirSync(`${dir}/from`)
      nodeFs.mkdirSync(`${dir}/to`)
      nodeFs.writeFileSync(`${dir}/from/f`, "f")
      yield* clearLog
      yield* client.rename(`${dir}/from/f`, `${dir}/to/g`)
      const events = yield* eventsIn(dir)
      const renamed = indexOfOnly(events, "rename ~/from/f ~/to/g")
      expect(syncedAfter(events, renamed, "~/to")).toBeLessThan(syncedAfter(events, renamed, "~/from"))
      expect(syncsAfter(events, renamed)).toEqual(["sync ~/to/.", "sync ~/from/."])
      expect(nodeFs.readFileSync(`${dir}/to/g`, "utf8")).toBe("f")
      expect(nodeFs.existsSync(`${dir}/from/f`)).toBe(false)
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("a missing source fails without creating, removing or fsyncing anything", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      yield* clearLog
      const error = yield* Effect.flip(client.rename(`${dir}/missing`, `${dir}/new/dir/target`))
      expect(error).toMatchObject({ _tag: "FileSystemError", reason: "NotFound" })
      expect(yield* durabilityEvents(dir)).toEqual([])
      expect(nodeFs.readdirSync(dir)).toEqual([])
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("each created parent directory is followed by an fsync of its own parent", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client

      // write
      yield* clearLog
      yield* client.write(`${dir}/w/x/file`, "w")
      let events = yield* durabilityEvents(dir)
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/w", "~/w/x"])
      let renamed = indexOfOnly(events, "rename ~/w/x/.file.<tmp> ~/w/x/file")
      expect(events.indexOf("sync ~/w/x/.file.<tmp>")).toBeLessThan(renamed)
      expect(syncsAfter(events, renamed)).toEqual(["sync ~/w/x/."])

      // sink
      yield* clearLog
      yield* Stream.make(bytesOf("s")).pipe(Stream.run(client.sink(`${dir}/s/t/file`)))
      events = yield* durabilityEvents(dir)
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/s", "~/s/t"])
      renamed = indexOfOnly(events, "rename ~/s/t/.file.<tmp> ~/s/t/file")
      expect(events.indexOf("sync ~/s/t/.file.<tmp>")).toBeLessThan(renamed)
      expect(syncsAfter(events, renamed)).toEqual(["sync ~/s/t/."])

      // rename: the target's directory, then the source's after the move
      nodeFs.writeFileSync(`${dir}/src`, "r")
      yield* clearLog
      yield* client.rename(`${dir}/src`, `${dir}/r/q/moved`)
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/r", "~/r/q"])
      events = yield* durabilityEvents(dir)
      renamed = indexOfOnly(events, "rename ~/src ~/r/q/moved")
      expect(syncsAfter(events, renamed)).toEqual(["sync ~/r/q/.", "sync ~/."])

      // only the missing directory is created
      yield* clearLog
      yield* client.write(`${dir}/w/y/file`, "w")
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/w/y"])

      expect(nodeFs.readFileSync(`${dir}/w/x/file`, "utf8")).toBe("w")
      expect(nodeFs.readFileSync(`${dir}/s/t/file`, "utf8")).toBe("s")
      expect(nodeFs.readFileSync(`${dir}/r/q/moved`, "utf8")).toBe("r")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("a directory deleted through the client and created again is fsynced into its parent again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      yield* client.write(`${dir}/d/e/file`, "one")
      yield* client.delete(`${dir}/d`, { recursive: true })
      yield* clearLog
      yield* Stream.make(bytesOf("two")).pipe(Stream.run(client.sink(`${dir}/d/e/file`)))
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/d", "~/d/e"])
      expect(nodeFs.readFileSync(`${dir}/d/e/file`, "utf8")).toBe("two")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("a directory deleted by another Client and created again is fsynced into its parent again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      // A second Client over the same LockManager and file system (another
      // process would do the same).
      const other = yield* Effect.orDie(Client.make({ durable: true }))
      yield* client.write(`${dir}/d/e/file`, "one")
      yield* other.delete(`${dir}/d`, { recursive: true })
      yield* clearLog
      yield* client.write(`${dir}/d/e/file`, "two")
      // Both directories are new: without an fsync of its parent, each may be
      // lost in a power cut, and the "durable" file with it.
      expectCreatedAndSynced(yield* eventsIn(dir), ["~/d", "~/d/e"])
      expect(nodeFs.readFileSync(`${dir}/d/e/file`, "utf8")).toBe("two")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))

  it.scoped("a directory deleted and created again through the Promise facade is fsynced into its parent again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The facade works on a Node file system service of its own; this
      // Client on another (a recording wrapper of a build of the platform's layer).
      const { fs, log } = yield* Recording.makeNode()
      const manager = new PromiseApi.LockManager()
      const client = yield* Client.make({ durable: true }).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provide(manager.layer),
        Effect.orDie
      )
      const facade = new PromiseApi.Client({ manager })
      yield* client.write(`${dir}/d/e/file`, "one")
      yield* Effect.promise(() => facade.delete(`${dir}/d`, { recursive: true }))
      yield* Effect.promise(() => facade.write(`${dir}/d/e/other`, "not durable"))
      yield* log.clear
      yield* client.write(`${dir}/d/e/file`, "two")
      // Both directories are new and their entries were never fsynced: the
      // durable write makes them durable, else a power cut may take the file.
      const events = (yield* log.events).map((event) => event.replaceAll(dir, "~"))
      const renamed = events.findIndex((event) => event.startsWith("rename ") && event.endsWith(" ~/d/e/file"))
      expect(renamed, show(events)).toBeGreaterThan(-1)
      for (const synced of ["~", "~/d", "~/d/e"]) expect(events, show(events)).toContain(`sync ${synced}/.`)
      expect(nodeFs.readFileSync(`${dir}/d/e/file`, "utf8")).toBe("two")
      yield* expectManagerIdle(manager.service)
    }))

  it.scoped("recover fsyncs each directory it removed temp files from, after the removals", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      nodeFs.mkdirSync(`${dir}/sub`)
      const a = leftoverName("a")
      const b = leftoverName("b")
      nodeFs.writeFileSync(`${dir}/${a}`, "partial")
      nodeFs.writeFileSync(`${dir}/sub/${b}`, "partial")
      yield* clearLog
      const removed = yield* client.recover(dir, { recursive: true })
      expect(removed.sort()).toEqual([`${dir}/${a}`, `${dir}/sub/${b}`])
      const events = yield* eventsIn(dir)
      const lastRemoval = Math.max(
        indexOfOnly(events, "remove ~/.a.<tmp>"),
        indexOfOnly(events, "remove ~/sub/.b.<tmp>")
      )
      syncedAfter(events, lastRemoval, "~")
      syncedAfter(events, lastRemoval, "~/sub")
      expect(syncsAfter(events, lastRemoval).sort()).toEqual(["sync ~/.", "sync ~/sub/."])
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: true }))))
})

describe("Client without durability (durable: false)", () => {
  it.scoped("no operation fsyncs a file or a directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Client.Client
      expect(client.durable).toBe(false)
      const c = leftoverName("c")
      nodeFs.writeFileSync(`${dir}/${c}`, "partial")
      yield* clearLog

      // Not durable, a write is two platform calls: the temp file's whole
      // life (exclusive create, write, close) in one, then the rename.
      yield* client.write(`${dir}/f`, "one")
      expect(yield* eventsIn(dir)).toEqual([
        "writeFile ~/.f.<tmp> wx 3",
        "rename ~/.f.<tmp> ~/f"
      ])

      yield* client.write(`${dir}/a/b/f`, "two")
      yield* Stream.make(bytesOf("three")).pipe(Stream.run(client.sink(`${dir}/s/t/f`)))
      yield* client.modify(`${dir}/f`, () => "four")
      yield* client.rename(`${dir}/f`, `${dir}/a/g`)
      yield* client.rename(`${dir}/a/g`, `${dir}/r/q/h`)
      yield* client.delete(`${dir}/r/q/h`)
      yield* client.delete(`${dir}/s`, { recursive: true })
      yield* client.delete(`${dir}/no/such/file`, { force: true })
      expect(yield* client.recover(dir)).toEqual([`${dir}/${c}`])

      const events = yield* eventsIn(dir)
      expect(events.filter((event) => event.startsWith("sync "))).toEqual([])
      // A directory is never opened (that is only done to fsync it).
      expect(events.filter((event) => event.startsWith("open ") && !event.includes(" wx"))).toEqual([])
      // The operations did happen.
      expect(events.filter((event) => event.startsWith("makeDirectory "))).toEqual([
        "makeDirectory ~/a",
        "makeDirectory ~/a/b",
        "makeDirectory ~/s",
        "makeDirectory ~/s/t",
        "makeDirectory ~/r",
        "makeDirectory ~/r/q"
      ])
      expect(nodeFs.readdirSync(dir).sort()).toEqual(["a", "r"])
      expect(nodeFs.readFileSync(`${dir}/a/b/f`, "utf8")).toBe("two")
      yield* expectIdle
    }).pipe(Effect.provide(recordingLayer({ durable: false }))))
})

describe("Client durability with concurrent writers", () => {
  it.live("a writer that renames while a directory fsync is in flight waits for a later fsync", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      // Each fsync of `dir` reports that it started and waits for a permit.
      const started = yield* Queue.unbounded<void>()
      const permits = yield* Queue.unbounded<void>()
      const { fs, log } = yield* Recording.makeNode({
        sync: (path) =>
          path === `${dir}/.` ? Effect.zipRight(Queue.offer(started, undefined), Queue.take(permits)) : Effect.void
      })
      const { client, manager } = yield* makeClient({ durable: true }, Layer.succeed(FileSystem.FileSystem, fs))
      const isRunning = (fiber: Fiber.Fiber<unknown, unknown>) => Effect.map(Fiber.poll(fiber), Option.isNone)
      const renamed = (name: string) => (events: ReadonlyArray<string>) =>
        events.some((event) => event.startsWith("rename ") && event.endsWith(` ${dir}/${name}`))

      const first = yield* Effect.fork(client.write(`${dir}/a`, "a"))
      yield* Queue.take(started)
      // While the first writer's directory fsync is in flight, two more writers rename.
      const second = yield* Effect.fork(client.write(`${dir}/b`, "b"))
      const third = yield* Effect.fork(client.write(`${dir}/c`, "c"))
      yield* log.waitFor((events) => renamed("b")(events) && renamed("c")(events))
      for (const fiber of [first, second, third]) expect(yield* isRunning(fiber)).toBe(true)

      // The fsync in flight may have started before their renames: it completes the first writer only.
      yield* Queue.offer(permits, undefined)
      yield* Fiber.join(first)
      yield* Queue.take(started)
      expect(yield* isRunning(second)).toBe(true)
      expect(yield* isRunning(third)).toBe(true)

      // The next fsync started after both renames and completes both.
      yield* Queue.offer(permits, undefined)
      yield* Fiber.join(second)
      yield* Fiber.join(third)
      const events = (yield* log.events).map((event) => event.replaceAll(dir, "~").replace(TEMP, ".$1.<tmp>"))
      const syncs = events.flatMap((event, i) => event === "sync ~/." ? [i] : [])
      expect(syncs.length).toBe(2)
      const lastRename = Math.max(events.indexOf("rename ~/.b.<tmp> ~/b"), events.indexOf("rename ~/.c.<tmp> ~/c"))
      // The second fsync's directory was opened after the last rename.
      expect(events.lastIndexOf("open ~/. r")).toBeGreaterThan(lastRename)
      expect(events.lastIndexOf("open ~/. r")).toBeLessThan(syncs[1])
      expect(yield* Queue.size(started)).toBe(0)
      expect(yield* manager.stats).toEqual({ held: 0, pending: 0, nodes: 0 })
    })))
})

describe("Client durability: an interruption is honoured up to the rename", () => {
  // Each operation is interrupted while its temp file's fsync runs (an
  // uninterruptible step): the interruption must take effect after it, before
  // the rename, so the target keeps its old content and the temp file goes.
  const operations: ReadonlyArray<
    readonly [string, (client: Client.ClientService, dir: string) => Effect.Effect<unknown, unknown>]
  > = [
    ["write", (client, dir) => client.write(`${dir}/f`, "NEW")],
    ["sink", (client, dir) => Stream.run(Stream.make(bytesOf("NEW")), client.sink(`${dir}/f`))],
    ["modify", (client, dir) => client.modify(`${dir}/f`, () => "NEW")],
    ["copy", (client, dir) => client.copy(`${dir}/source`, `${dir}/f`)]
  ]
  for (const confined of [false, true]) {
    for (const [name, operation] of operations) {
      it.live(`${name}${confined ? ", confined" : ""}: interrupted during the temp file's fsync, the target is as it was`, () =>
        Effect.scoped(Effect.gen(function*() {
          const dir = yield* tempDir
          nodeFs.writeFileSync(`${dir}/f`, "OLD")
          nodeFs.writeFileSync(`${dir}/source`, "NEW")
          const syncing = yield* Deferred.make<void>()
          const gate = yield* Deferred.make<void>()
          const { fs, log } = yield* Recording.makeNode({
            sync: (path) =>
              path.includes("/.f.")
                ? Effect.zipRight(Deferred.succeed(syncing, undefined), Deferred.await(gate))
                : Effect.void
          })
          const { client, manager } = yield* makeClient(
            { durable: true, ...(confined ? { root: dir } : {}) },
            Layer.succeed(FileSystem.FileSystem, fs)
          )
          const fiber = yield* Effect.fork(operation(client, dir))
          yield* Deferred.await(syncing)
          yield* Fiber.interruptFork(fiber)
          yield* Deferred.succeed(gate, undefined)
          const exit = yield* Fiber.await(fiber)
          expect(Exit.isInterrupted(exit), `${exit}`).toBe(true)
          expect(nodeFs.readFileSync(`${dir}/f`, "utf8")).toBe("OLD")
          expect(nodeFs.readdirSync(dir).sort()).toEqual(["f", "source"])
          expect((yield* log.events).filter((event) => event.startsWith("rename "))).toEqual([])
          yield* expectManagerIdle(manager)
        })))
    }
  }
})
