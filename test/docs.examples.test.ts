/**
 * The examples in the API documentation compile against the current API, so
 * a renamed or changed export breaks `npm test` rather than the reader.
 *
 * Every `@example` in `src/` must hold a fenced ```ts block, and every such
 * block in a JSDoc comment is compiled: each becomes a module of its own,
 * importing the package by its name (`effect-persistence/...`) as a user
 * does; the repository's tsconfig `paths` map that name to the sources. One
 * TypeScript program checks them all, in memory (nothing is written to disk),
 * with the repository's compiler options.
 *
 * One relaxation: an example may declare a value it never reads (the
 * `program` a snippet builds for the reader to run), but every import must be
 * used, since an unused import tells the reader something that is not true.
 */
import { beforeAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

const root = fileURLToPath(new URL("..", import.meta.url))

interface Example {
  /** The module it documents, relative to the repository. */
  readonly file: string
  /** The 1-based line in `file` of the first line of code. */
  readonly line: number
  readonly code: string
}

interface Extracted {
  readonly examples: ReadonlyArray<Example>
  /** `file:line` of each `@example` without a fenced ts block. */
  readonly unfenced: ReadonlyArray<string>
}

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return entry.isFile() && entry.name.endsWith(".ts") ? [full] : []
  }).sort()

const lineAt = (text: string, index: number): number => text.slice(0, index).split("\n").length

/** The body of a JSDoc line: what follows the leading `*` and one space. */
const bodyOf = (line: string): string => line.replace(/^\s*(?:\/\*\*|\*\/|\*(?!\/))? ?/, "").replace(/\s*\*\/\s*$/, "")

const fence = /^```(\w*)\s*$/
const compiled = new Set(["ts", "typescript"])

/** The fenced TypeScript blocks of every JSDoc comment of `text`, and the `@example`s without one. */
const extract = (file: string, text: string): Extracted => {
  const examples: Array<Example> = []
  const unfenced: Array<string> = []
  for (const comment of text.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const first = lineAt(text, comment.index)
    const lines = comment[0].split("\n").map(bodyOf)
    let block: { readonly line: number; readonly lang: string; readonly code: Array<string> } | undefined
    let example: { readonly line: number; fenced: boolean } | undefined
    const endExample = () => {
      if (example !== undefined && !example.fenced) unfenced.push(`${file}:${example.line}`)
      example = undefined
    }
    lines.forEach((line, i) => {
      const open = fence.exec(line.trim())
      if (block !== undefined) {
        if (open !== null && open[1] === "") {
          if (compiled.has(block.lang)) examples.push({ file, line: block.line, code: block.code.join("\n") })
          block = undefined
        } else {
          block.code.push(line)
        }
        return
      }
      if (open !== null) {
        block = { line: first + i + 1, lang: open[1], code: [] }
        if (example !== undefined && compiled.has(open[1])) example.fenced = true
        return
      }
      const tag = /^@(\w+)/.exec(line.trim())
      if (tag === null) return
      endExample()
      if (tag[1] === "example") example = { line: first + i, fenced: false }
    })
    if (block !== undefined) unfenced.push(`${file}:${block.line - 1} (fence not closed)`)
    endExample()
  }
  return { examples, unfenced }
}

const extracted = sourceFiles(path.join(root, "src")).map((full) =>
  extract(path.relative(root, full), fs.readFileSync(full, "utf8"))
)
const examples = extracted.flatMap((e) => e.examples)
const documented = Array.from(new Set(examples.map((e) => e.file)))

// Deliberately broken examples compiled in the same program: they show the
// check reports what it exists to catch.
const canaries = {
  renamed: `import { Client } from "effect-persistence"\nexport const layer = Client.layerr()\n`,
  unusedImport: `import { once } from "node:events"\nimport { LockManager } from "effect-persistence"\n` +
    `export const layer = LockManager.layer\n`,
  unusedLocal: `import { LockManager } from "effect-persistence"\nconst layer = LockManager.layer\n`
}

// Reported as unused: a declaration never read, never used, all of a
// destructuring, all of a declaration list, all of an import's names.
const unusedCodes = new Set([6133, 6196, 6198, 6199, 6192])

const isInImport = (file: ts.SourceFile, position: number): boolean =>
  file.statements.some((s) => ts.isImportDeclaration(s) && s.getStart(file) <= position && position < s.end)

interface Diagnostic {
  readonly code: number
  readonly where: string
  readonly message: string
}

/** Type-checks every example and canary in one program; diagnostics by virtual file name. */
const compile = (sources: ReadonlyMap<string, string>): Map<string, Array<Diagnostic>> => {
  const configPath = path.join(root, "tsconfig.json")
  const config = ts.readConfigFile(configPath, ts.sys.readFile)
  if (config.error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, "\n"))
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root, { noEmit: true }, configPath)
  const options = { ...parsed.options, plugins: [] }
  const host = ts.createCompilerHost(options, true)
  const { fileExists, getSourceFile, readFile } = host
  host.fileExists = (name) => sources.has(name) || fileExists.call(host, name)
  host.readFile = (name) => sources.get(name) ?? readFile.call(host, name)
  host.getSourceFile = (name, languageVersion, onError, shouldCreate) => {
    const text = sources.get(name)
    return text === undefined
      ? getSourceFile.call(host, name, languageVersion, onError, shouldCreate)
      : ts.createSourceFile(name, text, languageVersion, true)
  }
  const program = ts.createProgram({ rootNames: Array.from(sources.keys()), options, host })
  const out = new Map<string, Array<Diagnostic>>()
  for (const diagnostic of program.getGlobalDiagnostics()) {
    throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
  }
  for (const name of sources.keys()) {
    const file = program.getSourceFile(name)
    if (file === undefined) throw new Error(`${name} is not in the program`)
    const diagnostics = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]
    out.set(
      name,
      diagnostics.flatMap((d): Array<Diagnostic> => {
        const start = d.start ?? 0
        if (unusedCodes.has(d.code) && !isInImport(file, start)) return []
        const { character, line } = file.getLineAndCharacterOfPosition(start)
        return [{
          code: d.code,
          where: `${line}:${character + 1}`,
          message: ts.flattenDiagnosticMessageText(d.messageText, "\n")
        }]
      })
    )
  }
  return out
}

/** Where an example is compiled from: a module that does not exist on disk, in the repository. */
const virtualName = (key: string) => path.join(root, "test", ".doc-examples", `${key}.ts`)

let diagnostics = new Map<string, Array<Diagnostic>>()

beforeAll(() => {
  const sources = new Map<string, string>()
  // `export {}` keeps an example without imports a module (a top-level await needs one).
  examples.forEach((e, i) => sources.set(virtualName(`example-${i}`), `${e.code}\nexport {}\n`))
  for (const [name, code] of Object.entries(canaries)) sources.set(virtualName(`canary-${name}`), code)
  diagnostics = compile(sources)
}, 180_000)

/** The diagnostics of a module's examples, located in the module itself. */
const reported = (file: string): Array<string> =>
  examples.flatMap((e, i) =>
    e.file !== file ? [] : (diagnostics.get(virtualName(`example-${i}`)) ?? []).map((d) => {
      const [line, column] = d.where.split(":").map(Number)
      return `${e.file}:${e.line + line}:${column} TS${d.code}: ${d.message}`
    })
  )

const codesOf = (canary: keyof typeof canaries) =>
  (diagnostics.get(virtualName(`canary-${canary}`)) ?? []).map((d) => d.code)

describe("examples in the API documentation", () => {
  it("every @example is a fenced ts block", () => {
    expect(extracted.flatMap((e) => e.unfenced)).toEqual([])
    expect(examples.length).toBeGreaterThan(0)
  })

  for (const file of documented) {
    it(`${file}: its examples compile`, () => {
      expect(reported(file)).toEqual([])
    })
  }

  it("the check reports a renamed export and an unused import, not an unused local", () => {
    expect(codesOf("renamed")).toEqual([2551]) // "Property 'layerr' does not exist ... Did you mean 'layer'?"
    expect(codesOf("unusedImport")).toEqual([6133])
    expect(codesOf("unusedLocal")).toEqual([])
  })

  it("the extractor finds fenced blocks, where they are, and unfenced examples", () => {
    const text = [
      "/**",
      " * @example",
      " * ```ts",
      " * const a = 1",
      " * ```",
      " *",
      " * @since 0.1.0",
      " */",
      "  /**",
      "   * @example",
      "   * client.write(\"/x\", \"y\")",
      "   */",
      "/** prose ```sh\n * ```sh\n * ls\n * ```\n */"
    ].join("\n")
    expect(extract("m.ts", text)).toEqual({
      examples: [{ file: "m.ts", line: 4, code: "const a = 1" }],
      unfenced: ["m.ts:10"]
    })
  })
})
