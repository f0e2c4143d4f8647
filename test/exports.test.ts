/**
 * The package's own name works inside the repository, from the sources, as a
 * fresh clone has them: no `dist/`. Each check runs on a copy of the
 * repository's configuration beside links to its `src/` and `node_modules/`,
 * so a wrong `paths` entry cannot fall back to a build left by `npm run build`
 * (package.json's "exports" point into `dist/`).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { promisify } from "node:util"

const run = promisify(execFile)
const root = fileURLToPath(new URL("..", import.meta.url))
const bin = (name: string) => path.join(root, "node_modules", ".bin", name)
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly exports: Record<string, string | { readonly import: string }>
  readonly scripts: Record<string, string>
}

/** Every subpath users can import, with the source file its build comes from. */
const subpaths = Object.entries(pkg.exports).flatMap(([subpath, target]) => {
  if (typeof target === "string") return [] // ./package.json
  const built = target.import.match(/^\.\/dist\/esm\/(.+)\.js$/)
  if (built === null) throw new Error(`export ${subpath} does not point into dist/esm: ${target.import}`)
  return [{
    specifier: subpath === "." ? pkg.name : `${pkg.name}/${subpath.slice(2)}`,
    source: path.join(root, "src", `${built[1]}.ts`)
  }]
})

let copy = ""

beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), "persistence-exports-"))
  for (const file of ["package.json", "tsconfig.json"]) fs.copyFileSync(path.join(root, file), path.join(copy, file))
  for (const dir of ["src", "node_modules"]) fs.symlinkSync(path.join(root, dir), path.join(copy, dir), "dir")
  fs.writeFileSync(
    path.join(copy, "probe.ts"),
    subpaths.map(({ specifier }, i) => `import * as M${i} from ${JSON.stringify(specifier)}\n`).join("") +
      `console.log(JSON.stringify([${subpaths.map((_, i) => `Object.keys(M${i}).sort()`).join(", ")}]))\n`
  )
  fs.writeFileSync(
    path.join(copy, "tsconfig.probe.json"),
    JSON.stringify({ extends: "./tsconfig.json", compilerOptions: { plugins: [] }, include: ["probe.ts"] })
  )
})

afterAll(() => {
  if (copy !== "") fs.rmSync(copy, { recursive: true, force: true })
})

describe("the package name inside the repository, without dist/", () => {
  it("lists a source file for every export", () => {
    expect(subpaths.length).toBeGreaterThan(1)
    for (const { source, specifier } of subpaths) expect(fs.existsSync(source), `${specifier}: ${source}`).toBe(true)
  })

  it("tsx loads each export from its source file", async () => {
    const { stdout } = await run(bin("tsx"), ["probe.ts"], { cwd: copy, timeout: 60_000 })
    const loaded = JSON.parse(stdout) as Array<Array<string>>
    const expected = await Promise.all(
      subpaths.map(({ source }) => import(pathToFileURL(source).href).then((m: object) => Object.keys(m).sort()))
    )
    expect(loaded).toEqual(expected)
  })

  it("tsc resolves each export to its source file", async () => {
    const { stdout } = await run(bin("tsc"), ["-p", "tsconfig.probe.json", "--noEmit", "--listFiles"], {
      cwd: copy,
      timeout: 120_000
    })
    const listed = new Set(stdout.split("\n").map((line) => fs.existsSync(line) ? fs.realpathSync(line) : line))
    for (const { source, specifier } of subpaths) expect(listed.has(source), specifier).toBe(true)
  })

  it("`npm run lockd -- --socket PATH` runs the lock server from source", async () => {
    const socket = path.join(copy, "lockd.sock")
    const child = spawn("npm", ["run", "--silent", "lockd", "--", "--socket", socket], {
      cwd: copy,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stderr.setEncoding("utf8").on("data", (data: string) => output += data)
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line within 30 s\n${output}`)), 30_000)
        child.stdout.setEncoding("utf8").on("data", (data: string) => {
          output += data
          const match = output.match(/lockd listening on .*/)
          if (match !== null) {
            clearTimeout(timer)
            resolve(match[0])
          }
        })
        child.on("exit", (code) => reject(new Error(`exited with ${code}\n${output}`)))
      })
      expect(line).toBe(`lockd listening on unix:${socket}`)
      expect(fs.statSync(socket).isSocket()).toBe(true)
    } finally {
      process.kill(-child.pid!, "SIGTERM")
    }
  })
})
