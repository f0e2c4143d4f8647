/**
 * Every benchmark suite `npm run bench` runs, in order. A new suite exports a
 * `Suite` and joins this list.
 */
import * as Client from "./client.js"
import * as Durable from "./durable.js"
import type { Suite } from "./harness.js"
import * as Locks from "./locks.js"
import * as Memory from "./memory.js"
import * as Original from "./original.js"

export const suites: ReadonlyArray<Suite> = [Original.suite, Locks.suite, Client.suite, Durable.suite, Memory.suite]
