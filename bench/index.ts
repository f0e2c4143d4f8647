/**
 * Runs every benchmark suite: `npm run bench` (full) or `BENCH_SMOKE=1 npm run bench`
 * (tiny sizes, one round: does the suite still run?). Results go to
 * `bench/results/`. `BENCH_ROUNDS`, `BENCH_WARMUP` and `BENCH_SEED` override
 * the defaults of a full run; `BENCH_ONLY=<text>` runs only the cases whose
 * `suite: name` contains the text (`BENCH_ONLY="client: read" npx tsx bench/index.ts`).
 */
import { runSuites } from "./harness.js"
import { suites } from "./suites.js"

runSuites(suites).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
