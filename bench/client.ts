/**
 * Client benchmarks. Each case compares a Client operation with what a user
 * could write instead on the same machine: the same steps on bare `node:fs`,
 * the npm package `write-file-atomic` (v7), `fs.promises.readFile`,
 * `fs.createReadStream` and `fs.createWriteStream`. The Client pays for its
 * locks, spans, metrics and error mapping; the ratios say how much that costs.
 *
 * Every case works in its own temp directory (under `os.tmpdir()`, removed at
 * the end) and checks after the warm-up and every round that each runner left
 * exactly the files it should, with the right sizes, and no temp file.
 *
 * The durable cases build their Clients over a counting `FileSystem` (the
 * Node one, wrapped) to report how many directory fsyncs a durable write
 * costs with and without group commit.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Stream from "effect/Stream"
import { once } from "node:events"
import * as nodeFs from "node:fs"
import * as fsp from "node:fs/promises"
import { createRequire } from "node:module"
import * as path from "node:path"
import { finished } from "node:stream/promises"
import { type Case, effectRunner, type Extra, type Prepared, type Suite } from "./harness.js"
import {
  countingFileSystem,
  countRuns,
  effectWriters,
  expectFiles,
  fileNames,
  makeClient,
  nodeFileSystem,
  promiseRunner,
  promiseWriters,
  range,
  type SyncCounts,
  tempBeside,
  totals,
  workspace
} from "./writers.js"

// write-file-atomic v7 ships no types (and @types/write-file-atomic stops at
// v4): the one call used here, typed by hand.
type WriteFileAtomic = (
  file: string,
  data: string | Uint8Array,
  // It mutates its options (it stores the mode and owner of the file it
  // replaces there): pass a fresh object on every call.
  options?: { fsync?: boolean }
) => Promise<void>
const writeFileAtomic = createRequire(import.meta.url)("write-file-atomic") as WriteFileAtomic

const KiB = 1024
const MiB = 1024 * KiB

/**
 * The steps of an atomic write on bare `node:fs/promises`: exclusive create
 * of a temp file beside the target, write, close, rename. No lock, no fsync.
 */
const bareWrite = async (target: string, data: Uint8Array): Promise<void> => {
  const temp = tempBeside(target)
  const handle = await fsp.open(temp, "wx")
  try {
    await handle.write(data)
  } finally {
    await handle.close()
  }
  await fsp.rename(temp, target)
}

// --- write, not durable ---

const WRITE_SIZE = 250
const WRITERS = 16
const BARE_WRITE = "node:fs/promises open/write/close/rename"
const PLATFORM_WRITE = "FileSystem.writeFile wx + rename (platform, no lock)"

const writeCase: Case = {
  name: "write 250 B, 16 writers",
  description: `Client.write (not durable) of ${WRITE_SIZE} B by ${WRITERS} concurrent fibers, each replacing its ` +
    "own file in one directory, vs the same steps on bare node:fs/promises (open \"wx\" temp, write, close, rename; " +
    "no lock), vs write-file-atomic v7 { fsync: false }, and vs the two platform calls the Client makes " +
    "(FileSystem.writeFile of the temp file with flag \"wx\", then rename; no lock, no span: what the Client adds)",
  setup: ({ size }): Prepared => {
    const perWriter = size(125, 3)
    const ops = WRITERS * perWriter
    const data = new Uint8Array(WRITE_SIZE).fill(0x61)
    const ws = workspace("write")
    const dirs = { client: ws.dir("client"), bare: ws.dir("bare"), wfa: ws.dir("wfa"), platform: ws.dir("platform") }
    const names = fileNames(WRITERS)
    const target = (dir: string, writer: number) => path.join(dir, names[writer])
    const client = makeClient({})
    return {
      subject: effectRunner(
        "Client.write",
        ops,
        effectWriters(WRITERS, perWriter, (writer) => client.write(target(dirs.client, writer), data))
      ),
      baselines: [
        promiseRunner(
          BARE_WRITE,
          ops,
          promiseWriters(WRITERS, perWriter, (writer) => bareWrite(target(dirs.bare, writer), data))
        ),
        promiseRunner(
          "write-file-atomic fsync: false",
          ops,
          promiseWriters(
            WRITERS,
            perWriter,
            (writer) => writeFileAtomic(target(dirs.wfa, writer), data, { fsync: false })
          )
        ),
        effectRunner(
          PLATFORM_WRITE,
          ops,
          effectWriters(WRITERS, perWriter, (writer) =>
            Effect.suspend(() => {
              const file = target(dirs.platform, writer)
              const temp = tempBeside(file)
              return Effect.zipRight(
                nodeFileSystem.writeFile(temp, data, { flag: "wx" }),
                nodeFileSystem.rename(temp, file)
              )
            }))
        )
      ],
      ceilings: [{ of: PLATFORM_WRITE, against: BARE_WRITE }],
      verify: async () => {
        for (const dir of Object.values(dirs)) expectFiles(dir, names, WRITE_SIZE)
      },
      teardown: ws.teardown
    }
  }
}

// --- write, durable: directory fsyncs counted ---

/** At 64 writers, with group commit: at most this many directory fsyncs per durable write. */
const GROUP_COMMIT_TARGET = 0.25

const durableCase = (writers: number, perWriterFull: number): Case => ({
  name: `write durable, ${writers} writers`,
  description: `Client.write durable (fsync of the temp file, rename, fsync of the directory; group commit on) of ` +
    `${WRITE_SIZE} B by ${writers} concurrent fibers, each replacing its own file in one directory, vs ` +
    "write-file-atomic v7 with fsync on (it fsyncs the file but NOT the directory, so its rename may be lost on a " +
    "power cut) and vs the same Client with groupCommit: false (one directory fsync per write)",
  setup: ({ size }): Prepared => {
    const perWriter = size(perWriterFull, 1)
    const ops = writers * perWriter
    const data = new Uint8Array(WRITE_SIZE).fill(0x62)
    const ws = workspace(`durable-${writers}`)
    const dirs = { group: ws.dir("group"), single: ws.dir("single"), wfa: ws.dir("wfa") }
    const names = fileNames(writers)
    const target = (dir: string, writer: number) => path.join(dir, names[writer])
    const groupCounts: SyncCounts = { directories: 0, files: 0, other: 0 }
    const singleCounts: SyncCounts = { directories: 0, files: 0, other: 0 }
    const group = makeClient({ durable: true }, countingFileSystem(nodeFileSystem, groupCounts))
    const single = makeClient({ durable: true, groupCommit: false }, countingFileSystem(nodeFileSystem, singleCounts))
    const subject = countRuns(
      effectRunner(
        "Client.write durable",
        ops,
        effectWriters(writers, perWriter, (writer) => group.write(target(dirs.group, writer), data))
      ),
      groupCounts
    )
    const noGroup = countRuns(
      effectRunner(
        "Client.write durable, groupCommit: false",
        ops,
        effectWriters(writers, perWriter, (writer) => single.write(target(dirs.single, writer), data))
      ),
      singleCounts
    )
    return {
      subject: subject.runner,
      baselines: [
        promiseRunner(
          "write-file-atomic fsync: true (no dir fsync)",
          ops,
          promiseWriters(
            writers,
            perWriter,
            (writer) => writeFileAtomic(target(dirs.wfa, writer), data, { fsync: true })
          )
        ),
        noGroup.runner
      ],
      verify: async () => {
        for (const dir of Object.values(dirs)) expectFiles(dir, names, WRITE_SIZE)
        for (const counts of [groupCounts, singleCounts]) {
          if (counts.other !== 0) throw new Error(`${counts.other} fsyncs of non-directories opened with flag "r"`)
        }
        const last = noGroup.runs[noGroup.runs.length - 1]
        if (last !== undefined && last.directories < last.writes) {
          throw new Error(`groupCommit: false made ${last.directories} directory fsyncs for ${last.writes} writes`)
        }
      },
      extra: (): Extra => {
        const withGroup = totals(subject.runs)
        const without = totals(noGroup.runs)
        const per = (n: number) => n.toFixed(3)
        const lines = [
          `directory fsyncs per durable write at ${writers} writers: group commit ${
            per(withGroup.directoryFsyncsPerWrite)
          } (${withGroup.directoryFsyncs} / ${withGroup.writes}), groupCommit: false ${
            per(without.directoryFsyncsPerWrite)
          } (${without.directoryFsyncs} / ${without.writes}); write-file-atomic 0 (it never fsyncs a directory)`,
          `file fsyncs per durable write: group commit ${per(withGroup.fileFsyncsPerWrite)}, groupCommit: false ${
            per(without.fileFsyncsPerWrite)
          } (counted over ${withGroup.runs} run(s) after the first)`
        ]
        const data: Record<string, unknown> = { writers, groupCommit: withGroup, noGroupCommit: without }
        if (writers >= 64) {
          const met = withGroup.directoryFsyncsPerWrite <= GROUP_COMMIT_TARGET
          lines.push(
            `target: at most ${GROUP_COMMIT_TARGET} directory fsyncs per write with group commit at ${writers} ` +
              `writers: ${met ? "met" : "MISSED"} (${per(withGroup.directoryFsyncsPerWrite)})`
          )
          data.target = { maxDirectoryFsyncsPerWrite: GROUP_COMMIT_TARGET, met }
        }
        return { lines, data }
      },
      teardown: ws.teardown
    }
  }
})

// --- read ---

const READ_SIZE = 4 * KiB
const PROMISES_READ = "fs.promises.readFile"
const PLATFORM_READ = "FileSystem.readFile (platform, no lock)"

const readCase: Case = {
  name: "read 4 KiB",
  description: `sequential Client.read of one ${READ_SIZE / KiB} KiB file (read lock, span, metrics) ` +
    "vs fs.promises.readFile of the same file (target: at least 0.9x), and vs the platform's FileSystem.readFile " +
    "that the Client calls (no lock, no span: what the Client itself adds)",
  setup: ({ size }): Prepared => {
    const ops = size(8_000, 50)
    const ws = workspace("read")
    const file = path.join(ws.dir("data"), "doc.bin")
    nodeFs.writeFileSync(file, new Uint8Array(READ_SIZE).fill(0x63))
    const client = makeClient({})
    const check = (bytes: Uint8Array) => {
      if (bytes.length !== READ_SIZE) throw new Error(`read ${bytes.length} bytes, expected ${READ_SIZE}`)
    }
    return {
      subject: effectRunner(
        "Client.read",
        ops,
        Effect.forEach(range(ops), () => Effect.map(client.read(file), check), { discard: true })
      ),
      baselines: [
        promiseRunner(PROMISES_READ, ops, async () => {
          for (let i = 0; i < ops; i++) check(await fsp.readFile(file))
        }),
        effectRunner(
          PLATFORM_READ,
          ops,
          Effect.forEach(range(ops), () => Effect.map(nodeFileSystem.readFile(file), check), { discard: true })
        )
      ],
      ceilings: [{ of: PLATFORM_READ, against: PROMISES_READ }],
      teardown: ws.teardown
    }
  }
}

// --- stream and sink: ops are MiB, so ops/s are MiB/s ---

const STREAM_MIB = 256
const CHUNK = 64 * KiB

/** A file of `bytes` bytes, written in 1 MiB pieces. */
const bigFile = (file: string, bytes: number): void => {
  const piece = new Uint8Array(Math.min(MiB, bytes)).fill(0x64)
  const fd = nodeFs.openSync(file, "w")
  try {
    for (let written = 0; written < bytes; written += piece.length) nodeFs.writeSync(fd, piece)
  } finally {
    nodeFs.closeSync(fd)
  }
}

const expectBytes = (what: string, actual: number, expected: number): void => {
  if (actual !== expected) throw new Error(`${what}: ${actual} bytes, expected ${expected}`)
}

const readStreamBytes = (file: string, highWaterMark?: number): Promise<number> =>
  new Promise((resolve, reject) => {
    let bytes = 0
    const stream = nodeFs.createReadStream(file, highWaterMark === undefined ? {} : { highWaterMark })
    stream.on("data", (chunk) => bytes += chunk.length)
    stream.on("end", () => resolve(bytes))
    stream.on("error", reject)
  })

const fmtSize = (bytes: number) => bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`

const streamCase = (chunkSize: number | undefined): Case => ({
  name: `stream 256 MiB, chunk ${fmtSize(chunkSize ?? CHUNK)}`,
  description: `Client.stream of a ${STREAM_MIB} MiB file (in the page cache) consumed fully, counting bytes, ` +
    `chunkSize ${chunkSize === undefined ? "default (64 KiB)" : fmtSize(chunkSize)}, vs fs.createReadStream ` +
    `(highWaterMark 64 KiB${chunkSize === undefined ? "" : ` and ${fmtSize(chunkSize)}`}), and vs the platform's ` +
    "FileSystem.stream that the Client wraps (no lock); ops are MiB (target: at least 0.8x)",
  setup: ({ size }): Prepared => {
    const mib = size(STREAM_MIB, 1)
    const bytes = mib * MiB
    const ws = workspace("stream")
    const file = path.join(ws.dir("data"), "big.bin")
    bigFile(file, bytes)
    const client = makeClient({})
    const streamed = client.stream(file, chunkSize === undefined ? undefined : { chunkSize }).pipe(
      Stream.runFold(0, (total, chunk) => total + chunk.length),
      Effect.map((total) => expectBytes("Client.stream", total, bytes))
    )
    const platform = nodeFileSystem.stream(
      file,
      chunkSize === undefined ? {} : { chunkSize: FileSystem.Size(chunkSize) }
    )
      .pipe(
        Stream.runFold(0, (total, chunk) => total + chunk.length),
        Effect.map((total) => expectBytes("FileSystem.stream", total, bytes))
      )
    const readStream = (highWaterMark?: number) => async () =>
      expectBytes("fs.createReadStream", await readStreamBytes(file, highWaterMark), bytes)
    return {
      subject: effectRunner(
        `Client.stream${chunkSize === undefined ? "" : ` chunkSize ${fmtSize(chunkSize)}`}`,
        mib,
        streamed
      ),
      baselines: [
        promiseRunner("fs.createReadStream", mib, readStream()),
        ...(chunkSize === undefined ?
          [] :
          [promiseRunner(`fs.createReadStream hwm ${fmtSize(chunkSize)}`, mib, readStream(chunkSize))]),
        effectRunner("FileSystem.stream (platform, no lock)", mib, platform)
      ],
      teardown: ws.teardown
    }
  }
})

/**
 * `perChunk`: how many 64 KiB buffers each stream chunk carries. `Stream.fromIterable`
 * makes chunks of up to 4,096 elements, which the Client gathers into 1 MiB writes;
 * one per chunk is what a Node Readable turned into a Stream gives.
 */
const sinkCase = (perChunk: number | undefined): Case => ({
  name: `sink 256 MiB${perChunk === undefined ? "" : `, ${perChunk} buffer per stream chunk`}`,
  description: `Client.sink (not durable: temp file, rename) fed ${STREAM_MIB} MiB as 64 KiB chunks of one ` +
    `pre-allocated buffer by a Stream (${
      perChunk === undefined ? "Stream.fromIterable: up to 4,096 per stream chunk" : `${perChunk} per stream chunk`
    }), vs fs.createWriteStream of the same chunks over the target (honouring ` +
    "backpressure; in place, not atomic), and vs the Client's steps on node:fs (createWriteStream to a temp file " +
    "opened \"wx\", then rename over the target); ops are MiB (target: at least 0.8x)",
  setup: ({ size }): Prepared => {
    const mib = size(STREAM_MIB, 1)
    const bytes = mib * MiB
    const chunk = new Uint8Array(CHUNK).fill(0x65)
    const chunks: ReadonlyArray<Uint8Array> = range(bytes / CHUNK).map(() => chunk)
    const ws = workspace("sink")
    const dirs = { client: ws.dir("client"), node: ws.dir("node"), atomic: ws.dir("atomic") }
    const writeChunks = async (file: string, flags: string) => {
      const stream = nodeFs.createWriteStream(file, { flags })
      for (const c of chunks) {
        if (!stream.write(c)) await once(stream, "drain")
      }
      stream.end()
      await finished(stream)
    }
    const client = makeClient({})
    return {
      subject: effectRunner(
        "Client.sink",
        mib,
        Stream.fromIterable(chunks).pipe(
          perChunk === undefined ? identity : Stream.rechunk(perChunk),
          Stream.run(client.sink(path.join(dirs.client, "big.bin")))
        )
      ),
      baselines: [
        promiseRunner("fs.createWriteStream", mib, () => writeChunks(path.join(dirs.node, "big.bin"), "w")),
        promiseRunner("fs.createWriteStream temp + rename", mib, async () => {
          const temp = tempBeside(path.join(dirs.atomic, "big.bin"))
          await writeChunks(temp, "wx")
          await fsp.rename(temp, path.join(dirs.atomic, "big.bin"))
        })
      ],
      verify: async () => {
        for (const dir of Object.values(dirs)) expectFiles(dir, ["big.bin"], bytes)
      },
      teardown: ws.teardown
    }
  }
})

export const suite: Suite = {
  name: "client",
  cases: [
    writeCase,
    durableCase(16, 40),
    durableCase(64, 12),
    readCase,
    streamCase(undefined),
    streamCase(MiB),
    sinkCase(undefined),
    sinkCase(1)
  ]
}
