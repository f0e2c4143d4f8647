/**
 * examples/promise.ts runs, prints what it promises and leaves no lock.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"

const run = promisify(execFile)
const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

describe("examples/promise.ts", () => {
  it("writes, reads, collects, streams, gives up waiting, deletes; no lock left", async () => {
    const { stdout } = await run(tsx, ["examples/promise.ts"], { cwd: root, timeout: 60_000 })
    expect(stdout).toContain("read: { message: 'Hello, World!' }")
    expect(stdout).toContain("collect: [ 'notes', 'notes/example.json' ]")
    expect(stdout).toContain("entries: [ 'example.json (file)' ]")
    expect(stdout).toContain(`write stream committed: {"message":"Streaming Hello, World!"}`)
    expect(stdout).toContain(`read stream: {"message":"Streaming Hello, World!"}`)
    expect(stdout).toMatch(/a reader that waited 20 ms for lock #\d+ gave up: yes \(ABORT_ERR\)/)
    expect(stdout).toContain("missing file: ENOENT")
    expect(stdout).toContain(`locks at the end: {"held":0,"pending":0,"nodes":0}`)
  })
})
