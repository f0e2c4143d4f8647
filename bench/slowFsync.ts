/**
 * Builds the LD_PRELOAD shim of bench/slowfsync.c (an emulated device flush
 * after each fsync) with the machine's C compiler (`$CC`, else `cc`) into a
 * temp directory, once per process; the directory goes when the process exits.
 * Without a compiler, or off Linux (the shim relies on glibc's LD_PRELOAD and
 * libuv running fsync on its thread pool), it says why instead.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const source = fileURLToPath(new URL("./slowfsync.c", import.meta.url))

export type Shim = { readonly path: string } | { readonly missing: string }

let built: Promise<Shim> | undefined

const build = async (): Promise<Shim> => {
  if (process.platform !== "linux") return { missing: `the fsync shim needs Linux (this is ${process.platform})` }
  const compiler = process.env.CC ?? "cc"
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-persistence-slowfsync-"))
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }))
  const library = path.join(dir, "slowfsync.so")
  try {
    await promisify(execFile)(compiler, ["-O2", "-shared", "-fPIC", "-o", library, source, "-lpthread", "-ldl"], {
      timeout: 60_000
    })
    return { path: library }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return {
      missing: code === "ENOENT" ?
        `no C compiler (${compiler}) to build the fsync shim` :
        `${compiler} failed to build the fsync shim: ${(error as Error).message.split("\n")[0]}`
    }
  }
}

/** The shim's path, or why there is none. */
export const slowFsync = (): Promise<Shim> => built ??= build()
