/**
 * Every public export carries JSDoc with `@since` and `@category` (the API
 * reference is generated from it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"

const publicModules = [
  "src/LockManager.ts",
  "src/Client.ts",
  "src/PersistenceError.ts",
  "src/promise.ts",
  "src/Testing.ts",
  "src/testing/FaultFileSystem.ts",
  "src/testing/PowerLoss.ts",
  ...(fs.existsSync("src/LockServer.ts") ? ["src/LockServer.ts"] : [])
]

/** The exported declarations of a module whose preceding JSDoc lacks a tag. */
const undocumented = (file: string): Array<string> => {
  const lines = fs.readFileSync(file, "utf8").split("\n")
  const missing: Array<string> = []
  lines.forEach((line, i) => {
    const match = /^export (?:declare )?(?:const|class|interface|type|function|abstract class) (\w+)/.exec(line)
    if (match === null) return
    let j = i - 1
    while (j >= 0 && lines[j].trim() === "") j--
    if (!lines[j]?.trim().endsWith("*/")) {
      missing.push(`${match[1]} (no JSDoc)`)
      return
    }
    let k = j
    while (k >= 0 && !lines[k].trim().startsWith("/**")) k--
    const doc = lines.slice(k, j + 1).join("\n")
    for (const tag of ["@since", "@category"]) {
      if (!doc.includes(tag)) missing.push(`${match[1]} (no ${tag})`)
    }
  })
  return missing
}

describe("public API documentation", () => {
  for (const file of publicModules) {
    it(`${file}: every export has @since and @category`, () => {
      expect(undocumented(file)).toEqual([])
    })
  }
})
