/** A small seeded PRNG (mulberry32): the same seed gives the same sequence. */
export const mulberry32 = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Seeds and step counts for randomised tests. `seedVar` replays one seed;
 * `seedsVar` raises the number of seeds; `STEPS` the number of steps.
 */
export const seedsFromEnv = (options: {
  readonly seeds: number
  readonly steps: number
  readonly seedVar: string
  readonly seedsVar: string
}): { seeds: Array<number>; steps: number } => {
  const one = process.env[options.seedVar]
  const count = Number(process.env[options.seedsVar] ?? options.seeds)
  const steps = Number(process.env.STEPS ?? options.steps)
  const base = Number(process.env.SEED_BASE ?? 1)
  return {
    seeds: one !== undefined ? [Number(one)] : Array.from({ length: count }, (_, i) => base + i),
    steps
  }
}

/** `size` bytes from a small linear congruential generator: content that a misplaced byte would change. */
export const pseudoRandom = (size: number, seed: number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  let x = (seed * 2654435761 + 1) >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1664525 + 1013904223) >>> 0
    out[i] = x >>> 24
  }
  return out
}
