/**
 * A session: one etcd lease, kept alive, to which every request key of the
 * manager is attached. When the lease ends, etcd deletes those keys, so the
 * locks of a process that died, froze or lost the cluster are released after
 * at most the lease's time to live.
 *
 * Lease. etcd restarts a lease's time to live when it processes a keepalive,
 * which is after the client sent it. The client therefore measures from the
 * *send* time of its last answered keepalive (or of the grant): until
 * `leaseUntil`, etcd cannot have expired the lease, and `Lock.ensureHeld`
 * refuses after it. Keepalives go out every third of the time to live; a
 * keepalive stream that stops answering is reopened (possibly to another
 * member), and a lease that could not be renewed in time, or that etcd
 * reports expired, ends the session.
 *
 * A session that ends completes `lostSignal` (every `Lock.lost` of its
 * requests), stops its keepalives and watches, and revokes its lease if it
 * still can: a session ended because an outcome was in doubt (a delete that
 * could not be confirmed) must not keep keys alive.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from "etcd3"
import { MAX_TIMER } from "../input.js"
import { cancel, type Cluster, type Failure } from "./cluster.js"
import * as Watches from "./watch.js"

/**
 * @internal
 */
export interface Session {
  /** The lease id, as etcd writes it (a decimal int64). */
  readonly lease: string
  /** The granted time to live, in milliseconds. */
  readonly ttl: number
  /** `performance.now()` before which etcd cannot have expired the lease. */
  leaseUntil: number
  /** Why the session ended; set once. */
  lost: Failure | undefined
  readonly lostSignal: Deferred.Deferred<void>
  readonly scope: Scope.CloseableScope
  readonly watches: Watches.Watches
  /**
   * The watches of held locks' guards, on a stream of their own: when a
   * stream is lost, their many watches made again do not queue before a
   * waiter's.
   */
  readonly guards: Watches.Watches
  /** Makes request ids unique within the lease. */
  nextRequest: number
  /** Requests whose enqueue was sent and that have not left (or failed). */
  live: number
  /**
   * Takes no new requests (`retire`): an enqueue of it may still land late.
   * Its lease is revoked once its last request has left.
   */
  retired: boolean
}

const revoke = (cluster: Cluster, session: Session): Effect.Effect<void> =>
  Effect.ignore(
    cluster.call(
      "lease revoke",
      (client, options) => client.leaseClient.leaseRevoke({ ID: session.lease }, options),
      cluster.attemptTimeout
    )
  )

/** Records why the session ended and wakes its waiters; false if it already had. */
const markEnded = (session: Session, failure: Failure): boolean => {
  if (session.lost !== undefined) return false
  session.lost = failure
  Deferred.unsafeDone(session.lostSignal, Exit.void)
  session.watches.close()
  session.guards.close()
  return true
}

/**
 * Ends the session (once): completes `lostSignal`, then stops its fibers and
 * revokes its lease from a fiber of their own (the caller may be one of the
 * fibers the scope interrupts).
 *
 * @internal
 */
export const end = (cluster: Cluster, session: Session, failure: Failure): Effect.Effect<void> =>
  Effect.suspend(() =>
    markEnded(session, failure) ?
      Effect.asVoid(
        Effect.forkDaemon(Effect.zipRight(Scope.close(session.scope, Exit.void), revoke(cluster, session)))
      ) :
      Effect.void
  )

const RETIRED: Failure = {
  reason: "Disconnected",
  detail: "the session was retired: an enqueue of it had been sent and not answered in time"
}

/**
 * Retires the session: the manager opens another for new requests, and this
 * one's lease is revoked once its last request has left (`settle`). An
 * enqueue sent to a member that did not answer in time may be applied later
 * (a frozen member passes it on when it runs again), after its request has
 * left and its keys were deleted: attached to a live lease, such a key would
 * block others for as long as the process lives; to a revoked one, etcd
 * refuses it.
 *
 * @internal
 */
export const retire = (session: Session): void => {
  session.retired = true
}

/**
 * Ends a retired session once none of its requests is left (see `retire`),
 * and waits for the revocation (bounded): the request that left last is done
 * only when no late copy of an enqueue can land on a live lease.
 *
 * @internal
 */
export const settle = (cluster: Cluster, session: Session): Effect.Effect<void> =>
  Effect.suspend(() =>
    session.retired && session.live === 0 && markEnded(session, RETIRED) ?
      Effect.zipRight(Scope.close(session.scope, Exit.void), revoke(cluster, session)) :
      Effect.void
  )

/**
 * Ends the session on shutdown and waits for the revocation (bounded), so
 * that the process's keys are gone before it exits rather than a time to
 * live later.
 *
 * @internal
 */
export const shutdown = (cluster: Cluster, session: Session): Effect.Effect<void> =>
  Effect.suspend(() => {
    const ended = markEnded(session, { reason: "Disconnected", detail: "the lock manager was shut down" })
    return Effect.zipRight(Scope.close(session.scope, Exit.void), ended ? revoke(cluster, session) : Effect.void)
  })

/**
 * Keeps the lease alive until it cannot: fails with the reason the session
 * ends. Callback-driven (a gRPC stream and a timer), so it runs inside one
 * `Effect.async` whose canceller stops both.
 */
const keepAlive = (cluster: Cluster, session: Session): Effect.Effect<never, Failure> =>
  Effect.async<never, Failure>((resume) => {
    const interval = session.ttl / 3
    let stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined
    let opening = false
    let done = false
    let timer: ReturnType<typeof setTimeout> | undefined
    /** Send times of unanswered keepalives on `stream`, oldest first (answers come in order). */
    let sent: Array<number> = []
    /**
     * Streams left for being slow, with keepalives unanswered: an answer that
     * comes late still renews the lease (etcd did renew it), so a slow but
     * healthy member costs nothing. Each is ended once answered, or with the
     * session, or when newer ones are left.
     */
    const retired = new Set<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>()
    const end = (s: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>) => {
      retired.delete(s)
      cancel(s)
    }

    const stop = () => {
      done = true
      if (timer !== undefined) clearTimeout(timer)
      const s = stream
      stream = undefined
      if (s !== undefined) end(s)
      for (const old of retired) end(old)
    }
    const fail = (failure: Failure) => {
      if (done) return
      stop()
      resume(Effect.fail(failure))
    }
    let client = cluster.current()
    // A stream that failed or stopped answering: the next one goes to another member.
    const drop = (s: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>, slow = false) => {
      if (stream !== s) return
      stream = undefined
      if (slow && sent.length > 0) {
        retired.add(s)
        // Members that are all slow: keep the newest few.
        if (retired.size > 2) end(retired.values().next().value!)
      } else {
        cancel(s)
      }
      sent = []
      cluster.failed(client)
    }
    const open = () => {
      opening = true
      client = cluster.current()
      client.leaseClient.leaseKeepAlive().then(
        (s) => {
          opening = false
          if (done) return cancel(s)
          stream = s
          const own: Array<number> = sent = []
          s.on("data", (response) => {
            const at = own.shift()
            if (at === undefined) return
            if (stream !== s && own.length === 0) end(s)
            const ttl = Number(response.TTL)
            if (!(ttl > 0)) return fail({ reason: "Disconnected", detail: "the session's lease expired in etcd" })
            session.leaseUntil = Math.max(session.leaseUntil, at + ttl * 1000)
          })
          s.on("error", () => (retired.delete(s), drop(s)))
          s.on("end", () => (retired.delete(s), drop(s)))
          tick()
        },
        () => {
          opening = false
          cluster.failed(client)
        }
      )
    }
    const tick = () => {
      if (done) return
      if (timer !== undefined) clearTimeout(timer)
      const now = performance.now()
      if (now >= session.leaseUntil) {
        return fail({
          reason: "Disconnected",
          detail: `etcd did not renew the session's lease within its ${session.ttl} ms time to live`
        })
      }
      // A stream that stopped answering (a frozen member): try another. An
      // answer still missing at the next tick (half an interval is the bound;
      // an answer takes milliseconds) means one; waiting as long as a call may
      // take outlived short leases. Its late answers still count (`retired`).
      if (stream !== undefined && sent.length > 0 && now - sent[0] > Math.min(cluster.attemptTimeout, interval / 2)) {
        drop(stream, true)
      }
      if (stream !== undefined) {
        sent.push(now)
        try {
          stream.write({ ID: session.lease })
        } catch {
          drop(stream)
        }
      } else if (!opening) {
        open()
      }
      // Sooner while the stream is down, and never past the lease's end.
      const next = stream === undefined ? Math.min(interval, 100) : interval
      timer = setTimeout(tick, Math.max(1, Math.min(next, session.leaseUntil - now, MAX_TIMER)))
    }
    tick()
    return Effect.sync(stop)
  })

/**
 * Grants a lease of `ttlSeconds` (etcd may raise it to its minimum) and starts
 * keeping it alive. Fails if no member granted it within `timeout`.
 *
 * @internal
 */
export const open = (cluster: Cluster, ttlSeconds: number, timeout: number): Effect.Effect<Session, Failure> =>
  Effect.gen(function*() {
    const sentAt = performance.now()
    const granted = yield* cluster.call(
      "lease grant",
      (client, options) => client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options),
      timeout
    )
    if (granted.error !== "" && granted.error !== undefined) {
      return yield* Effect.fail<Failure>({ reason: "Rejected", detail: `lease grant: ${granted.error}` })
    }
    const ttl = Number(granted.TTL) * 1000
    // Whole or not at all: a session half set up would keep its keepalive running with nobody to end it.
    return yield* Effect.uninterruptible(Effect.gen(function*() {
      const session: Session = {
        lease: granted.ID,
        ttl,
        leaseUntil: sentAt + ttl,
        lost: undefined,
        lostSignal: Deferred.unsafeMake<void>(FiberId.none),
        scope: yield* Scope.make(),
        watches: Watches.make(cluster),
        guards: Watches.make(cluster),
        nextRequest: 0,
        live: 0,
        retired: false
      }
      // Interruptible, although forked from an uninterruptible region: closing the scope stops it.
      yield* Effect.interruptible(keepAlive(cluster, session)).pipe(
        Effect.catchAll((failure) => end(cluster, session, failure)),
        Effect.forkIn(session.scope)
      )
      return session
    }))
  })
