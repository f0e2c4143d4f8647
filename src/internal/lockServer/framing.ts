/**
 * Newline-delimited JSON framing for the lock server's connections, in linear
 * time and with a bound on the frame size.
 *
 * The ndjson parser of @effect/rpc appends every chunk to one string and
 * searches it from the start on each read: a line that never ends costs the
 * square of its length (a 16 MB line took the server 7 to 9 s of CPU). Here
 * each byte is searched for a newline once, an unfinished frame is kept as
 * the list of its chunks, and a frame larger than the bound is refused as soon
 * as it is known to be (before its end arrives), so a peer cannot make the
 * other side hold or scan more than the bound for it.
 *
 * @internal
 */
import * as RpcSerialization from "@effect/rpc/RpcSerialization"

/**
 * The largest frame either side accepts: far above any real request (a
 * `lockAll` of tens of thousands of paths), far below what would let one
 * connection exhaust the server's memory.
 *
 * @internal
 */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024

/**
 * A frame exceeded the bound: the connection is dropped.
 *
 * @internal
 */
export class FrameTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`a message exceeded ${limit} bytes`)
  }
}

/** @internal */
export interface Framer {
  /**
   * The messages completed by `chunk`, parsed. Throws `FrameTooLarge`, or a
   * `SyntaxError` for a frame that is not JSON.
   */
  readonly decode: (chunk: Uint8Array | string) => ReadonlyArray<unknown>
  /** One message (or a batch) as newline-terminated JSON; `undefined` for an empty batch. */
  readonly encode: (message: unknown) => Uint8Array | string | undefined
}

const NEWLINE = 0x0a

const concat = (parts: ReadonlyArray<Uint8Array>, last: Uint8Array, size: number): Uint8Array => {
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  out.set(last, offset)
  return out
}

/** @internal */
export const makeFramer = (maxFrameBytes: number = MAX_FRAME_BYTES): Framer => {
  const encoder = new TextEncoder()
  const decoder = new TextDecoder()
  // Encoding is stateless: the library's own keeps the wire format identical.
  const { encode } = RpcSerialization.ndjson.unsafeMake()
  let parts: Array<Uint8Array> = []
  let pending = 0

  const decode = (chunk: Uint8Array | string): ReadonlyArray<unknown> => {
    const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk
    const messages: Array<unknown> = []
    let start = 0
    let newline = bytes.indexOf(NEWLINE, start)
    while (newline !== -1) {
      const size = pending + newline - start
      if (size > maxFrameBytes) throw new FrameTooLarge(maxFrameBytes)
      const tail = bytes.subarray(start, newline)
      const frame = pending === 0 ? tail : concat(parts, tail, size)
      parts = []
      pending = 0
      if (frame.length > 0) messages.push(JSON.parse(decoder.decode(frame)))
      start = newline + 1
      newline = bytes.indexOf(NEWLINE, start)
    }
    const rest = bytes.length - start
    if (rest > 0) {
      if (pending + rest > maxFrameBytes) throw new FrameTooLarge(maxFrameBytes)
      // A copy: a view would keep the whole chunk alive for a few bytes of it.
      parts.push(bytes.slice(start))
      pending += rest
    }
    return messages
  }

  return { decode, encode }
}
