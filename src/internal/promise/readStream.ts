/**
 * A Node `Readable` over the Effect Client's `stream`. The stream is pulled
 * once before the Readable is handed out, so the read lock is held (and a
 * missing file is reported) by the time `createReadStream` resolves. The lock
 * is released when the Readable is destroyed: after `end`, on error, on
 * `destroy()` and on abort, before `close` is emitted.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { addAbortSignal, Readable } from "node:stream"
import type { ClientService, ReadError, StreamOptions } from "../../Client.js"
import { fromCause, outOfRange } from "./errors.js"
import type { Encoding } from "./options.js"
import { run, runCleanup } from "./run.js"

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

/** @internal */
export const openReadStream = async (
  client: ClientService,
  path: string,
  options: ReadStreamOptions
): Promise<Readable> => {
  const { end, highWaterMark, start } = options
  if (start !== undefined && end !== undefined && start > end) {
    throw outOfRange("start", `<= "end" (here: ${end})`, start)
  }
  const streamOptions: { -readonly [K in keyof StreamOptions]: StreamOptions[K] } = {}
  if (start !== undefined) streamOptions.offset = start
  if (end !== undefined) streamOptions.bytesToRead = end - (start ?? 0) + 1
  streamOptions.chunkSize = highWaterMark ?? DEFAULT_HIGH_WATER_MARK
  const opened = await run(open(client.stream(path, streamOptions)), options.signal)
  const readable = new LockedReadStream(path, opened, options)
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
  readonly #opened: Opened
  readonly #onError: (error: Error) => void
  #first: Option.Option<Chunk.Chunk<Uint8Array>> | undefined
  #pulling: Fiber.RuntimeFiber<Option.Option<Chunk.Chunk<Uint8Array>>, ReadError> | undefined
  /** The chunk being pushed, and the index of its next element: the rest waits while `push` asks to stop. */
  #pending: ReadonlyArray<Uint8Array> = []
  #next = 0

  constructor(readonly path: string, opened: Opened, options: ReadStreamOptions) {
    super({
      highWaterMark: options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
      ...(options.encoding !== null && options.encoding !== "buffer" ? { encoding: options.encoding } : {})
    })
    this.#opened = opened
    this.#first = opened.first
    this.#onError = options.onError
  }

  override _read(): void {
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
    if (this.#pulling !== undefined) return
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
    const release = () =>
      runCleanup(Scope.close(this.#opened.scope, Exit.void), this.#onError, (failure) => {
        if (failure !== undefined) this.#onError(failure)
        callback(error)
      })
    const pulling = this.#pulling
    if (pulling === undefined) return release()
    pulling.unsafeInterruptAsFork(FiberId.none)
    pulling.addObserver(release)
  }
}
