/**
 * Every benchmark suite `npm run bench` runs, in order. A new suite (say
 * `client.ts`) exports a `Suite` and joins this list.
 */
import type { Suite } from "./harness.js"
import * as Locks from "./locks.js"

export const suites: ReadonlyArray<Suite> = [Locks.suite]
