/**
 * Every example runs and prints what it promises.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const run = promisify(execFile)
const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

const example = async (name: string) => {
  const { stdout } = await run(tsx, [`examples/${name}`], { cwd: root, timeout: 60_000 })
  return stdout
}

describe("examples", () => {
  it("hello-world.ts (npm start): every step of the seed's usage section, no lock left", async () => {
    const out = await example("hello-world.ts")
    expect(out).toContain("read: { message: 'Hello, World!' }")
    expect(out).toContain("read as Message: Hello, World!")
    expect(out).toContain("collect: [ 'example.json' ]")
    expect(out).toContain(`stream: {"message":"Streaming Hello, World!"}`)
    expect(out).toContain("collect after rename: [ 'archive', 'archive/example.json' ]")
    expect(out).toContain(`locks at the end: {"held":0,"pending":0,"nodes":0}`)
  })

  it("locks.ts: readers overlap, the writer waits, the late reader queues behind it", async () => {
    const out = await example("locks.ts")
    const lines = out.trim().split("\n")
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix))
    expect(at("reader 1: got")).toBeLessThan(at("writer: got"))
    expect(at("reader 2: releases")).toBeLessThan(at("writer: got"))
    expect(at("writer: releases")).toBeLessThan(at("reader 3 (behind the writer): got"))
    expect(at("unrelated writer: got")).toBeLessThan(at("reader 1: releases"))
    expect(out).toContain("a writer that waited 20 ms gave up: yes")
    expect(out).toContain(`at the end: {"held":0,"pending":0,"nodes":0}`)
  })

  it("kv-store.ts: the platform's KeyValueStore on the Client: no lost increment, typed values, distinct keys", async () => {
    const out = await example("kv-store.ts")
    expect(out).toContain("effect-persistence: visits after 100 concurrent increments: 100")
    expect(out).toContain("effect-persistence: session of ada: { user: 'ada', expires: 1900003600 }")
    expect(out).toContain("effect-persistence: keys in the store: 5")
    expect(out).toMatch(
      /files: \[\s*'%2e\.%2f\.\.%2fetc%2fpasswd',\s*'\^user%3a1',\s*'ada',\s*'user%3a1',\s*'visits'\s*\]/
    )
    expect(out).toContain("size after clear: 0")
  })

  it("two-way-copy.ts: opposite stream copies end (one refused, one done), copy never deadlocks, nesting ends", async () => {
    const out = await example("two-way-copy.ts")
    const lines = out.trim().split("\n")
    const copies = lines.filter((l) => l.startsWith("stream into sink, "))
    expect(copies.length).toBe(2)
    expect(copies.filter((l) => l.endsWith(": done")).length).toBe(1)
    expect(copies.filter((l) => l.endsWith(": refused (Cycle)")).length).toBe(1)
    expect(out).toContain("after the stream copies, a and b are equal: true")
    expect(out).toContain("client.copy both ways: both done, a and b equal: true")
    expect(out).toContain("modify(counter, () => readString(counter)): 42")
    expect(out).toMatch(/modify\(counter, \(\) => collect\(dir\)\): DeadlockError: .*\(held by the requester\)/)
    expect(out).toContain("with the directory taken first: a.txt,b.txt,counter")
    expect(out).toContain(`locks at the end: {"held":0,"pending":0,"nodes":0}`)
  })
})
