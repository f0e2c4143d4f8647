/**
 * The HTTP document store and the streaming copy examples, run as child processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const run = promisify(execFile)
const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

interface Server {
  readonly port: number
  readonly dataDir: string
  readonly stop: () => Promise<void>
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })

/**
 * Starts the store with `node --import tsx` (one process: a signal reaches the server itself, where the
 * `tsx` launcher would have to relay it) and waits for its `listening on` line.
 */
const startStore = (dataDir: string): Promise<Server> => {
  const child = spawn(process.execPath, ["--import", "tsx", "examples/http-store.ts"], {
    cwd: root,
    env: { ...process.env, PORT: "0", DATA_DIR: dataDir },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
    await exited(child)
    clearTimeout(timer)
  }
  let stdout = ""
  let stderr = ""
  child.stderr.on("data", (data) => stderr += String(data))
  return new Promise<Server>((resolve, reject) => {
    const fail = (reason: string) => {
      clearTimeout(timer)
      void stop().then(() => reject(new Error(`${reason}\nstdout: ${stdout}\nstderr: ${stderr}`)))
    }
    const timer = setTimeout(() => fail("the store did not start within 20 s"), 20_000)
    child.once("exit", (code) => fail(`the store exited with ${code}`))
    child.stdout.on("data", (data) => {
      stdout += String(data)
      const match = /^listening on http:\/\/127\.0\.0\.1:(\d+) \(data: (.+)\)$/m.exec(stdout)
      if (match === null) return
      clearTimeout(timer)
      child.removeAllListeners("exit")
      resolve({ port: Number(match[1]), dataDir: match[2], stop })
    })
  })
}

/** A request with the path sent byte for byte: `fetch` would resolve `..` and `%2E%2E` segments first. */
const raw = (port: number, method: string, rawPath: string, body?: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = http.request(
      { host: "127.0.0.1", port, method, path: rawPath, agent: false, headers: { "content-type": "application/json" } },
      (response) => {
        let text = ""
        response.on("data", (data) => text += String(data))
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }))
      }
    )
    request.on("error", reject)
    request.end(body)
  })

/** Runs `tasks` with at most `limit` in flight. */
const pool = async (limit: number, tasks: ReadonlyArray<() => Promise<void>>) => {
  let next = 0
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]()
  }
  await Promise.all(Array.from({ length: limit }, worker))
}

describe("http-store.ts", () => {
  let base: string
  let server: Server | undefined
  const secret = JSON.stringify({ secret: "outside the data directory" })

  beforeAll(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), "http-store-test-"))
    await fs.mkdir(path.join(base, "data"))
    // A file next to the data directory, and a symbolic link from inside the data directory to it.
    await fs.writeFile(path.join(base, "secret.json"), secret)
    await fs.symlink(base, path.join(base, "data", "link"))
    server = await startStore(path.join(base, "data"))
  })

  afterAll(async () => {
    await server?.stop()
    if (base !== undefined) await fs.rm(base, { recursive: true, force: true })
  })

  const url = (name: string) => `http://127.0.0.1:${server!.port}/docs/${name}`

  it("prints its address and data directory", () => {
    expect(server!.dataDir).toBe(path.join(base, "data"))
  })

  it("concurrent PUTs and GETs: every GET returns a whole version that was PUT, or 404 before any PUT", async () => {
    const names = Array.from({ length: 20 }, (_, i) => i % 2 === 0 ? `doc-${i}` : `group-${i % 4}/doc-${i}`)
    const sent = new Map<string, Map<number, unknown>>(names.map((name) => [name, new Map()]))
    const putDone = new Set<string>()
    const statuses = { put: 0, get: 0, notFound: 0 }
    let version = 0

    const tasks = Array.from({ length: 200 }, (_, i) => async () => {
      // Round r = i / 20 visits every name; a name alternates between PUT and GET from round to round,
      // and half the names start with a GET (before any PUT of theirs).
      const name = names[i % names.length]
      if ((Math.floor(i / names.length) + i) % 2 === 0) {
        // Large enough that a torn read would show; recorded before it is sent.
        const document = { name, version: ++version, payload: `v${version};`.repeat(4_000) }
        sent.get(name)!.set(document.version, document)
        const response = await fetch(url(name), { method: "PUT", body: JSON.stringify(document) })
        expect(response.status).toBe(204)
        putDone.add(name)
        statuses.put++
      } else {
        const anyPutSent = sent.get(name)!.size > 0
        const anyPutDone = putDone.has(name)
        const response = await fetch(url(name))
        const text = await response.text()
        if (!anyPutSent) expect(response.status, `${name} before its first PUT`).toBe(404)
        if (response.status === 404) {
          expect(anyPutDone, `404 for ${name} after a PUT completed`).toBe(false)
          statuses.notFound++
          return
        }
        expect(response.status, text).toBe(200)
        const document = JSON.parse(text) as { readonly name: string; readonly version: number }
        expect(document.name).toBe(name)
        expect(document).toEqual(sent.get(name)!.get(document.version))
        statuses.get++
      }
    })
    await pool(25, tasks)

    expect(statuses.put).toBe(100)
    expect(statuses.get + statuses.notFound).toBe(100)
    expect(statuses.get).toBeGreaterThan(0)
    expect(statuses.notFound).toBeGreaterThan(0)
    // Whatever the interleaving, each document ends as one of its versions.
    for (const name of names) {
      const document = await (await fetch(url(name))).json() as { readonly version: number }
      expect(document).toEqual(sent.get(name)!.get(document.version))
    }
  })

  it("PUT validates the body; DELETE removes a document, then 404", async () => {
    for (const body of ["[1, 2]", "42", "\"text\"", "not json"]) {
      const response = await fetch(url("invalid"), { method: "PUT", body })
      expect(response.status, body).toBe(400)
    }
    expect((await fetch(url("invalid"))).status).toBe(404)

    expect((await fetch(url("gone"), { method: "PUT", body: "{\"a\":1}" })).status).toBe(204)
    expect(await (await fetch(url("gone"))).json()).toEqual({ a: 1 })
    expect((await fetch(url("gone"), { method: "DELETE" })).status).toBe(204)
    expect((await fetch(url("gone"))).status).toBe(404)
    expect((await fetch(url("gone"), { method: "DELETE" })).status).toBe(404)
  })

  it("names that lead outside the data directory are refused with 400 and touch nothing outside it", async () => {
    const port = server!.port
    const escapes = [
      "/docs/..%2Fsecret.json",
      "/docs/%2E%2E/secret.json",
      "/docs/%2e%2e%2fsecret.json",
      "/docs/../secret.json",
      "/docs/a/../../secret.json",
      "/docs/link/secret.json",
      "/docs/.."
    ]
    for (const target of escapes) {
      for (const method of ["GET", "PUT", "DELETE"]) {
        const response = await raw(port, method, target, method === "PUT" ? "{\"overwritten\":true}" : undefined)
        expect(response.status, `${method} ${target}: ${response.body}`).toBe(400)
        expect(response.body).not.toContain("outside the data directory")
      }
    }
    // Read-only probes at the system's files: a PUT there would do real damage if confinement failed.
    for (const target of ["/docs/..%2F..%2Fetc%2Fpasswd", "/docs/%2E%2E/%2E%2E/etc/passwd", "/docs/../../etc/passwd"]) {
      const response = await raw(port, "GET", target)
      expect(response.status, `GET ${target}: ${response.body}`).toBe(400)
      expect(response.body).not.toContain("root:")
    }
    // Encoded twice: one decoding leaves a literal name inside the data directory, which does not exist.
    const double = await raw(port, "GET", "/docs/%252E%252E%252Fsecret.json")
    expect([400, 404]).toContain(double.status)
    expect(double.body).not.toContain("outside the data directory")

    expect(await fs.readFile(path.join(base, "secret.json"), "utf8")).toBe(secret)
    expect((await fs.readdir(base)).sort()).toEqual(["data", "secret.json"])
  })

  it("stops on SIGTERM", async () => {
    await server!.stop()
    await expect(fetch(url("doc-0"))).rejects.toThrow()
  })
})

describe("stream-copy.ts", () => {
  it("copies through stream and sink with progress lines and identical checksums", async () => {
    const { stdout } = await run(tsx, ["examples/stream-copy.ts"], {
      cwd: root,
      env: { ...process.env, SIZE_MIB: "8" },
      timeout: 30_000
    })
    const lines = stdout.trim().split("\n")
    const progress = lines.filter((line) => /^copied \d+\.\d MiB \/ 8\.0 MiB \(\d+%\)$/.test(line))
    expect(progress.length).toBeGreaterThanOrEqual(5)
    expect(progress.at(-1)).toBe("copied 8.0 MiB / 8.0 MiB (100%)")
    expect(lines.at(-1)).toBe("done: 8388608 bytes, identical: true")
    // The temp directory is gone.
    const source = /^source: (.+) \(8\.0 MiB\)$/m.exec(stdout)
    expect(source).not.toBeNull()
    await expect(fs.access(path.dirname(path.dirname(source![1])))).rejects.toThrow()
  })
})
