/**
 * An open file as a `Stream` of chunks, read over the platform's `File.read`.
 *
 * The platform's own `FileSystem.stream` makes one read, one buffer and one
 * stream element per chunk, behind a 16-chunk read-ahead queue. Here a read
 * fills a block that starts at one chunk and doubles (while reads fill it) up
 * to `READ_BLOCK_MAX` or `MAX_VIEWS` chunks, and the block goes downstream as
 * one `Chunk` of `chunkSize` views. A small file costs what it did; a large
 * one, with 64 KiB chunks, one read and one stream step per MiB (the
 * README's Performance section has the measured throughput).
 *
 * @internal
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/** @internal */
export const DEFAULT_CHUNK_SIZE = 64 * 1024

/**
 * The largest `chunkSize`: 1 GiB, the bound Node's streams put on
 * `highWaterMark` (a chunk is one `Uint8Array`, allocated whole).
 *
 * @internal
 */
export const CHUNK_SIZE_MAX = 1024 * 1024 * 1024

/**
 * The largest read (unless `chunkSize` is larger). A chunk kept downstream
 * keeps its block alive, so the block stays small enough for that to be cheap.
 *
 * @internal
 */
export const READ_BLOCK_MAX = 1024 * 1024

/**
 * At most this many views per block: each costs a `Uint8Array` object, which
 * for a small `chunkSize` would outweigh the bytes (1 MiB of 1-byte views is
 * about 100 MB of heap).
 *
 * @internal
 */
export const MAX_VIEWS = 64

/**
 * `n` bytes read into `block`, cut into views of `chunkSize` bytes. A block
 * mostly empty (the end of the file) is copied first, so that the views do
 * not pin the unused part.
 */
const views = (block: Uint8Array, n: number, chunkSize: number): Chunk.Chunk<Uint8Array> => {
  const bytes = n === block.length ? block : n * 2 < block.length ? block.slice(0, n) : block.subarray(0, n)
  if (n <= chunkSize) return Chunk.of(bytes)
  const out: Array<Uint8Array> = []
  for (let at = 0; at < n; at += chunkSize) out.push(bytes.subarray(at, Math.min(n, at + chunkSize)))
  return Chunk.unsafeFromArray(out)
}

/**
 * Reads `file` from its current position to its end, or `bytesToRead` bytes.
 * The caller opens the file (and seeks) in a scope that outlives the stream.
 *
 * @internal
 */
export const fromFile = (
  file: FileSystem.File,
  options: {
    readonly offset?: number | undefined
    readonly bytesToRead?: number | undefined
    readonly chunkSize?: number | undefined
  }
): Stream.Stream<Uint8Array, PlatformError> => {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
  // A whole number of chunks (so that only the last chunk of a regular file
  // is short), and at most MAX_VIEWS of them.
  const largest = Math.min(MAX_VIEWS, Math.max(1, Math.floor(READ_BLOCK_MAX / chunkSize))) * chunkSize
  const read = (size: number) =>
    Effect.suspend(() => {
      const block = new Uint8Array(size)
      return Effect.map(file.read(block), (n) => ({ block, n: Number(n) }))
    })
  // `left` is what the file holds past the reads so far, by its size when
  // the stream started: a read is never larger. Past it (to find the end,
  // bytes appended since, or the data of a file whose size says nothing), a
  // read is at most `beyond`, which starts at DEFAULT_CHUNK_SIZE and doubles
  // while reads fill it. So a chunk size larger than the file costs what the
  // file holds, not the chunk size.
  const loop = (
    size: number,
    remaining: number,
    left: number,
    beyond: number
  ): Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, PlatformError, unknown, void, unknown> =>
    remaining <= 0 ?
      Channel.void :
      Channel.flatMap(read(Math.min(size, remaining, left > 0 ? left : beyond)), ({ block, n }) =>
        n === 0 ?
          Channel.void :
          Channel.zipRight(
            Channel.write(views(block, n, chunkSize)),
            // Grows only while reads fill their block (short reads: the end
            // of the file, or a file that gives little at a time).
            n === block.length ?
              loop(
                Math.min(size * 2, largest),
                remaining - n,
                left - n,
                left > 0 ? beyond : Math.min(beyond * 2, largest)
              ) :
              loop(size, remaining - n, left - n, beyond)
          ))
  const start = (left: number) =>
    Stream.fromChannel(loop(chunkSize, options.bytesToRead ?? Infinity, left, Math.min(chunkSize, DEFAULT_CHUNK_SIZE)))
  // Up to DEFAULT_CHUNK_SIZE, the first read is the size it always was; past
  // it, the file's size (one fstat) bounds the allocation.
  if (chunkSize <= DEFAULT_CHUNK_SIZE || (options.bytesToRead ?? Infinity) <= DEFAULT_CHUNK_SIZE) {
    return start(Infinity)
  }
  return Stream.unwrap(Effect.map(file.stat, (info) => start(Number(info.size) - (options.offset ?? 0))))
}
