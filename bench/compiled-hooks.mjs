/**
 * The module hooks behind bench/compiled.mjs: `.ts` files (imported as `.js`,
 * as NodeNext resolution writes them) are compiled by esbuild's transform with
 * the target and class-field semantics of tsconfig.json and nothing else.
 */
import { transform } from "esbuild"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

const isRelative = (specifier) =>
  specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("file:")

export const resolve = async (specifier, context, nextResolve) => {
  try {
    return await nextResolve(specifier, context)
  } catch (error) {
    if (isRelative(specifier) && specifier.endsWith(".js")) {
      return nextResolve(`${specifier.slice(0, -3)}.ts`, context)
    }
    throw error
  }
}

export const load = async (url, context, nextLoad) => {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context)
  const file = fileURLToPath(url)
  const { code } = await transform(await readFile(file, "utf8"), {
    loader: "ts",
    format: "esm",
    target: "node20",
    sourcefile: file,
    tsconfigRaw: { compilerOptions: { target: "ES2022", useDefineForClassFields: true } }
  })
  return { format: "module", source: code, shortCircuit: true }
}
