/**
 * The wire protocol of the lock server: one `RpcGroup` spoken over a Unix
 * domain socket or TCP with newline-delimited JSON framing.
 *
 * - `Hello` opens every connection: it carries the protocol version (a
 *   mismatch is refused) and the heartbeat deadline the client wants.
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
 * Liveness is the protocol's own `Ping`/`Pong`: the client pings every
 * heartbeat interval; the server drops a connection that stayed silent longer
 * than its deadline.
 *
 * @internal
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Schema from "effect/Schema"
import { DeadlockError, InvalidArgumentError, InvalidPathError } from "../../PersistenceError.js"

/**
 * Bumped on any incompatible change of the messages below.
 *
 * @internal
 */
export const PROTOCOL_VERSION = 1

/** @internal */
export const serialization: RpcSerialization.RpcSerialization["Type"] = RpcSerialization.ndjson

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

/** @internal */
export const Hello = Rpc.make("Hello", {
  payload: {
    version: Schema.Number,
    /** Milliseconds of silence after which the server drops this connection. */
    heartbeatDeadline: Schema.Number
  },
  success: Schema.Struct({ version: Schema.Number }),
  error: VersionMismatch
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
export class LockRpcs extends RpcGroup.make(Hello, Acquire, Release, Stats) {}
