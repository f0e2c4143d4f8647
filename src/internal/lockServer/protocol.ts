/**
 * The wire protocol of the lock server: one `RpcGroup` spoken over a Unix
 * domain socket or TCP with newline-delimited JSON framing.
 *
 * - `Hello` opens every connection: it carries the protocol version (a
 *   mismatch is refused), the heartbeat deadline the client wants and a nonce.
 *   The server answers with the deadline it will apply (no longer than its
 *   own maximum, which bounds how long a client may count on a lease after
 *   the server died: see `ServerOptions.gracePeriod`). A server configured
 *   with a secret also answers with a challenge (its own nonce) and the
 *   client must then `Authenticate` (see ./auth.ts).
 * - `Authenticate` carries the client's proof that it knows the secret and
 *   returns the server's proof, which the client checks in turn.
 * - Until the handshake completes the server accepts nothing else: any other
 *   message, or more than a few kilobytes, drops the connection.
 * - `Acquire` is a streaming request: its first element is the grant, then the
 *   stream stays open while the lock is held. The server runs the in-memory
 *   `lock` in the request's scope, which closes when the request ends or the
 *   connection drops, so a client that dies releases everything it held.
 * - `Release` ends one `Acquire` (interrupts it: a waiting request leaves the
 *   queue, a held lock is released); the client then waits for the end of
 *   that stream, which the server sends once the lock left its table, so a
 *   release is confirmed.
 * - `Stats` reads the server's table.
 *
 * Frames are newline-delimited JSON of at most `MAX_FRAME_BYTES` (./framing.ts).
 *
 * Liveness is the protocol's own `Ping`/`Pong`: the client pings every
 * heartbeat interval; the server drops a connection that stayed silent longer
 * than its deadline.
 *
 * @internal
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { DeadlockError, InvalidArgumentError, InvalidPathError } from "../../PersistenceError.js"
import { MAX_TIMER } from "../input.js"

/**
 * Bumped on any incompatible change of the messages below.
 *
 * @internal
 */
export const PROTOCOL_VERSION = 3

/**
 * Heartbeat deadlines, in milliseconds: below the minimum a busy event loop
 * would drop healthy connections; above the maximum a timer cannot wait.
 *
 * @internal
 */
export const MIN_DEADLINE = 10

/** @internal */
export const MAX_DEADLINE = MAX_TIMER

/**
 * The most requests (waiting or held) one connection may have open: each
 * costs the server tens of kilobytes, and a peer must not grow its memory
 * without bound. The library's client refuses a request past it itself, so
 * only another client meets the server's refusal.
 *
 * @internal
 */
export const MAX_OPEN_REQUESTS = 1024

/**
 * The server's answer to a `Hello` of another protocol version.
 *
 * @internal
 */
export class VersionMismatch
  extends Schema.TaggedError<VersionMismatch>("effect-persistence/LockServer/VersionMismatch")(
    "VersionMismatch",
    { server: Schema.Number, client: Schema.Number }
  )
{}

/**
 * The server's answer to a proof that does not match its secret (or to a
 * handshake out of order). The server drops the connection after sending it.
 *
 * @internal
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>("effect-persistence/LockServer/Unauthorized")(
  "Unauthorized",
  { detail: Schema.String }
) {}

/** @internal */
export const Hello = Rpc.make("Hello", {
  payload: {
    version: Schema.Number,
    /** Milliseconds of silence after which the server drops this connection. */
    heartbeatDeadline: Schema.Number,
    /**
     * The client's random nonce (hex), bound into both proofs. Optional in the
     * schema so that a client of another version still gets `VersionMismatch`.
     */
    nonce: Schema.optional(Schema.String)
  },
  success: Schema.Struct({
    version: Schema.Number,
    /**
     * The heartbeat deadline the server applies, in milliseconds: the one
     * asked for, or less. The client must count its lease with it.
     */
    heartbeatDeadline: Schema.Number,
    /** Present when the server has a secret: its nonce; the client must `Authenticate`. */
    challenge: Schema.optional(Schema.String)
  }),
  error: VersionMismatch
})

/** @internal */
export const Authenticate = Rpc.make("Authenticate", {
  payload: { proof: Schema.String },
  success: Schema.Struct({ proof: Schema.String }),
  error: Unauthorized
})

/** @internal */
export const Grant = Schema.Struct({
  id: Schema.Number,
  mode: Schema.Literal("read", "write"),
  paths: Schema.Array(Schema.String)
})

/** @internal */
export type Grant = typeof Grant.Type

/** @internal */
export const Acquire = Rpc.make("Acquire", {
  payload: {
    /** Chosen by the client, unique per connection: names the request in `Release`. */
    ticket: Schema.Number,
    mode: Schema.Literal("read", "write"),
    paths: Schema.Array(Schema.String),
    /** `lockAll` (one combined request) rather than `lock`. */
    all: Schema.Boolean,
    /**
     * With `all`: the mode of each path (a combined request that reads some).
     * Absent, every path is written; a server that predates it writes them all.
     */
    modes: Schema.optional(Schema.Array(Schema.Literal("read", "write")))
  },
  success: Grant,
  error: Schema.Union(InvalidPathError, InvalidArgumentError, DeadlockError),
  stream: true
})

/** @internal */
export const Release = Rpc.make("Release", { payload: { ticket: Schema.Number } })

/** @internal */
export const Stats = Rpc.make("Stats", {
  success: Schema.Struct({ held: Schema.Number, pending: Schema.Number, nodes: Schema.Number })
})

/** @internal */
export class LockRpcs extends RpcGroup.make(Hello, Authenticate, Acquire, Release, Stats) {}
