/**
 * The Promise facade: the original library's class API, no Effect in sight.
 * Write, read, collect, stream in and out, take a lock by hand, give up
 * waiting with an AbortSignal, and delete.
 *
 * Run: npx tsx examples/promise.ts
 */
import { Client, LockManager } from "effect-persistence/promise"
import { once } from "node:events"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"

const main = async () => {
  const manager = new LockManager()
  const client = new Client({ manager, durable: true })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-persistence-promise-"))
  const file = path.join(dir, "notes", "example.json")

  // Write (atomically: temp file + rename; durable: fsynced). Missing parents are created.
  await client.write(file, JSON.stringify({ message: "Hello, World!" }))
  console.log(`wrote ${path.relative(dir, file)}`)

  // Read as text, or as a Buffer without an encoding.
  console.log("read:", JSON.parse(await client.read(file, "utf8")))
  console.log("read bytes:", (await client.read(file)).length)

  // Collect: names, or Dirent-like entries.
  console.log("collect:", await client.collect(dir, { recursive: true }))
  const entries = await client.collect(path.join(dir, "notes"), { withFileTypes: true })
  console.log("entries:", entries.map((entry) => `${entry.name} (${entry.isFile() ? "file" : "other"})`))

  // A write stream: nothing is visible at the target until `finish`.
  const ws = await client.createWriteStream(file)
  ws.write(JSON.stringify({ message: "Streaming Hello, World!" }))
  ws.write("\n")
  ws.end()
  await once(ws, "finish")
  console.log("write stream committed:", fs.readFileSync(file, "utf8").trim())

  // A read stream holds the read lock until it closes.
  const rs = await client.createReadStream(file, { encoding: "utf8" })
  let streamed = ""
  await pipeline(rs, async (chunks: AsyncIterable<string>) => {
    for await (const chunk of chunks) streamed += chunk
  })
  console.log("read stream:", streamed.trim())

  // A lock by hand: while it is held, a read of the file waits; an AbortSignal gives up.
  const id = await manager.acquire(path.dirname(file), "write")
  // (A ref'd timer: AbortSignal.timeout's timer would not keep the process alive while nothing else does.)
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 20)
  const gaveUp = await client.read(file, { encoding: "utf8", signal: controller.signal }).then(
    () => "no",
    (error: NodeJS.ErrnoException) => `yes (${error.code})`
  )
  console.log(`a reader that waited 20 ms for lock #${id} gave up: ${gaveUp}`)
  manager.release(id)

  // Errors carry Node's codes.
  await client.read(path.join(dir, "missing.json")).catch((error: NodeJS.ErrnoException) =>
    console.log("missing file:", error.code)
  )

  // Delete.
  await client.delete(dir, { recursive: true })
  console.log(`deleted ${path.basename(dir)}:`, !fs.existsSync(dir))

  console.log("locks at the end:", JSON.stringify(await manager.stats()))
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
