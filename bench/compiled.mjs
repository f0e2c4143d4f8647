/**
 * `node --import ./bench/compiled.mjs bench/<file>.ts` runs the benchmarks on
 * the project's TypeScript compiled as its build compiles it, not as `tsx`
 * does: tsx asks esbuild to keep function names, which wraps every arrow
 * function assigned to a name or property in a `defineProperty` call each time
 * it is created. Users run the built package (tsc for ES modules, esbuild
 * without that option for CommonJS), which has no such wrappers, and the
 * original library is measured as built, so the project is measured as built
 * too. Child processes started with `process.execArgv` inherit the loader.
 */
import { register } from "node:module"

register("./compiled-hooks.mjs", import.meta.url)
