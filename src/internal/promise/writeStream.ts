/**
 * A Node `Writable` feeding the Effect Client's `sink`. The sink holds the
 * write lock and writes to a temp file; when the Writable ends, the sink
 * commits (rename, fsync in durable mode) and only then does the Writable
 * emit `finish`. Destroying the Writable (or aborting its signal) before that
 * interrupts the sink: the temp file is removed, the target keeps its old
 * content, and the lock is released before `close`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { Writable } from "node:stream"
import type { ClientService, WriteError } from "../../Client.js"
import type { CommitError } from "../../PersistenceError.js"
import { commitObserver } from "../atomic.js"
import { abortError, fromCause, streamDestroyed } from "./errors.js"
import { forkNow, settledExit } from "./run.js"

type Callback = (error?: Error | null) => void

/**
 * A rendezvous between the Writable and the sink: the sink pulls one chunk at
 * a time, and a chunk's write callback is called when the sink pulls the next
 * one, that is once the chunk is in the temp file. So the Writable's own
 * buffer gives back-pressure and a failed write reaches its callback.
 */
class ChunkSource {
  #next: { readonly chunk: Uint8Array; readonly done: Callback } | undefined
  #writing: Callback | undefined
  #ended = false
  #waiter: ((effect: Effect.Effect<Uint8Array, Option.Option<never>>) => void) | undefined

  offer(chunk: Uint8Array, done: Callback): void {
    const waiter = this.#waiter
    if (waiter === undefined) {
      this.#next = { chunk, done }
      return
    }
    this.#waiter = undefined
    this.#writing = done
    waiter(Effect.succeed(chunk))
  }

  end(): void {
    this.#ended = true
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.(Effect.fail(Option.none()))
  }

  /** The callback of the chunk being written (or offered), which a failure should reach. */
  takeCallback(): Callback | undefined {
    const done = this.#writing ?? this.#next?.done
    this.#writing = undefined
    this.#next = undefined
    return done
  }

  readonly pull: Effect.Effect<Uint8Array, Option.Option<never>> = Effect.async((resume) => {
    // The previous chunk is written: acknowledge it once the state is settled,
    // because the callback may offer the next chunk synchronously.
    const written = this.#writing
    this.#writing = undefined
    const next = this.#next
    if (next !== undefined) {
      this.#next = undefined
      this.#writing = next.done
      resume(Effect.succeed(next.chunk))
    } else if (this.#ended) {
      resume(Effect.fail(Option.none()))
    } else {
      this.#waiter = resume
    }
    written?.()
    return Effect.sync(() => {
      this.#waiter = undefined
    })
  })

  readonly stream: Stream.Stream<Uint8Array> = Stream.repeatEffectOption(this.pull)
}

/** @internal */
export interface WriteStreamOptions {
  readonly encoding: BufferEncoding
  readonly mode: number | undefined
  readonly highWaterMark: number | undefined
  readonly signal: AbortSignal | undefined
  readonly onError: (error: Error) => void
}

type Run = Fiber.RuntimeFiber<void, WriteError>

/**
 * Resolves once the write lock is held and the temp file is open: the sink
 * pulls its first input only after both.
 *
 * @internal
 */
export const openWriteStream = (client: ClientService, path: string, options: WriteStreamOptions): Promise<Writable> =>
  new Promise((resolve, reject) => {
    const { signal } = options
    if (signal?.aborted) return reject(abortError(signal))
    const source = new ChunkSource()
    let writable: LockedWriteStream | undefined
    let opened = false
    let started = false
    // The fiber runs at once (the lock request is enqueued in call order), so
    // in principle the sink could open before `fiber` is assigned: resolve
    // once both have happened.
    const open = () => {
      if (!opened || !started || writable !== undefined) return
      signal?.removeEventListener("abort", onAbort)
      const stream = new LockedWriteStream(path, source, fiber, options, () => commit)
      writable = stream
      if (signal !== undefined) {
        const abort = () => stream.abort(signal)
        signal.addEventListener("abort", abort, { once: true })
        stream.once("close", () => signal.removeEventListener("abort", abort))
      }
      resolve(writable)
    }
    const onAbort = () => fiber.unsafeInterruptAsFork(FiberId.none)
    const ready = Stream.execute(Effect.sync(() => {
      opened = true
      open()
    }))
    const sink = client.sink(path, options.mode === undefined ? {} : { mode: options.mode })
    let commit: { readonly failure: CommitError | undefined } | undefined
    const fiber: Run = forkNow(
      Effect.locally(
        Stream.run(Stream.concat(ready, source.stream), sink),
        commitObserver,
        (failure) => commit = { failure }
      )
    )
    started = true
    signal?.addEventListener("abort", onAbort, { once: true })
    open()
    fiber.addObserver((exit) => {
      if (writable !== undefined) return
      signal?.removeEventListener("abort", onAbort)
      reject(Exit.isFailure(exit) ? fromCause(exit.cause, signal) : new Error("write stream ended before it opened"))
    })
  })

/**
 * Like `fs.WriteStream`, with `path` and `bytesWritten` (bytes in the temp
 * file so far).
 *
 * @internal
 */
export class LockedWriteStream extends Writable {
  bytesWritten = 0
  readonly #source: ChunkSource
  readonly #fiber: Run
  readonly #onError: (error: Error) => void
  /** How the commit ended, once the sink has renamed (see `commitObserver`). */
  readonly #commit: () => { readonly failure: CommitError | undefined } | undefined
  #final: Callback | undefined
  /** The signal that aborted the sink, if one did. */
  #aborted: AbortSignal | undefined

  constructor(
    readonly path: string,
    source: ChunkSource,
    fiber: Run,
    options: WriteStreamOptions,
    commit: () => { readonly failure: CommitError | undefined } | undefined
  ) {
    super({
      defaultEncoding: options.encoding,
      ...(options.highWaterMark !== undefined ? { highWaterMark: options.highWaterMark } : {})
    })
    this.#source = source
    this.#fiber = fiber
    this.#onError = options.onError
    this.#commit = commit
    fiber.addObserver((exit) => this.#settle(exit))
  }

  /**
   * The signal fired. Before the rename the sink is interrupted (the temp
   * file is removed, the lock released) and the stream then fails with an
   * `AbortError`, as `addAbortSignal` would make it; once the rename has
   * happened nothing can undo it, and the stream finishes.
   */
  abort(signal: AbortSignal): void {
    // The sink has ended: its outcome is settled (`finish` may be on its way).
    if (this.destroyed || this.#fiber.unsafePoll() !== null) return
    this.#aborted = signal
    this.#fiber.unsafeInterruptAsFork(FiberId.none)
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#source.offer(chunk, (error) => {
      if (error == null) this.bytesWritten += chunk.byteLength
      callback(error)
    })
  }

  override _final(callback: Callback): void {
    this.#final = callback
    this.#source.end()
  }

  /** The sink ended: committed (then `finish`), failed (the pending callback gets the error) or interrupted. */
  #settle(ended: Exit.Exit<void, WriteError>): void {
    // Interrupted once committed (an abort during the commit): the commit's outcome counts.
    const exit = settledExit(ended, this.#commit())
    if (Exit.isSuccess(exit)) {
      const final = this.#final
      this.#final = undefined
      return final?.()
    }
    if (this.destroyed) return
    const error = fromCause(exit.cause, this.#aborted)
    const pending = this.#source.takeCallback() ?? this.#final
    this.#final = undefined
    if (pending !== undefined) pending(error)
    else this.destroy(error)
  }

  override _destroy(error: Error | null, callback: Callback): void {
    const fiber = this.#fiber
    const done = fiber.unsafePoll()
    if (done !== null) {
      this.#abandon(error)
      return callback(error)
    }
    // Before the commit: the sink is interrupted, removes the temp file and
    // releases the lock. (Once the commit has begun it completes.)
    fiber.unsafeInterruptAsFork(FiberId.none)
    fiber.addObserver((ended) => {
      // A commit that failed after its rename is reported even to a destroyer.
      const exit = settledExit(ended, this.#commit())
      const failure = Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? fromCause(exit.cause) : undefined
      if (failure !== undefined && error !== null) this.#onError(failure)
      this.#abandon(error ?? failure ?? null)
      callback(error ?? failure)
    })
  }

  /**
   * The write the sink had taken (or been offered) will never be acknowledged:
   * its callback gets the error, as Node's streams and the original give one
   * (the destroy error, an `AbortError` for an abort, else
   * `ERR_STREAM_DESTROYED`). Node calls back the writes queued behind it only
   * once this one has its answer: without it they would wait forever. Called
   * once the sink has ended, so a caller told of the failure finds the temp
   * file removed and the lock free.
   */
  #abandon(error: Error | null): void {
    this.#source.takeCallback()?.(error ?? streamDestroyed("write"))
  }
}
