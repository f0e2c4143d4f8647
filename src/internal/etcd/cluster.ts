/**
 * The etcd cluster as the lock manager talks to it: one `etcd3` client over
 * the endpoints, every call bounded in time and retried on another member
 * while it may still succeed, and failures sorted into the reasons of
 * `RemoteLockError`.
 *
 * The client's own fault handling (three retries, then a circuit breaker that
 * refuses a member for five seconds) is replaced by this module's: every call
 * the manager makes is safe to repeat (the enqueue transaction is conditional
 * on its key not existing yet, deletes and reads are idempotent, a repeated
 * lease grant leaves an unused lease that expires), so a call is retried on
 * any member until its deadline, and a member that came back is used at once.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCAlreadyExistsError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  GRPCNotFoundError,
  GRPCNotImplementedError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  GRPCUnauthenticatedError,
  type IOptions
} from "etcd3"
import type * as RemoteLink from "../remoteLink.js"

/**
 * A `RemoteLockError` without its operation.
 *
 * @internal
 */
export type Failure = RemoteLink.Failure

/**
 * What the call options of a gRPC call need: when to give up.
 *
 * @internal
 */
export interface CallOptions {
  readonly deadline: Date
}

/**
 * @internal
 */
export interface Cluster {
  /** `etcd:<endpoints>`, as `RemoteLockError.address` shows it. */
  readonly address: string
  /**
   * Runs `f` against the current member, again after a failure that may
   * pass (on the next member at once, or after a pause once every member
   * failed in a row), until `budget` milliseconds (default: the request
   * timeout) have gone by. `f` must be safe to repeat. `inDoubt` is told of
   * each failed attempt that may still take effect later (one that was sent
   * and not answered in time: a frozen member may pass it on when it runs
   * again), however the call ends.
   */
  readonly call: <A>(
    what: string,
    f: (client: Etcd3, options: CallOptions) => Promise<A>,
    budget?: number,
    inDoubt?: () => void
  ) => Effect.Effect<A, Failure>
  /** The client of the current member, for streams; `failed` with it when its stream fails. */
  readonly current: () => Etcd3
  /** Moves on to the next member if `client` is still the current one. */
  readonly failed: (client: Etcd3) => void
  /** One attempt's deadline: long enough for a healthy cluster, short enough to try another member in time. */
  readonly attemptTimeout: number
}

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>

/**
 * Runs the call once: the retries are this module's. `etcd3` only calls
 * `execute` and ignores the context.
 */
const passThrough = {
  execute: <T>(fn: (context: never) => PromiseLike<T> | T) =>
    new Promise<T>((resolve) => resolve(fn({ signal: new AbortController().signal, attempt: 1 } as never)))
} as unknown as Policy

/** Errors after which a repeated call can only fail the same way. */
const rejections: ReadonlyArray<new(...args: Array<any>) => Error> = [
  EtcdPermissionDeniedError,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  GRPCUnauthenticatedError,
  GRPCInvalidArgumentError,
  GRPCFailedPreconditionError,
  GRPCOutOfRangeError,
  GRPCNotImplementedError,
  GRPCNotFoundError,
  GRPCAlreadyExistsError
]

const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** A member that refused the call without applying it, and may take it when repeated. */
const isRefusal = (error: unknown): boolean => /too many requests|not leader/.test(messageOf(error))

/** A failure no retry can fix, or undefined if the call may succeed when repeated. */
const finalFailure = (error: unknown): Failure | undefined => {
  if (error instanceof EtcdLeaseInvalidError) {
    return { reason: "Disconnected", detail: "the session's lease expired in etcd", cause: error }
  }
  if (error instanceof ClientClosedError) {
    return { reason: "Disconnected", detail: "the lock manager was shut down", cause: error }
  }
  // Load shedding ("too many requests") and a member that just lost the leadership ("not leader") pass;
  // out of space does not.
  if (isRefusal(error)) return undefined
  if (error instanceof GRPCResourceExhastedError || rejections.some((type) => error instanceof type)) {
    return { reason: "Rejected", detail: messageOf(error), cause: error }
  }
  return undefined
}

/** Nothing listens at the address (or no route to it): as opposed to a member that is slow or has no leader. */
const isUnreachable = (error: unknown): boolean =>
  /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|No connection established|Failed to connect|DNS resolution failed/i
    .test(messageOf(error))

/**
 * @internal
 */
export interface ClusterConfig {
  readonly endpoints: ReadonlyArray<string>
  /** Milliseconds a call may take, retries included. */
  readonly requestTimeout: number
}

const ignore = () => {}

/**
 * Ends a stream of ours, both ways: a half close (`end`) leaves the member
 * free to go on sending, and a closed channel does not end calls already
 * running.
 *
 * @internal
 */
export const cancel = (
  stream: { end(): void; cancel(): void; on(event: "error", fn: (error: Error) => void): unknown }
): void => {
  try {
    // The call ends with a CANCELLED error: expected, and an error nobody listens to would be thrown.
    stream.on("error", ignore)
    // Ended first: etcd3 takes an error on a stream still writable for a failed member, and closes
    // every channel to it.
    stream.end()
  } catch {
    // Already ended.
  }
  try {
    stream.cancel()
  } catch {
    // Already ended.
  }
}

/**
 * The largest message taken from a member: far above any answer of a cluster
 * used as intended (a request key is under 2 KiB, and etcd refuses a put of
 * more than 1.5 MiB), so only junk under the prefix or a hostile peer meets it,
 * as a typed failure of that call.
 *
 * @internal
 */
export const MAX_MESSAGE = 64 * 1024 * 1024

/**
 * One etcd3 client per endpoint, closed with the scope. Calls stick to one
 * member while it answers (its keepalive and watch streams too) and move to
 * the next when it does not: a dead member costs one refused connection, not
 * one in every three calls as with a random choice per call. The gRPC
 * channels reconnect quickly (within a second) once a member is back, and
 * each client keeps its own connections, so that one manager's backoff never
 * delays another's.
 *
 * @internal
 */
export const make = (config: ClusterConfig): Effect.Effect<Cluster, Failure, Scope.Scope> =>
  Effect.gen(function*() {
    const address = `etcd:${config.endpoints.join(",")}`
    if (config.endpoints.length === 0) {
      return yield* Effect.fail<Failure>({ reason: "Unreachable", detail: "no etcd endpoints were given" })
    }
    const clients = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          config.endpoints.map((endpoint) =>
            new Etcd3({
              hosts: endpoint,
              faultHandling: { host: () => passThrough, global: passThrough },
              grpcOptions: {
                "grpc.initial_reconnect_backoff_ms": 100,
                "grpc.max_reconnect_backoff_ms": 1_000,
                "grpc.use_local_subchannel_pool": 1,
                // A scan answers every key in its range: past gRPC's default
                // 4 MiB the client refused an answer whose transaction etcd
                // had applied, leaving the request's key in the queue. Not
                // unbounded: a peer that announces an endless message (seen:
                // 2 GiB claimed, then zeros) would grow memory until the end.
                "grpc.max_receive_message_length": MAX_MESSAGE
              }
            })
          ),
        catch: (cause): Failure => ({ reason: "Unreachable", detail: messageOf(cause), cause })
      }),
      (clients) => Effect.sync(() => clients.forEach((client) => client.close()))
    )
    // A third of the budget: time for two more members (or one after an election).
    const attemptTimeout = Math.max(200, Math.floor(config.requestTimeout / 3))
    // Managers start on different members, as a random choice per call would spread them.
    let index = Math.floor(Math.random() * clients.length)
    const current = () => clients[index]
    const failed = (client: Etcd3) => {
      if (clients[index] === client) index = (index + 1) % clients.length
    }

    const call = <A>(
      what: string,
      f: (client: Etcd3, options: CallOptions) => Promise<A>,
      budget = config.requestTimeout,
      inDoubt?: () => void
    ) =>
      Effect.suspend(() => {
        const deadline = performance.now() + budget
        const attempt = (n: number, last: unknown): Effect.Effect<A, Failure> => {
          const remaining = deadline - performance.now()
          if (remaining <= 0) {
            return Effect.fail(
              last === undefined ?
                { reason: "Timeout", detail: `${what}: no answer within ${budget} ms` } :
                isUnreachable(last) ?
                { reason: "Unreachable", detail: `${what}: ${messageOf(last)}`, cause: last } :
                {
                  reason: "Timeout",
                  detail: `${what}: no answer within ${budget} ms (${messageOf(last)})`,
                  cause: last
                }
            )
          }
          const timeout = Math.min(remaining, attemptTimeout)
          const client = current()
          return Effect.tryPromise({
            try: () => f(client, { deadline: new Date(Date.now() + timeout) }),
            catch: (error) => error
          }).pipe(
            // The gRPC deadline ends the call; this bounds a client that missed it.
            Effect.timeoutFail({ duration: timeout + 100, onTimeout: () => new Error("deadline exceeded") }),
            Effect.catchAll((error) => {
              const failure = finalFailure(error)
              if (failure !== undefined) return Effect.fail(failure)
              // Refused at the door, it was never sent; refused by a member
              // (load shed, not the leader), it was not applied; anything else may be.
              if (!isUnreachable(error) && !isRefusal(error)) inDoubt?.()
              failed(client)
              // Every member failed once more: pause before the next round.
              const round = Math.floor((n + 1) / clients.length)
              const pause = (n + 1) % clients.length !== 0 ?
                0 :
                Math.min(25 * 2 ** (round - 1), 250, Math.max(0, deadline - performance.now()))
              return Effect.zipRight(Effect.sleep(pause), attempt(n + 1, error))
            })
          )
        }
        return attempt(0, undefined)
      })

    return { address, call, current, failed, attemptTimeout }
  })
