/**
 * The Promise facade against the original library (@far-analytics/persistence
 * 1.22.4): every behaviour its README's API section documents, and the cases
 * where the facade used to differ (issue 19; issue 15, item 9), each written
 * with the outcome the original's documentation and source give.
 *
 * Every case runs against the facade, and against the original itself when
 * it is present beside the repository (`../shared/original/dist`, loaded at
 * run time), so each expectation is checked against the real thing. A clone
 * without it skips the original's runs, under a describe that says so.
 *
 * The cases that differ on purpose (README: Promise API, "Where it differs")
 * are at the end, each with both behaviours.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { Readable, Writable } from "node:stream"
import { describe, expect, it } from "vitest"
import * as Facade from "../src/promise.js"
import {
  facade,
  type Implementation,
  loadOriginal,
  type LockManagerLike,
  type NodeError,
  ORIGINAL_DIST,
  originalImplementation,
  perTestDirectory,
  rejection,
  within
} from "./utils/promise.js"

const { at, dir: currentDir } = perTestDirectory("persistence-conformance-")

const original = loadOriginal()
if (original === undefined) {
  console.warn(`promise.conformance: ${ORIGINAL_DIST} is absent: the original library's runs are skipped`)
}

// ---------------------------------------------------------------------------
// Helpers, the same for both implementations
// ---------------------------------------------------------------------------

/** Every entry of the test directory (dot files included: a temp file left behind shows). */
const entries = (dir = currentDir()) => fs.readdirSync(dir).sort()

/**
 * Resolves at `close` with the error emitted before it, if any (or, if the
 * stream had already closed, the error it was destroyed with: the original
 * may emit before the caller could listen).
 */
const closed = (stream: Readable | Writable) =>
  within(
    new Promise<NodeError | undefined>((resolve) => {
      let error: NodeError | undefined
      stream.on("error", (e) => error = e)
      if (stream.closed) return resolve((stream.errored ?? undefined) as NodeError | undefined)
      stream.once("close", () => resolve(error))
    }),
    "close"
  )

/** Everything a Readable gives, and the chunks it came in. */
const drain = async (readable: Readable) => {
  const chunks: Array<Buffer | string> = []
  for await (const chunk of readable) chunks.push(chunk as Buffer | string)
  return chunks
}

/** `write` as a Promise of its callback's error (`null` for success). */
const written = (stream: Writable, chunk: string | Buffer) =>
  new Promise<NodeError | null>((resolve) =>
    stream.write(chunk, (error) => resolve((error ?? null) as NodeError | null))
  )

/** Whether `path` can be write-locked now or soon: a lock left behind is a hang, turned into a failure. */
const expectFree = async (manager: LockManagerLike, path: string) => {
  const id = await within(manager.acquire(path, "write"), `write lock on ${path}`)
  manager.release(id)
}

type Mode = "read" | "write"

const conflicts = (a: { mode: Mode; paths: Array<string> }, b: { mode: Mode; paths: Array<string> }) =>
  (a.mode === "write" || b.mode === "write") &&
  a.paths.some((p) =>
    b.paths.some((q) => p === q || p.startsWith(q === "/" ? q : `${q}/`) || q.startsWith(p === "/" ? p : `${p}/`))
  )

/**
 * Takes locks by label and records the order of grants; a grant while a
 * conflicting lock is held is recorded as a violation. Checked when a grant
 * happens, so no timing is assumed: a wrong grant shows whenever it comes.
 */
const tracker = (manager: LockManagerLike) => {
  const held = new Map<string, { mode: Mode; paths: Array<string>; id: number }>()
  const order: Array<string> = []
  const violations: Array<string> = []
  const granted = (label: string, mode: Mode, paths: Array<string>) => (id: number) => {
    for (const [other, lock] of held) {
      if (conflicts(lock, { mode, paths })) violations.push(`${label} granted while ${other} held`)
    }
    held.set(label, { mode, paths: paths.map((p) => nodePath.resolve(p)), id })
    order.push(label)
    return id
  }
  return {
    order,
    violations,
    acquire: (label: string, path: string, mode: Mode) =>
      within(manager.acquire(path, mode).then(granted(label, mode, [nodePath.resolve(path)])), label),
    acquireAll: (label: string, paths: Array<string>) =>
      within(manager.acquireAll(paths).then(granted(label, "write", paths.map((p) => nodePath.resolve(p)))), label),
    release: (label: string) => {
      const lock = held.get(label)
      if (lock === undefined) throw new Error(`${label} is not held`)
      held.delete(label)
      manager.release(lock.id)
    }
  }
}

/** An error as the original's own: a plain Error with its message and no code. */
const expectOriginalError = (error: NodeError, message: string) => {
  expect(error.constructor).toBe(Error)
  expect(error.message).toBe(message)
  expect(error.code).toBeUndefined()
}

// ---------------------------------------------------------------------------
// The cases, run against one implementation
// ---------------------------------------------------------------------------

const conformance = (title: string, impl: Implementation | undefined) =>
  describe.skipIf(impl === undefined)(title, () => {
    const setup = (options?: { durable?: boolean }) => {
      const manager = impl!.manager()
      return { manager, client: impl!.client(manager, options) }
    }

    describe("README: the Client class", () => {
      it("new Client({ manager, durable }): durable defaults to false", () => {
        const manager = impl!.manager()
        expect(impl!.client(manager).durable).toBe(false)
        expect(impl!.client(manager, { durable: true }).durable).toBe(true)
      })

      it("new Client({ manager, durable: null }) and errorHandler null are the defaults", () => {
        const manager = impl!.manager()
        const loose = { durable: null, errorHandler: null } as unknown as { durable?: boolean }
        expect(Boolean(impl!.client(manager, loose).durable)).toBe(false)
      })

      it("write then read: a Buffer by default, a string with an encoding (string or object form)", async () => {
        const { client } = setup()
        await client.write(at("a.json"), JSON.stringify({ message: "Hello, World!" }))
        const bytes = await client.read(at("a.json"))
        expect(Buffer.isBuffer(bytes)).toBe(true)
        expect(bytes.toString()).toBe("{\"message\":\"Hello, World!\"}")
        expect(await client.read(at("a.json"), "utf8")).toBe("{\"message\":\"Hello, World!\"}")
        expect(await client.read(at("a.json"), { encoding: "base64" })).toBe(
          Buffer.from("{\"message\":\"Hello, World!\"}").toString("base64")
        )
        expect(Buffer.isBuffer(await client.read(at("a.json"), null))).toBe(true)
      })

      it("write: string (with an encoding), Buffer, TypedArray, DataView, Iterable, AsyncIterable, Stream", async () => {
        const { client } = setup()
        const cases: Array<[unknown, unknown, string]> = [
          ["4142", "hex", "AB"],
          ["é", { encoding: "latin1" }, "\xe9"],
          [Buffer.from("buffer"), undefined, "buffer"],
          [new Uint8Array([116, 97]), undefined, "ta"],
          [new DataView(new Uint8Array([100, 118]).buffer), undefined, "dv"],
          [["it", Buffer.from("er")], undefined, "iter"],
          [
            (async function*() {
              yield "as"
              yield Buffer.from("ync")
            })(),
            undefined,
            "async"
          ],
          [Readable.from(["str", "eam"]), undefined, "stream"]
        ]
        for (const [i, [data, options, expected]] of cases.entries()) {
          await client.write(at(`w${i}`), data, options)
          expect(fs.readFileSync(at(`w${i}`), "latin1")).toBe(expected)
        }
        // Atomic replacement leaves no temp file.
        expect(entries()).toEqual(cases.map((_, i) => `w${i}`).sort())
      })

      it("write: replaces atomically, creates missing parents, sets mode; no temp file is left", async () => {
        const { client } = setup({ durable: true })
        await client.write(at("d", "e", "f"), "first")
        await client.write(at("d", "e", "f"), "second", { mode: 0o600 })
        expect(fs.readFileSync(at("d", "e", "f"), "utf8")).toBe("second")
        expect(fs.statSync(at("d", "e", "f")).mode & 0o777).toBe(0o600)
        expect(entries(at("d", "e"))).toEqual(["f"])
      })

      it("write with a signal: an abort rejects with an AbortError and keeps the old content", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "old")
        const error = await rejection(client.write(at("f"), "new", { signal: AbortSignal.abort() }))
        expect(error.name).toBe("AbortError")
        expect(error.code).toBe("ABORT_ERR")
        expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
        expect(entries()).toEqual(["f"])
        await expectFree(manager, at("f"))
      })

      it("read with a signal: an abort rejects with an AbortError", async () => {
        const { client } = setup()
        fs.writeFileSync(at("f"), "x")
        const error = await rejection(client.read(at("f"), { encoding: "utf8", signal: AbortSignal.abort() }))
        expect(error.name).toBe("AbortError")
        expect(error.code).toBe("ABORT_ERR")
      })

      it("collect: names, Buffers, Dirents (Buffer names too), recursive; the root can be listed", async () => {
        const { client } = setup()
        fs.mkdirSync(at("d"))
        fs.writeFileSync(at("d", "x"), "x")
        fs.writeFileSync(at("f"), "f")
        expect((await client.collect(currentDir())).sort()).toEqual(["d", "f"])
        expect((await client.collect(currentDir(), { encoding: "utf8", withFileTypes: false })).sort()).toEqual([
          "d",
          "f"
        ])
        const buffers = await client.collect(currentDir(), "buffer") as Array<Buffer>
        expect(buffers.every((b) => Buffer.isBuffer(b))).toBe(true)
        expect(buffers.map((b) => b.toString()).sort()).toEqual(["d", "f"])
        const dirents = await client.collect(currentDir(), { encoding: "buffer", withFileTypes: true }) as Array<
          fs.Dirent<Buffer>
        >
        const byName = new Map(dirents.map((d) => [d.name.toString(), d]))
        expect(Buffer.isBuffer(dirents[0].name)).toBe(true)
        expect(byName.get("d")!.isDirectory()).toBe(true)
        expect(byName.get("f")!.isFile()).toBe(true)
        expect(byName.get("f")!.parentPath).toBe(currentDir())
        expect((await client.collect(currentDir(), { recursive: true })).sort()).toEqual(["d", "d/x", "f"])
        expect(await client.collect("/")).toContain(currentDir().split("/")[1])
      })

      it("write and the streams take a number or a boolean as options as no options (the original reads fields)", async () => {
        const { client } = setup()
        await client.write(at("f"), "written", 5 as never)
        expect(fs.readFileSync(at("f"), "utf8")).toBe("written")
        const chunks = await drain(await client.createReadStream(at("f"), 5 as never))
        expect(Buffer.concat(chunks.map((c) => Buffer.from(c))).toString()).toBe("written")
        const stream = await client.createWriteStream(at("g"), true as never)
        expect(await written(stream, "streamed")).toBe(null)
        stream.end()
        expect(await closed(stream)).toBeUndefined()
        expect(fs.readFileSync(at("g"), "utf8")).toBe("streamed")
      })

      it("collect with file types: a symbolic link is a link (a walker on isDirectory() does not loop)", async () => {
        const { client } = setup()
        fs.mkdirSync(at("sub"))
        fs.writeFileSync(at("f"), "f")
        fs.symlinkSync(currentDir(), at("sub", "loop"))
        fs.symlinkSync(at("f"), at("file-link"))
        fs.symlinkSync(at("missing"), at("dangling"))
        const dirents = await client.collect(currentDir(), { withFileTypes: true, recursive: true }) as Array<fs.Dirent>
        const types = dirents.map((d) => {
          const kind = d.isSymbolicLink() ? "link" : d.isDirectory() ? "dir" : d.isFile() ? "file" : "other"
          return `${nodePath.relative(currentDir(), nodePath.join(d.parentPath, d.name))} ${kind}`
        })
        expect(types.sort()).toEqual(["dangling link", "f file", "file-link link", "sub dir", "sub/loop link"])
      })

      it("delete: a file; a directory with recursive (not without); force is quiet; missing is ENOENT", async () => {
        const { client, manager } = setup({ durable: true })
        fs.mkdirSync(at("d", "e"), { recursive: true })
        fs.writeFileSync(at("d", "e", "f"), "x")
        fs.writeFileSync(at("file"), "x")
        await client.delete(at("file"))
        expect(fs.existsSync(at("file"))).toBe(false)
        // Node's fs.rm, as the original called it.
        expect((await rejection(client.delete(at("d")))).code).toBe("ERR_FS_EISDIR")
        await client.delete(at("d"), { recursive: true, maxRetries: 1, retryDelay: 10 })
        expect(fs.existsSync(at("d"))).toBe(false)
        const missing = await rejection(client.delete(at("missing")))
        expect(missing.code).toBe("ENOENT")
        expect(missing.message).toMatch(/^ENOENT: no such file or directory/)
        await client.delete(at("missing"), { force: true })
        await expectFree(manager, currentDir())
      })

      it("rename: moves, creates missing parents; the same path is a no-op; a missing source is ENOENT", async () => {
        const { client } = setup({ durable: true })
        fs.writeFileSync(at("a"), "a")
        await client.rename(at("a"), at("new", "deep", "b"))
        expect(fs.existsSync(at("a"))).toBe(false)
        expect(fs.readFileSync(at("new", "deep", "b"), "utf8")).toBe("a")
        await client.rename(at("new", "deep", "b"), at("new", "deep", "b"))
        expect(fs.readFileSync(at("new", "deep", "b"), "utf8")).toBe("a")
        expect((await rejection(client.rename(at("nope"), at("elsewhere", "x")))).code).toBe("ENOENT")
        expect(fs.existsSync(at("elsewhere"))).toBe(false)
      })

      it("rename of a directory into itself: EINVAL from rename(2)", async () => {
        const { client } = setup()
        fs.mkdirSync(at("d"))
        const error = await rejection(client.rename(at("d"), at("d", "e")))
        expect(error.code).toBe("EINVAL")
        expect(error.message).toBe(`EINVAL: invalid argument, rename '${at("d")}' -> '${at("d", "e")}'`)
        expect(fs.existsSync(at("d"))).toBe(true)
      })
    })

    describe("README: createReadStream", () => {
      it("start and end (inclusive), encoding, highWaterMark; chunks never exceed highWaterMark", async () => {
        const { client } = setup()
        fs.writeFileSync(at("f"), "0123456789")
        const range = await drain(await client.createReadStream(at("f"), { start: 2, end: 5, encoding: "utf8" }))
        expect(range.join("")).toBe("2345")
        const hex = await drain(await client.createReadStream(at("f"), "hex"))
        expect(hex.join("")).toBe(Buffer.from("0123456789").toString("hex"))
        const small = await drain(await client.createReadStream(at("f"), { highWaterMark: 3 }))
        expect(Buffer.concat(small as Array<Buffer>).toString()).toBe("0123456789")
        expect(small.every((chunk) => chunk.length <= 3)).toBe(true)
        expect((await drain(await client.createReadStream(at("f"), { start: 8, end: Infinity }))).join("")).toBe("89")
      })

      it("holds a read lock for the stream's lifetime: a write waits until it closes, reads do not", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "x".repeat(100_000))
        const rs = await client.createReadStream(at("f"), { highWaterMark: 1000 })
        // Whatever the implementation, the lock outlives the reading: the write comes after the end.
        let ended = false
        rs.once("end", () => ended = true)
        // A read on the same path overlaps with the stream.
        const reader = await within(manager.acquire(at("f"), "read"), "read lock beside a read stream")
        manager.release(reader)
        const writer = within(manager.acquire(at("f"), "write"), "write lock after the stream").then((id) => {
          const endedFirst = ended
          manager.release(id)
          return endedFirst
        })
        expect((await drain(rs)).join("").length).toBe(100_000)
        expect(await writer).toBe(true)
      })

      it("destroy() releases the lock", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "x".repeat(10_000))
        const rs = await client.createReadStream(at("f"), { highWaterMark: 100 })
        rs.destroy()
        await closed(rs)
        await expectFree(manager, at("f"))
      })
    })

    describe("README: createWriteStream", () => {
      it("atomic: the old content until the end, then the new one whole; the write lock is held meanwhile", async () => {
        for (const durable of [false, true]) {
          const { client, manager } = setup({ durable })
          fs.writeFileSync(at("f"), "old")
          const ws = await client.createWriteStream(at("f"), { encoding: "utf8", mode: 0o600 })
          const reader = within(manager.acquire(at("f"), "read"), "read after the write stream").then((id) => {
            const content = fs.readFileSync(at("f"), "utf8")
            manager.release(id)
            return content
          })
          expect(await written(ws, "new ")).toBeNull()
          expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
          ws.end("content")
          expect(await closed(ws)).toBeUndefined()
          expect(await reader).toBe("new content")
          expect(fs.statSync(at("f")).mode & 0o777).toBe(0o600)
          expect(entries()).toEqual(["f"])
        }
      })

      it("creates missing parents", async () => {
        const { client } = setup()
        const ws = await client.createWriteStream(at("p", "q", "f"))
        ws.end("x")
        await closed(ws)
        expect(fs.readFileSync(at("p", "q", "f"), "utf8")).toBe("x")
      })
    })

    describe("README: the LockManager class", () => {
      it("acquire resolves with a number; reads overlap; a write excludes the path, ancestors, descendants", async () => {
        const manager = impl!.manager()
        const t = tracker(manager)
        await t.acquire("read /t/a", "/t/a", "read")
        await t.acquire("read /t/a again", "/t/a", "read")
        const waiting = [
          t.acquire("write /t/a", "/t/a", "write"),
          // An ancestor's read waits for the write queued below it; a descendant's write for both.
          t.acquire("read /t", "/t", "read"),
          t.acquire("write /t/a/b", "/t/a/b", "write")
        ]
        await t.acquire("write /u (unrelated)", "/u", "write")
        t.release("read /t/a")
        t.release("read /t/a again")
        await waiting[0]
        t.release("write /t/a")
        await waiting[1]
        t.release("read /t")
        await waiting[2]
        t.release("write /t/a/b")
        t.release("write /u (unrelated)")
        expect(t.violations).toEqual([])
        expect(t.order).toEqual([
          "read /t/a",
          "read /t/a again",
          "write /u (unrelated)",
          "write /t/a",
          "read /t",
          "write /t/a/b"
        ])
        expect(typeof (await within(manager.acquire("/n", "read"), "id"))).toBe("number")
      })

      it("FIFO: a read that arrives after a queued write waits behind it (reads are partitioned by writes)", async () => {
        const manager = impl!.manager()
        const t = tracker(manager)
        await t.acquire("read 1", "/data/f", "read")
        const write = t.acquire("write", "/data/f", "write")
        const read2 = t.acquire("read 2", "/data/f", "read")
        const ancestorRead = t.acquire("read /data", "/data", "read")
        t.release("read 1")
        await write
        t.release("write")
        await Promise.all([read2, ancestorRead])
        expect(t.violations).toEqual([])
        expect(t.order.slice(0, 2)).toEqual(["read 1", "write"])
      })

      it("release(id) of an unknown or released id is a no-op; acquireAll over nested paths does not deadlock", async () => {
        const manager = impl!.manager()
        const id = await within(manager.acquireAll(["/a/b", "/a", "/a"]), "acquireAll over nested paths")
        manager.release(id)
        manager.release(id)
        manager.release(123_456)
        await expectFree(manager, "/a/b")
      })
    })

    describe("issue 19.1: every pending write callback is called after destroy() or an abort", () => {
      const scenarios: Array<
        [string, (ws: Writable, abort: () => void) => void, (error: NodeError | null) => void, string | undefined]
      > = [
        ["destroy()", (ws) => ws.destroy(), (e) => expect(e?.code).toBe("ERR_STREAM_DESTROYED"), undefined],
        ["destroy(error)", (ws) => ws.destroy(new Error("boom")), (e) => expect(e?.message).toBe("boom"), "boom"],
        ["an abort", (_, abort) => abort(), (e) => {
          expect(e?.name).toBe("AbortError")
          expect(e?.code).toBe("ABORT_ERR")
        }, "The operation was aborted"]
      ]
      for (const [how, end, check, emitted] of scenarios) {
        for (const corked of [false, true]) {
          it(`${corked ? "corked" : "in flight and queued"} writes, then ${how}`, async () => {
            const { client, manager } = setup()
            fs.writeFileSync(at("f"), "old")
            const controller = new AbortController()
            const ws = await client.createWriteStream(at("f"), { highWaterMark: 16, signal: controller.signal })
            const done = closed(ws)
            if (corked) ws.cork()
            const callbacks = [0, 1, 2].map(() => written(ws, "x".repeat(64)))
            end(ws, () => controller.abort())
            const errors = await within(Promise.all(callbacks), "write callbacks")
            for (const error of errors) check(error)
            expect((await done)?.message).toBe(emitted)
            expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
            expect(entries()).toEqual(["f"])
            await expectFree(manager, at("f"))
          })
        }
      }

      it("under back-pressure (write until it says wait), then destroy(): every callback, and end(callback)", async () => {
        const { client, manager } = setup()
        const ws = await client.createWriteStream(at("f"), { highWaterMark: 64 })
        const callbacks: Array<Promise<NodeError | null>> = []
        do {
          callbacks.push(written(ws, "y".repeat(32)))
        } while (ws.writableLength < ws.writableHighWaterMark)
        expect(ws.writableNeedDrain).toBe(true)
        const ended = new Promise<NodeError | null | undefined>((resolve) => ws.end((e?: Error | null) => resolve(e)))
        ws.destroy()
        const errors = await within(Promise.all(callbacks), "write callbacks under back-pressure")
        // A write already handed on may have succeeded; every later one has the error, the last (queued) surely.
        const outcomes = errors.map((e) => e === null ? "written" : e.code).join(" ")
        expect(outcomes).toMatch(/^(written )*ERR_STREAM_DESTROYED( ERR_STREAM_DESTROYED)*$/)
        expect((await within(ended, "end callback"))?.code).toBe("ERR_STREAM_DESTROYED")
        await closed(ws)
        expect(fs.existsSync(at("f"))).toBe(false)
        expect(entries()).toEqual([])
        await expectFree(manager, at("f"))
      })
    })

    describe("issue 19.2: options the original accepts and ignores (fd, autoClose: false, fs)", () => {
      const ignored = { fd: 987_654, autoClose: false, fs: {} }
      for (const durable of [false, true]) {
        it(`createReadStream and createWriteStream${durable ? ", durable" : ""}: accepted, path used`, async () => {
          const { client, manager } = setup({ durable })
          fs.writeFileSync(at("f"), "content")
          const rs = await client.createReadStream(at("f"), { ...ignored, encoding: "utf8" })
          expect((await drain(rs)).join("")).toBe("content")
          await closed(rs)
          await expectFree(manager, at("f"))
          const ws = await client.createWriteStream(at("g"), ignored)
          ws.end("written")
          expect(await closed(ws)).toBeUndefined()
          expect(fs.readFileSync(at("g"), "utf8")).toBe("written")
          await expectFree(manager, at("g"))
        })
      }
    })

    describe("issue 19.3: a missing file resolves createReadStream; the stream emits the error", () => {
      it("ENOENT (syscall open, the path), then close, and the lock is free", async () => {
        const { client, manager } = setup()
        const rs = await client.createReadStream(at("missing"))
        const error = await closed(rs)
        expect(error?.code).toBe("ENOENT")
        expect(error?.syscall).toBe("open")
        expect(error?.path).toBe(at("missing"))
        expect(error?.message).toBe(`ENOENT: no such file or directory, open '${at("missing")}'`)
        await expectFree(manager, at("missing"))
      })

      it("a directory: EISDIR as the stream's error", async () => {
        const { client, manager } = setup()
        const rs = await client.createReadStream(currentDir())
        rs.resume()
        expect((await closed(rs))?.code).toBe("EISDIR")
        await expectFree(manager, currentDir())
      })

      it("an already aborted signal: the stream emits an AbortError", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "x")
        const rs = await client.createReadStream(at("f"), { signal: AbortSignal.abort() })
        const error = await closed(rs)
        expect(error?.name).toBe("AbortError")
        expect(error?.code).toBe("ABORT_ERR")
        await expectFree(manager, at("f"))
      })
    })

    describe("issue 19.4: the original's errors, Node's where it passed Node's on", () => {
      it("LockManager: a write on the root, an empty set, an unknown type, a non-string path", async () => {
        const manager = impl!.manager()
        expectOriginalError(await rejection(manager.acquire("/", "write")), "Operation is not supported.")
        expectOriginalError(await rejection(manager.acquireAll(["/a", "/"])), "Operation is not supported.")
        expectOriginalError(await rejection(manager.acquireAll([])), "Paths must not be empty.")
        expectOriginalError(
          await rejection(manager.acquire("/a", "exclusive" as "read")),
          "Unexpected lock type: exclusive"
        )
        const notAString = await rejection(manager.acquire(42 as unknown as string, "read"))
        expect(notAString).toBeInstanceOf(TypeError)
        expect(notAString.code).toBe("ERR_INVALID_ARG_TYPE")
        expect(notAString.message).toBe(
          "The \"paths[0]\" argument must be of type string. Received type number (42)"
        )
        // A read lock on the root is allowed.
        manager.release(await within(manager.acquire("/", "read"), "read lock on the root"))
        await expectFree(manager, "/a")
      })

      it("Client: the root refused by every operation on an entry; collect may list it", async () => {
        const { client } = setup()
        const root = "Operations on root are not supported."
        expectOriginalError(await rejection(client.read("/")), root)
        expectOriginalError(await rejection(client.write("/", "x")), root)
        expectOriginalError(await rejection(client.delete("/")), root)
        expectOriginalError(await rejection(client.rename("/", at("x"))), root)
        expectOriginalError(await rejection(client.rename(at("x"), "/..")), root)
        expectOriginalError(await rejection(client.createReadStream("//")), root)
        expectOriginalError(await rejection(client.createWriteStream("/")), root)
      })

      it("Client: a relative or empty path is refused (\"Path must be absolute.\", rename names its argument)", async () => {
        const { client } = setup()
        for (const path of ["relative/f", "", "./f"]) {
          expectOriginalError(await rejection(client.read(path)), "Path must be absolute.")
          expectOriginalError(await rejection(client.write(path, "x")), "Path must be absolute.")
          expectOriginalError(await rejection(client.collect(path)), "Path must be absolute.")
          expectOriginalError(await rejection(client.delete(path)), "Path must be absolute.")
          expectOriginalError(await rejection(client.createReadStream(path)), "Path must be absolute.")
          expectOriginalError(await rejection(client.createWriteStream(path)), "Path must be absolute.")
        }
        expectOriginalError(await rejection(client.rename("a", at("b"))), "oldPath must be absolute.")
        expectOriginalError(await rejection(client.rename(at("a"), "b")), "newPath must be absolute.")
        // Absolute before root: the original checked both paths first.
        expectOriginalError(await rejection(client.rename("/", "b")), "newPath must be absolute.")
        expect(fs.existsSync(at("b"))).toBe(false)
      })

      it("Client: a non-string path is Node's ERR_INVALID_ARG_TYPE; a NUL byte Node's ERR_INVALID_ARG_VALUE", async () => {
        const { client } = setup()
        const notAString = await rejection(client.read(42 as unknown as string))
        expect(notAString).toBeInstanceOf(TypeError)
        expect(notAString.code).toBe("ERR_INVALID_ARG_TYPE")
        expect(notAString.message).toBe("The \"path\" argument must be of type string. Received type number (42)")
        for (const call of [() => client.read(at("a\0b")), () => client.delete(at("a\0b"))]) {
          const nul = await rejection(call())
          expect(nul).toBeInstanceOf(TypeError)
          expect(nul.code).toBe("ERR_INVALID_ARG_VALUE")
          expect(nul.message).toMatch(/must be a string, Uint8Array, or URL without null bytes/)
        }
        expect(entries()).toEqual([])
      })

      it("I/O errors: Node's code, errno, syscall, path and message (ENOENT, EISDIR)", async () => {
        const { client } = setup()
        const missing = await rejection(client.read(at("missing")))
        expect(missing).toMatchObject({ code: "ENOENT", errno: -2, syscall: "open", path: at("missing") })
        expect(missing.message).toBe(`ENOENT: no such file or directory, open '${at("missing")}'`)
        const collected = await rejection(client.collect(at("missing")))
        expect(collected).toMatchObject({ code: "ENOENT", syscall: "scandir", path: at("missing") })
        expect(collected.message).toBe(`ENOENT: no such file or directory, scandir '${at("missing")}'`)
        const directory = await rejection(client.read(currentDir()))
        expect(directory.code).toBe("EISDIR")
        expect(directory.message).toBe("EISDIR: illegal operation on a directory, read")
      })

      it("Node's errors for bad options: encoding, start > end, highWaterMark, data", async () => {
        const { client } = setup()
        fs.writeFileSync(at("f"), "0123")
        const encoding = await rejection(client.createReadStream(at("f"), { encoding: "klingon" }))
        expect(encoding).toBeInstanceOf(TypeError)
        expect(encoding.code).toBe("ERR_INVALID_ARG_VALUE")
        expect(encoding.message).toBe("The argument 'encoding' is invalid encoding. Received 'klingon'")
        const range = await rejection(client.createReadStream(at("f"), { start: 3, end: 1 }))
        expect(range).toBeInstanceOf(RangeError)
        expect(range.code).toBe("ERR_OUT_OF_RANGE")
        expect(range.message).toBe(
          "The value of \"start\" is out of range. It must be <= \"end\" (here: 1). Received 3"
        )
        const hwm = await rejection(client.createReadStream(at("f"), { highWaterMark: -1 }))
        expect(hwm).toBeInstanceOf(TypeError)
        expect(hwm.code).toBe("ERR_INVALID_ARG_VALUE")
        expect(hwm.message).toBe("The property 'options.highWaterMark' is invalid. Received -1")
        const data = await rejection(client.write(at("g"), 42))
        expect(data).toBeInstanceOf(TypeError)
        expect(data.code).toBe("ERR_INVALID_ARG_TYPE")
        expect(data.message).toBe(
          "The \"data\" argument must be of type string or an instance of Buffer, TypedArray, or DataView." +
            " Received type number (42)"
        )
        const signal = await rejection(client.read(at("f"), { signal: null }))
        expect(signal.code).toBe("ERR_INVALID_ARG_TYPE")
        expect(signal.message).toBe("The \"options.signal\" property must be an instance of AbortSignal. Received null")
        expect(entries()).toEqual(["f"])
      })

      it("delete options that are no object (null, text, a number) are refused and nothing is removed", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "keep")
        for (const options of [null, "x", 5, true, []]) {
          const error = await rejection(client.delete(at("f"), options as unknown as undefined))
          expect(error).toBeInstanceOf(TypeError)
          expect(error.code).toBe("ERR_INVALID_ARG_TYPE")
          expect(error.message).toMatch(/^The "options" argument must be of type object\. Received /)
        }
        expect(fs.readFileSync(at("f"), "utf8")).toBe("keep")
        await expectFree(manager, at("f"))
      })

      it("encoding \"buffer\": no encoding of text (ERR_UNKNOWN_ENCODING), bytes are written as they are", async () => {
        const { client, manager } = setup()
        fs.writeFileSync(at("f"), "old")
        const calls: ReadonlyArray<() => Promise<unknown>> = [
          () => client.read(at("f"), "buffer" as BufferEncoding),
          () => client.read(at("f"), { encoding: "buffer" as BufferEncoding }),
          () => client.write(at("f"), "new", "buffer" as BufferEncoding),
          () => client.createReadStream(at("f"), "buffer" as BufferEncoding),
          () => client.createWriteStream(at("f"), "buffer" as BufferEncoding)
        ]
        for (const call of calls) {
          const error = await rejection(call())
          expect(error).toBeInstanceOf(TypeError)
          expect(error.code).toBe("ERR_UNKNOWN_ENCODING")
          expect(error.message).toBe("Unknown encoding: buffer")
        }
        expect(fs.readFileSync(at("f"), "utf8")).toBe("old")
        await client.write(at("f"), Buffer.from("bytes"), { encoding: "buffer" as BufferEncoding })
        expect(fs.readFileSync(at("f"), "utf8")).toBe("bytes")
        // A listing takes it: names as Buffers.
        expect(await client.collect(currentDir(), { encoding: "buffer" })).toEqual([Buffer.from("f")])
        await expectFree(manager, at("f"))
      })

      it("mode as Node's writeFile checks it: the range and integer errors, an octal string, file type bits dropped", async () => {
        const { client } = setup()
        const refused: ReadonlyArray<readonly [unknown, string, string]> = [
          [
            -1,
            "ERR_OUT_OF_RANGE",
            "The value of \"mode\" is out of range. It must be >= 0 && <= 4294967295. Received -1"
          ],
          [1.5, "ERR_OUT_OF_RANGE", "The value of \"mode\" is out of range. It must be an integer. Received 1.5"],
          [
            2 ** 32,
            "ERR_OUT_OF_RANGE",
            "The value of \"mode\" is out of range. It must be >= 0 && <= 4294967295. Received 4294967296"
          ],
          [
            "abc",
            "ERR_INVALID_ARG_VALUE",
            "The argument 'mode' must be a 32-bit unsigned integer or an octal string. Received 'abc'"
          ],
          [true, "ERR_INVALID_ARG_TYPE", "The \"mode\" argument must be of type number. Received type boolean (true)"]
        ]
        for (const [mode, code, message] of refused) {
          const error = await rejection(client.write(at("m"), "x", { mode } as { mode: number }))
          expect(error.code, String(mode)).toBe(code)
          expect(error.message).toBe(message)
          expect(error).toBeInstanceOf(code === "ERR_OUT_OF_RANGE" ? RangeError : TypeError)
        }
        expect(entries()).toEqual([])
        await client.write(at("m"), "x", { mode: 0o100600 })
        expect(fs.statSync(at("m")).mode & 0o7777).toBe(0o600)
        await client.write(at("n"), "x", { mode: "640" as unknown as number })
        expect(fs.statSync(at("n")).mode & 0o7777).toBe(0o640)
      })

      it("collect reads recursive and withFileTypes as readdir does, by truthiness; write ignores a flush that is not true", async () => {
        const { client } = setup()
        fs.mkdirSync(at("d/e"), { recursive: true })
        fs.writeFileSync(at("d/e/h"), "h")
        type Flags = { recursive?: boolean; withFileTypes?: false }
        expect((await client.collect(at("d"), { recursive: 1 } as unknown as Flags)).sort()).toEqual(["e", "e/h"])
        expect(await client.collect(at("d"), { recursive: 0 } as unknown as Flags)).toEqual(["e"])
        const dirents = await client.collect(at("d"), { withFileTypes: "yes" } as unknown as { withFileTypes: true })
        expect((dirents as Array<fs.Dirent>).map((d) => [d.name, d.isDirectory()])).toEqual([["e", true]])
        await client.write(at("f"), "x", { flush: "yes" } as unknown as { flush: boolean })
        expect(fs.readFileSync(at("f"), "utf8")).toBe("x")
      })

      it("rename of a missing path onto itself: ENOENT, as rename(2); of a file onto itself, nothing changes", async () => {
        const { client, manager } = setup()
        const error = await rejection(client.rename(at("missing"), at("missing")))
        expect(error.code).toBe("ENOENT")
        expect(error.message).toMatch(/^ENOENT: no such file or directory, \w+ '/)
        fs.writeFileSync(at("f"), "f")
        await client.rename(at("f"), at("f"))
        expect(fs.readFileSync(at("f"), "utf8")).toBe("f")
        expect(entries()).toEqual(["f"])
        await expectFree(manager, at("f"))
      })

      it("createWriteStream with an already aborted signal rejects with the signal's reason", async () => {
        const { client, manager } = setup()
        const reason = new Error("not now")
        expect(await rejection(client.createWriteStream(at("f"), { signal: AbortSignal.abort(reason) }))).toBe(reason)
        // ...after the path check.
        expectOriginalError(
          await rejection(client.createWriteStream("f", { signal: AbortSignal.abort(reason) })),
          "Path must be absolute."
        )
        expect(entries()).toEqual([])
        await expectFree(manager, at("f"))
      })
    })

    describe("issue 19.5: the LockManager resolves a relative path against the working directory", () => {
      it("\"rel/f\" and path.resolve(\"rel/f\") are one lock; \"\" is the working directory", async () => {
        const manager = impl!.manager()
        const t = tracker(manager)
        await t.acquire("relative", "conformance-rel/f", "write")
        const absolute = t.acquire("absolute", nodePath.resolve("conformance-rel/f"), "write")
        const all = t.acquireAll("all, relative", ["conformance-rel"])
        const cwd = t.acquire("the working directory", "", "read")
        t.release("relative")
        await absolute
        t.release("absolute")
        await all
        t.release("all, relative")
        await cwd
        t.release("the working directory")
        expect(t.violations).toEqual([])
        expect(t.order).toEqual(["relative", "absolute", "all, relative", "the working directory"])
      })
    })
  })

conformance("facade (effect-persistence/promise)", facade)
conformance(
  original === undefined ?
    `original: skipped, ${ORIGINAL_DIST} is absent (only beside the repository, not in a clone)` :
    "original (@far-analytics/persistence 1.22.4, run for reference)",
  original === undefined ? undefined : originalImplementation(original)
)

// ---------------------------------------------------------------------------
// Where the facade differs on purpose: both behaviours, each checked
// ---------------------------------------------------------------------------

describe("where the facade differs on purpose (README: Promise API)", () => {
  const setup = () => {
    const manager = new Facade.LockManager()
    return { manager, client: new Facade.Client({ manager }) }
  }
  const originalSetup = () => {
    const manager = new original!.LockManager()
    return { manager, client: new original!.Client({ manager }) }
  }
  const withOriginal = it.skipIf(original === undefined)

  it("public members: the original's package exports only Client and LockManager; the facade offers the same two", () => {
    expect(typeof Facade.Client).toBe("function")
    expect(typeof Facade.LockManager).toBe("function")
    // GraphNode, makeDurablePath/makePathDurable and manager.root are internals
    // of the original's promise-chain implementation: not offered (stats() tells what the table holds).
    expect("root" in new Facade.LockManager()).toBe(false)
    expect("GraphNode" in Facade).toBe(false)
  })

  withOriginal("(original) exports exactly Client and LockManager; root is a run-time field of its manager", () => {
    expect(Object.keys(original!).sort()).toEqual(["Client", "LockManager"])
    expect(typeof (new original!.LockManager() as unknown as { root: object }).root).toBe("object")
  })

  it("highWaterMark beyond the largest Buffer: ERR_OUT_OF_RANGE at the call", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "hello")
    const error = await rejection(client.createReadStream(at("f"), { highWaterMark: 2 ** 40 }))
    expect(error).toBeInstanceOf(RangeError)
    expect(error.code).toBe("ERR_OUT_OF_RANGE")
    expect(error.message).toBe(
      "The value of \"options.highWaterMark\" is out of range. It must be >= 1 && <= 4294967296." +
        " Received 1_099_511_627_776"
    )
    await expectFree(manager, at("f"))
  })

  withOriginal(
    "(original) highWaterMark beyond the largest Buffer: ERR_OUT_OF_RANGE as the stream's error",
    async () => {
      const { client } = originalSetup()
      fs.writeFileSync(at("f"), "hello")
      const rs = await client.createReadStream(at("f"), { highWaterMark: 2 ** 40 })
      rs.resume()
      const error = await closed(rs)
      expect(error).toBeInstanceOf(RangeError)
      expect(error?.code).toBe("ERR_OUT_OF_RANGE")
    }
  )

  it("highWaterMark 0 on a read stream: ERR_OUT_OF_RANGE (Node's fs stream would read nothing)", async () => {
    const { client } = setup()
    fs.writeFileSync(at("f"), "hello")
    expect((await rejection(client.createReadStream(at("f"), { highWaterMark: 0 }))).code).toBe("ERR_OUT_OF_RANGE")
  })

  withOriginal("(original) highWaterMark 0 on a read stream: an empty stream", async () => {
    const { client } = originalSetup()
    fs.writeFileSync(at("f"), "hello")
    const rs = await client.createReadStream(at("f"), { highWaterMark: 0 })
    let text = ""
    rs.on("data", (chunk) => text += chunk)
    await within(new Promise((resolve) => rs.once("end", resolve)), "end")
    expect(text).toBe("")
  })

  it("a read stream's errors are Node's: one nobody listens to is thrown (the facade adds no listener)", async () => {
    const { client } = setup()
    const rs = await client.createReadStream(at("missing"))
    expect(rs.listenerCount("error")).toBe(0)
    expect((await closed(rs))?.code).toBe("ENOENT")
  })

  withOriginal("(original) its read stream has its own error listener: an unhandled error is dropped", async () => {
    const { client } = originalSetup()
    const rs = await client.createReadStream(at("missing"))
    expect(rs.listenerCount("error")).toBe(1)
    expect((await closed(rs))?.code).toBe("ENOENT")
  })

  it("flags that would change the meaning (append, exclusive, a read that writes), and start on a write stream: refused", async () => {
    const { client } = setup()
    fs.writeFileSync(at("f"), "hello")
    for (
      const call of [
        () => client.createWriteStream(at("f"), { flags: "a" as "w" }),
        () => client.createWriteStream(at("f"), { start: 2 as 0 }),
        () => client.createReadStream(at("f"), { flags: "r+" as "r" }),
        () => client.write(at("f"), "x", { flag: "a" as "w" }),
        () => client.read(at("f"), { flag: "w+" as "r" })
      ]
    ) {
      const error = await rejection(call())
      expect(error).toBeInstanceOf(TypeError)
      expect(error.code).toBe("ERR_INVALID_ARG_VALUE")
    }
    expect(fs.readFileSync(at("f"), "utf8")).toBe("hello")
  })

  withOriginal(
    "(original) those flags are ignored: an append or an offset replaces the file; read with w+ empties it",
    async () => {
      const { client } = originalSetup()
      fs.writeFileSync(at("f"), "hello")
      const ws = await client.createWriteStream(at("f"), { flags: "a" })
      ws.end("x")
      await closed(ws)
      expect(fs.readFileSync(at("f"), "utf8")).toBe("x")
      await client.write(at("f"), "y", { flag: "a" })
      expect(fs.readFileSync(at("f"), "utf8")).toBe("y")
      expect(await client.read(at("f"), { flag: "w+", encoding: "utf8" })).toBe("")
      expect(fs.readFileSync(at("f"), "utf8")).toBe("")
    }
  )

  it("acquire with the documented types \"collect\" and \"delete\": a read and a write", async () => {
    const { manager } = setup()
    const collect = await manager.acquire("/a", "collect")
    const read = await within(manager.acquire("/a", "read"), "a read beside collect")
    manager.release(collect)
    manager.release(read)
    manager.release(await manager.acquire("/a", "delete"))
    await expectFree(manager, "/a")
  })

  withOriginal("(original) its code refuses the types its README documents", async () => {
    const manager = new original!.LockManager()
    expectOriginalError(
      await rejection(manager.acquire("/a", "collect" as "read")),
      "Unexpected lock type: collect"
    )
  })

  it("abort signals are honoured where the README documents them: delete does not happen, a wait for a lock ends", async () => {
    const { client, manager } = setup()
    fs.writeFileSync(at("f"), "x")
    expect((await rejection(client.delete(at("f"), { signal: AbortSignal.abort() }))).code).toBe("ABORT_ERR")
    expect(fs.existsSync(at("f"))).toBe(true)
    const writer = await manager.acquire(at("f"), "write")
    const controller = new AbortController()
    const reading = client.read(at("f"), { signal: controller.signal })
    controller.abort()
    expect((await within(rejection(reading), "read aborted while waiting")).code).toBe("ABORT_ERR")
    manager.release(writer)
  })

  withOriginal("(original) delete ignores its signal", async () => {
    const { client } = originalSetup()
    fs.writeFileSync(at("f"), "x")
    await client.delete(at("f"), { signal: AbortSignal.abort() })
    expect(fs.existsSync(at("f"))).toBe(false)
  })

  it("a write below a regular file: ENOTDIR, in both modes", async () => {
    for (const durable of [false, true]) {
      const manager = new Facade.LockManager()
      const client = new Facade.Client({ manager, durable })
      fs.writeFileSync(at("file"), "x")
      expect((await rejection(client.write(at("file", "below"), "y"))).code).toBe("ENOTDIR")
    }
  })

  withOriginal(
    "(original) a write below a regular file: EEXIST (its mkdir) when not durable, ENOTDIR when durable",
    async () => {
      for (const [durable, code] of [[false, "EEXIST"], [true, "ENOTDIR"]] as const) {
        const manager = new original!.LockManager()
        const client = new original!.Client({ manager, durable })
        fs.writeFileSync(at("file"), "x")
        expect((await rejection(client.write(at("file", "below"), "y"))).code).toBe(code)
      }
    }
  )

  it("a NUL byte in a lock path: refused (no file can have that name)", async () => {
    const { manager } = setup()
    const error = await rejection(manager.acquire("/a\0b", "write"))
    expect(error).toBeInstanceOf(TypeError)
    expect(error.code).toBe("ERR_INVALID_ARG_VALUE")
  })

  withOriginal("(original) a NUL byte in a lock path: locked as a string", async () => {
    const manager = new original!.LockManager()
    manager.release(await within(manager.acquire("/a\0b", "write"), "lock with a NUL byte"))
  })

  it("createReadStream gives a stream shaped like fs.ReadStream (path, bytesRead, pending, close), not an instance", async () => {
    const { client } = setup()
    fs.writeFileSync(at("f"), "hello")
    const rs = await client.createReadStream(at("f"))
    expect(rs).toBeInstanceOf(Readable)
    expect(rs).not.toBeInstanceOf(fs.ReadStream)
    expect(rs.path).toBe(at("f"))
    expect(rs.pending).toBe(false)
    expect((await drain(rs)).join("")).toBe("hello")
    expect(rs.bytesRead).toBe(5)
    const other = await client.createReadStream(at("f"))
    await within(new Promise<void>((resolve) => other.close(() => resolve())), "close(callback)")
    expect(other.destroyed).toBe(true)
  })
})
