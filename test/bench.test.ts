/**
 * The benchmark suite still runs: every case in smoke mode (tiny sizes, one
 * round), including the idle check of the lock manager after each case, the
 * cases against the original library and the durable cases in their child
 * processes (with the fsync shim, when a C compiler is here).
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { HEADER } from "../bench/harness.js"
import { suites } from "../bench/suites.js"
import { etcdAvailable } from "./fixtures/etcd-cluster.js"

const run = promisify(execFile)
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))
const root = fileURLToPath(new URL("..", import.meta.url))

describe("bench", () => {
  it("smoke mode runs every case and prints the table", async () => {
    // Rejects on a non-zero exit (a failed idle check throws) or the timeout.
    // As `npm run bench` runs it: the sources compiled as the build compiles them (bench/compiled.mjs).
    const { stdout } = await run(process.execPath, ["--import", "./bench/compiled.mjs", "bench/index.ts"], {
      cwd: root,
      env: { ...process.env, BENCH_SMOKE: "1" },
      // Two of the cases' child processes load the sources again: seconds each on a loaded machine.
      timeout: 150_000
    })
    const lines = stdout.split("\n")
    const header = lines.findIndex((line) => line.split(/\s{2,}/).join("|") === HEADER.join("|"))
    expect(header).toBeGreaterThanOrEqual(0)
    const cases = suites.flatMap((suite) => suite.cases.map((c) => ({ suite: suite.name, name: c.name })))
    expect(cases.length).toBeGreaterThan(0)
    for (const { name, suite } of cases) {
      expect(stdout).toContain(`running ${suite}: ${name} ... `)
      // A row of the table, below the header, starts with the case name.
      expect(lines.slice(header + 1).some((line) => line.startsWith(name))).toBe(true)
    }
    // The read and write cases also print their ceiling: the platform calls alone against the target's baseline.
    expect(stdout).toMatch(/ceiling: FileSystem\.readFile \(platform, no lock\) at \d+\.\d+x of fs\.promises\.readFile/)
    expect(stdout).toMatch(/ceiling: FileSystem\.writeFile wx \+ rename \(platform, no lock\) at \d+\.\d+x of node:fs/)
    // Against the original, or a visible note where it is not beside the repository.
    const noOriginal = /skipped: original library not found/.test(stdout)
    if (!noOriginal) expect(stdout).toMatch(/original acquire\/release\s+\d/)
    expect(stdout).toMatch(
      /cost of the span, counter and lock metrics, as a share of a tmpfs Client\.write: -?\d+\.\d%/
    )
    // The durable cases ran in their children with the shim (each counts emulated flushes), or say why not.
    const durable = cases.filter((c) => c.suite === "durable")
    if (!/skipped: no C compiler/.test(stdout)) {
      expect(stdout.match(/emulated flushes per write \(fsyncs per write\): /g)?.length).toBe(durable.length)
      // And their floor: the same platform calls with nothing around them, against the original.
      if (!noOriginal) {
        expect(
          stdout.match(/ceiling: platform calls alone \(.*\) at \d+\.\d+x of original Client\.write durable/g)?.length
        )
          .toBe(durable.length)
      }
    }
  }, 180_000)
})

describe("bench/remote.ts", () => {
  it("smoke mode measures in-process, Unix socket, TCP and etcd withLock round trips", async () => {
    // It starts two lock servers and, where etcd is installed, a 1- and a 3-member cluster.
    const { stdout } = await run(tsx, ["bench/remote.ts"], {
      cwd: root,
      env: { ...process.env, BENCH_SMOKE: "1" },
      timeout: 120_000
    })
    for (const runner of ["in-process", "unix", "tcp"]) expect(stdout).toContain(runner)
    if (etcdAvailable()) {
      for (const fibers of [1, 16]) {
        expect(stdout).toMatch(new RegExp(`^etcd 1 member +${fibers} `, "m"))
        expect(stdout).toMatch(new RegExp(`^etcd 3 members +${fibers} `, "m"))
      }
    } else {
      expect(stdout).toContain("etcd rows skipped")
    }
  }, 120_000)
})
