/**
 * A real full disk: a child process (test/fixtures/full-disk.ts) writes on a
 * tmpfs of 64 KiB and 32 inodes and reports what happened; here we assert that
 * a write that does not fit (out of blocks or out of inodes) fails with
 * `FileSystemError` reason "NoSpace", leaves the old content and no temp file,
 * and never "succeeds" with a truncated file.
 *
 * The tmpfs is mounted in a private mount namespace with `unshare -Urm` (a user
 * namespace: no privilege needed where the kernel allows unprivileged user
 * namespaces). Failing that, as root, it is mounted directly and unmounted
 * after. Elsewhere the tests are skipped and the reason is printed.
 * FULL_DISK_STRATEGY=unshare|mount forces one way.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile, spawnSync } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { promisify } from "node:util"
import { type Bundle, bundleFixture } from "./fixtures/bundle.js"
import type { Attempt, Report } from "./fixtures/full-disk.js"

const run = promisify(execFile)
const OPTIONS = "size=64k,nr_inodes=32"
const TEMP = /^\.target\.[0-9a-z]{20}\.tmp$/

type Strategy = "unshare" | "mount"

/** Finds a way to mount a small tmpfs here, or says why there is none. */
const detect = (): { readonly strategy: Strategy } | { readonly reason: string } => {
  if (process.platform !== "linux") return { reason: `tmpfs and mount namespaces need Linux, not ${process.platform}` }
  const forced = process.env.FULL_DISK_STRATEGY
  const dir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "persistence-probe-"))
  const failures: Array<string> = []
  try {
    if (forced !== "mount") {
      const probe = spawnSync("unshare", ["-Urm", "sh", "-c", `mount -t tmpfs -o ${OPTIONS} tmpfs "$1"`, "sh", dir], {
        encoding: "utf8",
        timeout: 10_000
      })
      if (probe.status === 0) return { strategy: "unshare" }
      failures.push(`unshare -Urm: ${probe.error?.message ?? probe.stderr.trim()}`)
    }
    if (forced !== "unshare") {
      if (process.getuid?.() !== 0) {
        failures.push("direct mount: not root")
      } else {
        const mount = spawnSync("mount", ["-t", "tmpfs", "-o", OPTIONS, "tmpfs", dir], { encoding: "utf8" })
        if (mount.status === 0) {
          spawnSync("umount", [dir])
          return { strategy: "mount" }
        }
        failures.push(`mount: ${mount.error?.message ?? mount.stderr.trim()}`)
      }
    }
    return { reason: failures.join("; ") }
  } finally {
    nodeFs.rmSync(dir, { recursive: true, force: true })
  }
}

const found = detect()
const strategy = "strategy" in found ? found.strategy : undefined
if ("reason" in found) console.log(`full-disk tests skipped: cannot mount a small tmpfs here (${found.reason})`)
else {console.log(
    `full-disk tests: tmpfs (${OPTIONS}) mounted with ${found.strategy === "unshare" ? "unshare -Urm" : "mount (root)"}`
  )}

let bundle: Bundle | undefined

beforeAll(async () => {
  if (strategy !== undefined) bundle = await bundleFixture("./full-disk.ts")
})

afterAll(() => bundle?.remove())

/** Runs the child on a fresh 64 KiB tmpfs and returns its report. */
const fullDisk = async (durable: boolean): Promise<Report> => {
  const dir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "persistence-full-"))
  nodeFs.chmodSync(dir, 0o755)
  const args = [bundle!.file, dir, durable ? "1" : "0"]
  const options = { encoding: "utf8" as const, timeout: 60_000 }
  try {
    if (strategy === "unshare") {
      const script = `mount -t tmpfs -o ${OPTIONS} tmpfs "$1" && shift && exec "$@"`
      const { stdout } = await run(
        "unshare",
        ["-Urm", "sh", "-c", script, "sh", dir, process.execPath, ...args],
        options
      )
      return JSON.parse(stdout)
    }
    await run("mount", ["-t", "tmpfs", "-o", OPTIONS, "tmpfs", dir])
    try {
      const { stdout } = await run(process.execPath, args, options)
      return JSON.parse(stdout)
    } finally {
      await run("umount", [dir])
    }
  } finally {
    nodeFs.rmSync(dir, { recursive: true, force: true })
  }
}

const show = (a: Attempt) => `${a.case} via ${a.api}, ${a.size} bytes with ${a.free} free: ${JSON.stringify(a)}`

/**
 * The failure of a write that did not fit: typed NoSpace, the old content
 * intact (a new path stays missing), no temp file or directory left.
 */
const expectNoSpace = (a: Attempt, extra: ReadonlyArray<string> = []) => {
  expect(a.outcome, show(a)).toBe("failure")
  expect(a.error, show(a)).toMatchObject({ tag: "FileSystemError", isFileSystemError: true, reason: "NoSpace" })
  expect(a.target, show(a)).toBe(a.path === "target" ? "old" : "missing")
  expect(a.entries, show(a)).toEqual([...extra, "target"].sort())
}

const checkReport = (report: Report) => {
  const byCase = (name: string) => report.attempts.filter((a) => a.case === name)
  // Nowhere a temp file left, a truncated target, or a defect.
  for (const a of report.attempts) {
    expect(a.entries.filter((name) => TEMP.test(name)), show(a)).toEqual([])
    expect(a.outcome, show(a)).not.toBe("defect")
    if (a.outcome === "success") expect(a.target, show(a)).toBe("new")
  }

  for (const a of byCase("too big")) expectNoSpace(a)
  for (const a of byCase("disk full")) expectNoSpace(a, ["filler"])
  for (const a of [...byCase("no inode"), ...byCase("no inode, new directory")]) {
    const fillers = a.entries.filter((name) => name.startsWith("inode-"))
    expect(fillers.length, show(a)).toBeGreaterThan(0)
    expectNoSpace(a, fillers)
  }

  const boundary = byCase("boundary")
  expect(boundary.length).toBe(14)
  for (const a of boundary) {
    if (a.outcome === "success") expect(a.entries, show(a)).toEqual(["target"])
    else expectNoSpace(a)
    // More than the free space can never fit (the old content is freed only by the rename).
    if (a.size > a.free) expect(a.outcome, show(a)).toBe("failure")
  }
  // Both sides of the boundary were reached, through each API.
  for (const api of ["write", "sink"]) {
    const outcomes = new Set(boundary.filter((a) => a.api === api).map((a) => a.outcome))
    expect(outcomes, `boundary via ${api}`).toEqual(new Set(["success", "failure"]))
  }

  // The failed attempts gave their space back.
  for (const a of byCase("after failures")) {
    expect(a.outcome, show(a)).toBe("success")
    expect(a.entries, show(a)).toEqual(["target"])
  }
}

describe("full disk (a tmpfs of 64 KiB and 32 inodes)", () => {
  // Skipped where no small tmpfs can be mounted: needs Linux with unprivileged user namespaces, or root.
  it.skipIf(strategy === undefined)("not durable: NoSpace, the old content intact, no temp file", async () => {
    checkReport(await fullDisk(false))
  })

  it.skipIf(strategy === undefined)("durable: NoSpace, the old content intact, no temp file", async () => {
    checkReport(await fullDisk(true))
  })
})
