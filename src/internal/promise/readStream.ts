/**
 * A Node `Readable` over the Effect Client's `stream`. The stream is pulled
 * once before the Readable is handed out, so the read lock is held by the
 * time `createReadStream` resolves. The lock is released when the Readable is
 * destroyed: after `end`, on error, on `destroy()` and on abort, before
 * `close` is emitted.
 *
 * As with the original (a Node `fs.ReadStream` opened once the lock was
 * granted), only bad arguments reject `createReadStream`: a missing file, a
 * directory, an I/O error or an abort is the resolved stream's `error`
 * event, and by then nothing is held.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { addAbortSignal, finished, Readable } from "node:stream"
import type { ClientService, ReadError, StreamOptions } from "../../Client.js"
import { fromCause, outOfRange } from "./errors.js"
import type { Encoding } from "./options.js"
import { runCleanup, runExit } from "./run.js"

type Pull = Effect.Effect<Option.Option<Chunk.Chunk<Uint8Array>>, ReadError>

interface Opened {
  readonly scope: Scope.CloseableScope
  readonly pull: Pull
  readonly first: Option.Option<Chunk.Chunk<Uint8Array>>
}

/** A pull that ends with `None` instead of failing with it. */
const endAsNone = <A, E>(pull: Effect.Effect<A, Option.Option<E>>): Effect.Effect<Option.Option<A>, E> =>
  Effect.matchEffect(pull, {
    onFailure: Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.fail }),
    onSuccess: Effect.succeedSome
  })

/** Starts the stream in a scope of its own and takes its first chunk; on failure or abort the scope is closed. */
const open = (stream: Stream.Stream<Uint8Array, ReadError>): Effect.Effect<Opened, ReadError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Scope.make(), (scope) =>
      restore(
        Effect.flatMap(Scope.extend(Stream.toPull(stream), scope), (toPull) => {
          const pull = endAsNone(toPull)
          return Effect.map(pull, (first): Opened => ({ scope, pull, first }))
        })
      ).pipe(Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)))
  )

/** @internal */
export interface ReadStreamOptions {
  readonly encoding: Encoding
  readonly start: number | undefined
  /** Inclusive, as in Node. */
  readonly end: number | undefined
  readonly highWaterMark: number | undefined
  readonly signal: AbortSignal | undefined
  readonly onError: (error: Error) => void
}

const DEFAULT_HIGH_WATER_MARK = 64 * 1024

/**
 * The largest chunk read at once, whatever the `highWaterMark`: a read
 * allocates its chunk before it knows how much the file holds, and a large
 * `highWaterMark` must not cost that much memory for a small file. (It still
 * sets how much the stream buffers ahead of its reader.)
 *
 * @internal
 */
export const READ_CHUNK_MAX = 1024 * 1024

// Refused before anything was taken: the call rejects, as the original's did.
const isArgumentError = (error: unknown): boolean =>
  Predicate.isTagged(error, "InvalidPathError") || Predicate.isTagged(error, "InvalidArgumentError")

/** @internal */
export const openReadStream = async (
  client: ClientService,
  path: string,
  options: ReadStreamOptions
): Promise<LockedReadStream> => {
  const { end, highWaterMark, start } = options
  if (start !== undefined && end !== undefined && start > end) {
    throw outOfRange("start", `<= "end" (here: ${end})`, start)
  }
  const streamOptions: { -readonly [K in keyof StreamOptions]: StreamOptions[K] } = {}
  if (start !== undefined) streamOptions.offset = start
  if (end !== undefined) streamOptions.bytesToRead = end - (start ?? 0) + 1
  streamOptions.chunkSize = Math.min(highWaterMark ?? DEFAULT_HIGH_WATER_MARK, READ_CHUNK_MAX)
  const exit = await runExit(open(client.stream(path, streamOptions)), options.signal)
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure) && isArgumentError(failure.value)) throw fromCause(exit.cause)
    return new LockedReadStream(path, fromCause(exit.cause, options.signal), options)
  }
  const readable = new LockedReadStream(path, exit.value, options)
  // An abort after the lock was taken destroys the stream (at once if the signal already fired).
  if (options.signal !== undefined) addAbortSignal(options.signal, readable)
  return readable
}

/**
 * Like `fs.ReadStream`, with `path` and `bytesRead`.
 *
 * @internal
 */
export class LockedReadStream extends Readable {
  bytesRead = 0
  /** Nothing when opening failed: the stream only emits that error. */
  readonly #opened: Opened | undefined
  readonly #onError: (error: Error) => void
  #first: Option.Option<Chunk.Chunk<Uint8Array>> | undefined
  #pulling: Fiber.RuntimeFiber<Option.Option<Chunk.Chunk<Uint8Array>>, ReadError> | undefined
  /** The chunk being pushed, and the index of its next element: the rest waits while `push` asks to stop. */
  #pending: ReadonlyArray<Uint8Array> = []
  #next = 0

  constructor(readonly path: string, opened: Opened | Error, options: ReadStreamOptions) {
    super({
      highWaterMark: options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
      ...(options.encoding !== null && options.encoding !== "buffer" ? { encoding: options.encoding } : {})
    })
    this.#onError = options.onError
    if (opened instanceof Error) {
      this.#opened = undefined
      // After the caller has its stream and has attached its handlers, as
      // Node's fs.ReadStream reports a failed open.
      setImmediate(() => this.destroy(opened))
      return
    }
    this.#opened = opened
    this.#first = opened.first
  }

  /** As `fs.ReadStream.pending`: the file is open (or failed to open) before the stream is handed out. */
  readonly pending = false

  /** As `fs.ReadStream.close`: destroys the stream, and calls back once it is closed. */
  close(callback?: (error?: Error | null) => void): void {
    if (typeof callback === "function") finished(this, callback)
    this.destroy()
  }

  override _read(): void {
    if (this.#opened === undefined) return
    // Later, as a read from the file would be: pushed now, within `read()`,
    // it would be returned together with what is buffered.
    if (this.#next < this.#pending.length) return queueMicrotask(() => this.#resume())
    this.#pull()
  }

  #resume(): void {
    if (this.destroyed) return
    // A re-entrant `read()` may have asked while the rest was being pushed:
    // then nothing is left, and the answer is the next pull.
    if (this.#next < this.#pending.length) this.#pushPending()
    else this.#pull()
  }

  #pull(): void {
    const first = this.#first
    if (first !== undefined) {
      this.#first = undefined
      return this.#deliver(first)
    }
    if (this.#pulling !== undefined || this.#opened === undefined) return
    const fiber = Effect.runFork(this.#opened.pull)
    this.#pulling = fiber
    fiber.addObserver((exit) => {
      this.#pulling = undefined
      if (this.destroyed) return
      if (Exit.isSuccess(exit)) this.#deliver(exit.value)
      else this.destroy(fromCause(exit.cause))
    })
  }

  #deliver(next: Option.Option<Chunk.Chunk<Uint8Array>>): void {
    if (Option.isNone(next)) {
      this.push(null)
      return
    }
    if (Chunk.isEmpty(next.value)) return this.#pull()
    this.#pending = Chunk.toReadonlyArray(next.value)
    this.#next = 0
    this.#pushPending()
  }

  /** Pushes pulled bytes until `push` says the buffer is full, as `fs.ReadStream` does. */
  #pushPending(): void {
    const pending = this.#pending
    while (this.#next < pending.length) {
      // Past the element before pushing it: `push` may run a 'data' handler
      // that calls `read()`, and so `_read`, before it returns.
      const bytes = pending[this.#next++]
      this.bytesRead += bytes.byteLength
      if (!this.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) return
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const opened = this.#opened
    if (opened === undefined) return callback(error)
    const release = () =>
      runCleanup(Scope.close(opened.scope, Exit.void), this.#onError, (failure) => {
        if (failure !== undefined) this.#onError(failure)
        callback(error)
      })
    const pulling = this.#pulling
    if (pulling === undefined) return release()
    pulling.unsafeInterruptAsFork(FiberId.none)
    pulling.addObserver(release)
  }
}
