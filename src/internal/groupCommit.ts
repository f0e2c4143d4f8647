/**
 * Group commit of directory fsyncs.
 *
 * Concurrent durable writers in one directory each need an fsync of that
 * directory after their rename. One fsync that *starts* after several renames
 * covers them all, so writers share fsyncs in batches:
 *
 * - A batch stays open until its fsync is issued: while the directory is being
 *   opened (a trip through the thread pool, long when the pool is busy),
 *   arriving writers join it. Once the fsync is issued, the batch is closed: a
 *   writer that arrives later was not necessarily renamed when the fsync
 *   started, and waits for another batch.
 * - How many batches of a directory may be in flight at once depends on what
 *   the fsyncs measure. Every fsync's latency (from the call to its
 *   completion: waiting for a pool thread, the syscall, the device flush) is
 *   kept over the last 32 fsyncs of this group commit. While the median stays
 *   within 1.5 times the minimum, fsyncs are not queueing behind each other:
 *   the device serves them side by side and the pool has room, so a new batch
 *   starts at once, and its writers need not wait for the fsync in flight to
 *   end. Once the median is above that, fsyncs queue (a device that flushes
 *   one at a time, or a pool whose threads are all blocked in fsyncs): there an
 *   early fsync would only wait in the same queue, and each extra one delays
 *   every other. So at most one batch per directory is in flight, and the
 *   writers arriving meanwhile share the next one, which starts when it ends.
 *   Until 8 fsyncs are measured, at most one is in flight.
 *
 * Every writer learns the outcome of the fsync that covered it as soon as that
 * fsync ends, and the next batch starts then too; the directory is closed
 * after, by the fiber that ran the batch (a close is one more trip through the
 * thread pool, and nothing durable depends on it).
 *
 * Why adapt (bench/durable.ts measures it, with an emulated device flush after
 * each fsync): with one fsync in flight per directory, writers that arrive
 * during it wait for it to end and then for their own, which loses to one
 * fsync per writer when the device overlaps flushes and the pool has threads
 * to spare (0.58x to 0.75x of the original library at 16 pool threads, before
 * this design); letting any number start loses the batching where it matters
 * most, on a device that flushes one at a time.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"

/** Latencies kept: the last this many fsyncs. */
const WINDOW = 32
/** Fsyncs measured before more than one may be in flight per directory. */
const MIN_SAMPLES = 8
/** Median latency over the minimum at or below which fsyncs count as not queueing. */
const QUEUEING = 1.5

interface Batch {
  /** Made when a second writer joins, or when the batch waits for its turn. */
  done: Deferred.Deferred<void, unknown> | undefined
}

interface Directory {
  /** Batches opening or syncing. */
  started: number
  /** The started batch whose fsync is not issued yet: arriving writers join it. */
  opening: Batch | undefined
  /** The batch waiting until it may start (only while one at a time is allowed). */
  waiting: Batch | undefined
}

/**
 * How the fsyncs of a group commit behave: the latencies of the last `WINDOW`
 * fsyncs, in milliseconds, and whether they say fsyncs are queueing.
 *
 * @internal
 */
export interface Latencies {
  readonly samples: Array<number>
  next: number
  /** Whether more than one batch per directory may be in flight. */
  overlap: boolean
}

const record = (latencies: Latencies, ms: number): void => {
  const { samples } = latencies
  if (samples.length < WINDOW) samples.push(ms)
  else samples[latencies.next] = ms
  latencies.next = (latencies.next + 1) % WINDOW
  if (samples.length < MIN_SAMPLES) return
  const sorted = [...samples].sort((a, b) => a - b)
  latencies.overlap = sorted[sorted.length >> 1] <= QUEUEING * sorted[0]
}

/**
 * Wraps the fsync of a directory so that concurrent calls for one directory
 * share fsyncs. `open(dir)` prepares one fsync (opens the directory in the
 * given scope) and returns it; the batch closes when it is run. The error type
 * is preserved for every caller. `latencies` is exposed for tests.
 *
 * @internal
 */
export const make = <E>(
  open: (dir: string) => Effect.Effect<Effect.Effect<void, E>, E, Scope.Scope>,
  latencies: Latencies = { samples: [], next: 0, overlap: false }
): (dir: string) => Effect.Effect<void, E> => {
  const directories = new Map<string, Directory>()

  const mayStart = (state: Directory) => state.started === 0 || latencies.overlap

  /** Runs `batch` to its end (uninterruptibly: other writers wait on it) and tells its writers. */
  const run = (dir: string, state: Directory, batch: Batch): Effect.Effect<void, E> => {
    state.started++
    state.opening = batch
    return Effect.uninterruptible(Effect.flatMap(Scope.make(), (scope) => {
      const synced = Effect.flatMap(Scope.extend(open(dir), scope), (sync) =>
        Effect.suspend(() => {
          // The fsync is issued now: writers that arrive from here on wait for another batch.
          if (state.opening === batch) state.opening = undefined
          return Effect.flatMap(Clock.currentTimeNanos, (started) =>
            Effect.tap(sync, () =>
              Effect.map(Clock.currentTimeNanos, (ended) =>
                record(latencies, Number(ended - started) / 1e6))))
        }))
      return Effect.flatMap(Effect.exit(synced), (exit) => {
        state.started--
        if (state.opening === batch) state.opening = undefined
        let next: Batch | undefined
        if (state.waiting !== undefined && mayStart(state)) {
          next = state.waiting
          state.waiting = undefined
        }
        if (state.started === 0 && next === undefined && state.waiting === undefined) directories.delete(dir)
        return (batch.done === undefined ? Effect.void : Deferred.done(batch.done, exit as Exit.Exit<void, unknown>))
          .pipe(
            // The next batch runs on its own fiber: its writers wait on its
            // Deferred, and this caller is done.
            Effect.zipRight(next === undefined ? Effect.void : Effect.forkDaemon(run(dir, state, next))),
            // The directory is closed once its writers know the outcome and
            // the next batch has started: the close is not on their path.
            Effect.zipRight(Scope.close(scope, exit)),
            Effect.zipRight(exit)
          )
      })
    }))
  }

  const join = (batch: Batch): Effect.Effect<void, E> =>
    Deferred.await(batch.done ??= Deferred.unsafeMake<void, unknown>(FiberId.none)) as Effect.Effect<void, E>

  // The bookkeeping and the start of a batch are one uninterruptible step
  // (`run` records the batch as it is called): an interruption between them
  // would leave a batch recorded that no fiber runs, and every later writer of
  // the directory waiting for it. Only waiting for another's batch is
  // interruptible.
  return (dir) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        let state = directories.get(dir)
        if (state === undefined) {
          state = { started: 0, opening: undefined, waiting: undefined }
          directories.set(dir, state)
        }
        if (state.opening !== undefined) return restore(join(state.opening))
        if (state.waiting !== undefined) {
          const waiting = state.waiting
          if (!mayStart(state)) return restore(join(waiting))
          // Latencies now allow it to start: it starts with this writer.
          state.waiting = undefined
          return Effect.zipRight(Effect.forkDaemon(run(dir, state, waiting)), restore(join(waiting)))
        }
        if (mayStart(state)) return run(dir, state, { done: undefined })
        const batch: Batch = { done: undefined }
        state.waiting = batch
        return restore(join(batch))
      })
    )
}
