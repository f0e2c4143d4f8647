/**
 * The reference model of the fairness rule and the random request/step
 * generators shared by the model tests (the lock table, the in-memory
 * service and the remote service run the same sequences).
 */
import { overlaps } from "../../src/internal/path.js"

export const UNIVERSE = ["/a", "/a/b", "/a/b/c", "/a/x", "/a/x/a", "/b", "/b/a", "/x", "/x/a", "/ab"]

export interface ModelRequest {
  readonly seq: number
  readonly mode: "read" | "write"
  readonly paths: ReadonlyArray<string>
}

const conflicts = (a: ModelRequest, b: ModelRequest) =>
  (a.mode === "write" || b.mode === "write") && a.paths.some((p) => b.paths.some((q) => overlaps(p, q)))

/**
 * The reference model, written from the rule in the README without looking at the
 * implementation: a pending request is granted when no granted request
 * conflicts with it and no earlier pending request conflicts with it; a held
 * request stays held until it leaves. Grants are applied until nothing changes.
 */
export class Model {
  live: Array<ModelRequest> = []
  held = new Set<number>()
  arrive(r: ModelRequest) {
    this.live.push(r)
    this.settle()
  }
  leave(seq: number) {
    this.live = this.live.filter((r) => r.seq !== seq)
    this.held.delete(seq)
    this.settle()
  }
  private settle() {
    let changed = true
    while (changed) {
      changed = false
      for (const r of this.live) {
        if (this.held.has(r.seq)) continue
        const heldConflict = this.live.some((h) => this.held.has(h.seq) && conflicts(h, r))
        const earlierPendingConflict = this.live.some((p) => !this.held.has(p.seq) && p.seq < r.seq && conflicts(p, r))
        if (!heldConflict && !earlierPendingConflict) {
          this.held.add(r.seq)
          changed = true
        }
      }
    }
  }
}

export const randomRequest = (rand: () => number, seq: number): ModelRequest => {
  const pick = () => UNIVERSE[Math.floor(rand() * UNIVERSE.length)]
  const roll = rand()
  // The root can only be read-locked.
  if (roll < 0.05) return { seq, mode: "read", paths: ["/"] }
  if (roll < 0.45) return { seq, mode: "read", paths: [pick()] }
  if (roll < 0.85) return { seq, mode: "write", paths: [pick()] }
  const n = 2 + Math.floor(rand() * 3)
  return { seq, mode: "write", paths: Array.from({ length: n }, pick) }
}

export type Step = { kind: "acquire"; request: ModelRequest } | { kind: "release"; seq: number } | {
  kind: "interrupt"
  seq: number
}

export const nextStep = (rand: () => number, model: Model, seq: number): Step => {
  const roll = rand()
  const held = model.live.filter((r) => model.held.has(r.seq))
  const pending = model.live.filter((r) => !model.held.has(r.seq))
  if (roll < 0.25 && held.length > 0) return { kind: "release", seq: held[Math.floor(rand() * held.length)].seq }
  if (roll < 0.35 && pending.length > 0) {
    return { kind: "interrupt", seq: pending[Math.floor(rand() * pending.length)].seq }
  }
  if (model.live.length > 24) {
    const any = model.live[Math.floor(rand() * model.live.length)]
    return model.held.has(any.seq) ? { kind: "release", seq: any.seq } : { kind: "interrupt", seq: any.seq }
  }
  return { kind: "acquire", request: randomRequest(rand, seq) }
}
