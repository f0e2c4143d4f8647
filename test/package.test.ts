/**
 * The package as users get it: `npm pack`, installed into a fresh project
 * offline (the tarball plus the peer dependencies already installed here),
 * then used from ESM, from CommonJS and from TypeScript.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const peers = ["effect", "@effect/platform", "@effect/platform-node", "@effect/rpc", "typescript", "@types/node"]

let project = ""
let tarball = ""

/**
 * Runs a program and resolves with its output. Not `execFileSync`: a worker
 * blocked for a minute (`npm pack` builds the package, slow on a loaded
 * machine) misses the answers of the test runner it called before, and the
 * run fails with "Timeout calling onTaskUpdate".
 */
const run = (command: string, args: Array<string>, cwd = project): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(
      command,
      args,
      { cwd, encoding: "utf8", timeout: 120_000 },
      (error, stdout, stderr) => error === null ? resolve(stdout) : reject(Object.assign(error, { stdout, stderr }))
    )
  )

beforeAll(async () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "persistence-pack-"))
  const packed = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", work], root)) as Array<
    { filename: string; files: Array<{ path: string }> }
  >
  tarball = path.join(work, packed[0].filename)
  project = path.join(work, "consumer")
  const installed = path.join(project, "node_modules", "effect-persistence")
  fs.mkdirSync(installed, { recursive: true })
  await run("tar", ["xzf", tarball, "-C", installed, "--strip-components=1"])
  for (const peer of peers) {
    const link = path.join(project, "node_modules", peer)
    fs.mkdirSync(path.dirname(link), { recursive: true })
    fs.symlinkSync(path.join(root, "node_modules", peer), link, "dir")
  }
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "consumer", private: true }))
}, 180_000)

afterAll(() => {
  if (project !== "") fs.rmSync(path.dirname(project), { recursive: true, force: true })
})

describe("the packed package", () => {
  it("ships the built modules and no sources, tests or internals' declarations", async () => {
    const files = (await run("tar", ["tzf", tarball])).trim().split("\n").map((f) => f.replace(/^package\//, ""))
    expect(files).toContain("dist/esm/index.js")
    expect(files).toContain("dist/cjs/index.js")
    expect(files).toContain("dist/dts/Client.d.ts")
    expect(files).toContain("dist/esm/bin/lockd.js")
    expect(files.some((f) => f.startsWith("src/") || f.startsWith("test/") || f.startsWith("examples/"))).toBe(false)
    expect(files.some((f) => f.startsWith("dist/dts/internal/"))).toBe(false)
  })

  it("runs from ESM: write then read through the layers", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "persistence-esm-"))
    fs.writeFileSync(
      path.join(project, "esm.mjs"),
      `
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Client, LockManager } from "effect-persistence"
const live = Client.layer({ durable: true }).pipe(Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer)))
const program = Effect.gen(function*() {
  const client = yield* Client.Client
  yield* client.write(${JSON.stringify(dir + "/esm/hello.txt")}, "hello from esm")
  console.log(yield* client.readString(${JSON.stringify(dir + "/esm/hello.txt")}))
})
await Effect.runPromise(Effect.provide(program, live))
`
    )
    expect((await run("node", ["esm.mjs"])).trim()).toBe("hello from esm")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("runs from CommonJS: require, write then read", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "persistence-cjs-"))
    fs.writeFileSync(
      path.join(project, "cjs.cjs"),
      `
const { NodeFileSystem } = require("@effect/platform-node")
const { Effect, Layer } = require("effect")
const { Client, LockManager } = require("effect-persistence")
const live = Client.layer().pipe(Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer)))
const program = Effect.flatMap(Client.Client, (client) =>
  Effect.zipRight(client.write(${JSON.stringify(dir + "/cjs.txt")}, "hello from cjs"), client.readString(${
        JSON.stringify(dir + "/cjs.txt")
      })))
Effect.runPromise(Effect.provide(program, live)).then((text) => console.log(text))
`
    )
    expect((await run("node", ["cjs.cjs"])).trim()).toBe("hello from cjs")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("type-checks a consumer that uses the services through layers", async () => {
    fs.writeFileSync(
      path.join(project, "consumer.ts"),
      `
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import { Client, LockManager, PersistenceError } from "effect-persistence"
import * as ClientModule from "effect-persistence/Client"

const User = Schema.Struct({ name: Schema.String })
const live = Client.layer({ durable: true }).pipe(Layer.provideMerge(Layer.merge(LockManager.layer, NodeFileSystem.layer)))

export const program: Effect.Effect<string, PersistenceError.PersistenceError> = Effect.gen(function*() {
  const client = yield* ClientModule.Client
  const manager = yield* LockManager.LockManager
  yield* client.writeJson("/tmp/user.json", User, { name: "ada" })
  const user = yield* client.readJson("/tmp/user.json", User)
  const stats: LockManager.LockStats = yield* manager.stats
  // The declarations are precise, not \`any\`: a wrong argument is a type error.
  // @ts-expect-error a path is a string
  yield* client.write(42, "x")
  return user.name + stats.held
}).pipe(Effect.provide(live), Effect.catchTag("InvalidPathError", (e) => Effect.succeed(e.message)))
`
    )
    fs.writeFileSync(
      path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2022",
          noEmit: true,
          types: ["node"],
          // Library checking would also check the platform's own declarations
          // (which need @types/ws); the @ts-expect-error above shows ours resolve.
          skipLibCheck: true
        },
        files: ["consumer.ts"]
      })
    )
    const tsc = path.join(project, "node_modules", "typescript", "bin", "tsc")
    let output = ""
    try {
      await run(tsc, ["-p", "."])
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? error)
    }
    expect(output).toBe("")
  })

  it("installs the lock server program, which starts and stops", async () => {
    const bin = JSON.parse(fs.readFileSync(path.join(project, "node_modules/effect-persistence/package.json"), "utf8"))
      .bin["effect-persistence-lockd"]
    const socket = path.join(path.dirname(project), "lockd.sock")
    const child = spawn("node", [path.join(project, "node_modules/effect-persistence", bin), "--socket", socket], {
      cwd: project,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`lockd did not start: ${out}`)), 10_000)
      child.stdout.on("data", (chunk) => {
        out += String(chunk)
        if (out.includes("listening")) {
          clearTimeout(timer)
          resolve()
        }
      })
    }).finally(() => child.kill("SIGTERM"))
    expect(out).toContain(`listening on unix:${socket}`)
    expect(await exited).toBe(0)
    expect(fs.existsSync(socket)).toBe(false)
  })

  it("loads etcd3 only for the etcd manager: a clear defect without it, a typed error from CommonJS with it", async () => {
    // A loopback port that was just free: a refused connection.
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    })
    const program = (require: boolean) => `
${require ? "const { Effect } = require(\"effect\"); const { LockManager } = require(\"effect-persistence\")" : ""}
const main = Effect.scoped(Effect.flatMap(
  LockManager.makeEtcd({ endpoints: ["http://127.0.0.1:${port}"], connectTimeout: "500 millis" }),
  (manager) => manager.withLock("/a", "write")(Effect.void)
))
Effect.runPromiseExit(main).then((exit) => console.log(exit._tag === "Failure" ?
  (exit.cause._tag === "Fail" ? exit.cause.error._tag + " " + exit.cause.error.reason : "defect " + String(exit.cause.defect?.message)) : "success"))
`
    fs.writeFileSync(
      path.join(project, "etcd-missing.mjs"),
      `import { Effect } from "effect"\nimport { LockManager } from "effect-persistence"\n${program(false)}`
    )
    expect((await run("node", ["etcd-missing.mjs"])).trim()).toBe(
      "defect LockManager.makeEtcd needs the optional peer dependency etcd3 (npm install etcd3)"
    )
    const link = path.join(project, "node_modules", "etcd3")
    fs.symlinkSync(path.join(root, "node_modules", "etcd3"), link, "dir")
    try {
      fs.writeFileSync(path.join(project, "etcd.cjs"), program(true))
      expect((await run("node", ["etcd.cjs"])).trim()).toBe("RemoteLockError Unreachable")
    } finally {
      fs.unlinkSync(link)
    }
  })

  it("does not expose internal modules", async () => {
    fs.writeFileSync(
      path.join(project, "internal.mjs"),
      `
try {
  await import("effect-persistence/internal/lockTable.js")
  console.log("importable")
} catch (error) {
  console.log(error.code)
}
`
    )
    expect((await run("node", ["internal.mjs"])).trim()).toBe("ERR_PACKAGE_PATH_NOT_EXPORTED")
  })
})
