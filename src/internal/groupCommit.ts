/**
 * Group commit of directory fsyncs.
 *
 * Concurrent durable writers in one directory each need an fsync of that
 * directory after their rename. One fsync that *starts* after several renames
 * covers them all. Per directory, at most one fsync is in flight; a writer that
 * arrives while one is in flight joins the next batch (never the one in
 * flight: it may have started before this writer's rename), and the next batch
 * starts as soon as the one in flight ends. Every writer learns the outcome of
 * the fsync that covered it.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

interface Directory {
  /** Whether an fsync is in flight. */
  running: boolean
  /** Writers waiting for the next fsync. */
  next: Deferred.Deferred<void, unknown> | undefined
}

/**
 * Wraps a directory fsync so that concurrent calls for one directory share
 * fsyncs. The error type of `sync` is preserved for every caller.
 *
 * @internal
 */
export const make = <E>(
  sync: (dir: string) => Effect.Effect<void, E>
): (dir: string) => Effect.Effect<void, E> => {
  const directories = new Map<string, Directory>()

  const run = (
    dir: string,
    state: Directory,
    batch: Deferred.Deferred<void, unknown> | undefined
  ): Effect.Effect<void, E> =>
    Effect.uninterruptible(
      Effect.flatMap(Effect.exit(sync(dir)), (exit) => {
        const waiting = state.next
        state.next = undefined
        state.running = waiting !== undefined
        if (waiting === undefined) directories.delete(dir)
        return (batch === undefined ? Effect.void : Deferred.done(batch, exit as Exit.Exit<void, unknown>)).pipe(
          // The next batch starts now, on its own fiber: its writers wait on
          // its Deferred, and this caller is done.
          Effect.zipRight(waiting === undefined ? Effect.void : Effect.forkDaemon(run(dir, state, waiting))),
          Effect.zipRight(exit)
        )
      })
    )

  return (dir) =>
    Effect.suspend(() => {
      let state = directories.get(dir)
      if (state === undefined) {
        state = { running: false, next: undefined }
        directories.set(dir, state)
      }
      if (!state.running) {
        state.running = true
        return run(dir, state, undefined)
      }
      const batch = state.next ?? (state.next = Deferred.unsafeMake<void, unknown>(FiberId.none))
      return Deferred.await(batch) as Effect.Effect<void, E>
    })
}
