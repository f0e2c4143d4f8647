/**
 * The original library ("Persistence" 1.22.4, built), which the project
 * replaces, for side-by-side cases. It is not on the registry: a checkout of
 * this project keeps it beside the repository, in `../shared/original/`, and
 * it is loaded from there at run time, never copied in. A clone without it
 * gets `missing` with the reason, and the cases that need it skip their rows.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../../shared/original/dist/index.js", import.meta.url))

/** The original's lock manager: `acquire` resolves with an id once granted; `release(id)` lets go. */
export interface OriginalLockManager {
  readonly acquire: (path: string, type: "read" | "write") => Promise<number>
  readonly release: (id: number) => void
}

/** The original's client (the calls the benches make). */
export interface OriginalClient {
  readonly write: (path: string, data: Uint8Array) => Promise<void>
}

export interface Original {
  readonly LockManager: new() => OriginalLockManager
  readonly Client: new(options: { manager: OriginalLockManager; durable?: boolean }) => OriginalClient
}

export type Loaded = { readonly original: Original } | { readonly missing: string }

let loaded: Loaded | undefined

/** The original library, or why it is not here. */
export const loadOriginal = (): Loaded => {
  if (loaded !== undefined) return loaded
  if (!fs.existsSync(entry)) {
    return loaded = { missing: "original library not found (../shared/original beside the repository)" }
  }
  // A CommonJS build: require gives its exports as they are.
  const original = createRequire(import.meta.url)(entry) as Original
  return loaded = { original }
}
