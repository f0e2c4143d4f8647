/**
 * Wake-ups for waiting requests: one etcd watch stream per session, with one
 * watch per waiter on the key of the request it waits for.
 *
 * A watch starts at the revision current when etcd creates it, never at an
 * older one: etcd delivers the events of a watch that starts in the past
 * from a loop that runs every 100 ms, which would add up to 100 ms to every
 * hand-over under load. The waiter closes the gap itself: once the watch is
 * created, it checks that the key still exists.
 *
 * A wake-up only says "look again": the waiter re-scans. So every doubt wakes
 * it too: the watch was cancelled, the stream failed or ended, the session
 * closed. A watch that never answers (a member that froze with the stream
 * open) is the waiter's to bound: it re-scans after a while anyway, and a
 * watch that etcd does not even create in time is `abandon`ed, which drops
 * the stream (if it answered nothing since) so that the next watch opens one
 * on another member.
 *
 * Watch ids are chosen here (etcd 3.4 accepts them in the create request), so
 * a create and its answers pair up without relying on the order in which
 * etcd creates watches.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import type { IDuplexStream, IWatchCreateRequest, IWatchRequest, IWatchResponse } from "etcd3"
import { cancel, type Cluster } from "./cluster.js"

/**
 * One watch on one key.
 *
 * @internal
 */
export interface Watch {
  /** Completes once etcd created the watch (or it is known to be gone). */
  readonly created: Effect.Effect<void>
  /**
   * Completes once the key was deleted after `created` (`true`), or once
   * that can no longer be told (`false`: the stream was lost or closed, or
   * etcd cancelled the watch).
   */
  readonly deleted: Effect.Effect<boolean>
  /**
   * The watch was not created in time: drop the stream it was sent on if that
   * answered nothing since (and is still the current one).
   */
  readonly abandon: Effect.Effect<void>
}

/**
 * @internal
 */
export interface Watches {
  /** Watches `key` for its deletion; the watch is cancelled when the scope closes. */
  readonly watch: (key: Buffer) => Effect.Effect<Watch, never, Scope.Scope>
  /** Wakes every waiter and ends the stream. */
  readonly close: () => void
}

interface Waiter {
  readonly request: IWatchCreateRequest
  readonly created: Deferred.Deferred<void>
  readonly deleted: Deferred.Deferred<boolean>
  /** The stream its create request went on last, and when. */
  sentOn: IDuplexStream<IWatchRequest, IWatchResponse> | undefined
  sentAt: number
}

/** etcd's `FilterType.NOPUT`: deletions only. */
const NOPUT = 0

const wake = (waiter: Waiter) => {
  Deferred.unsafeDone(waiter.created, Exit.void)
  Deferred.unsafeDone(waiter.deleted, Exit.succeed(false))
}

/**
 * @internal
 */
export const make = (cluster: Cluster): Watches => {
  let stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined
  let opening = false
  let closed = false
  let nextId = 1
  const waiters = new Map<number, Waiter>()

  const send = (s: IDuplexStream<IWatchRequest, IWatchResponse>, request: IWatchRequest) => {
    try {
      s.write(request)
    } catch {
      drop(s)
    }
  }

  const wakeAll = () => {
    const all = Array.from(waiters.values())
    waiters.clear()
    for (const waiter of all) wake(waiter)
  }

  let client = cluster.current()

  // The waiters of a lost stream look again; the next watch opens a new one, on another member.
  const drop = (s: IDuplexStream<IWatchRequest, IWatchResponse>) => {
    if (stream !== s) return
    stream = undefined
    cancel(s)
    cluster.failed(client)
    wakeAll()
  }

  const create = (s: IDuplexStream<IWatchRequest, IWatchResponse>, waiter: Waiter) => {
    waiter.sentOn = s
    waiter.sentAt = performance.now()
    send(s, { create_request: waiter.request })
  }

  /** When each stream last answered anything: one that did since a create was sent is alive, only slow. */
  const answeredAt = new WeakMap<IDuplexStream<IWatchRequest, IWatchResponse>, number>()

  const onResponse = (s: IDuplexStream<IWatchRequest, IWatchResponse>, response: IWatchResponse) => {
    answeredAt.set(s, performance.now())
    const id = Number(response.watch_id)
    const waiter = waiters.get(id)
    if (waiter === undefined) return
    if (response.created) Deferred.unsafeDone(waiter.created, Exit.void)
    if (!response.canceled && response.events.length === 0) return
    waiters.delete(id)
    if (!response.canceled) send(s, { cancel_request: { watch_id: id } })
    // The deletion itself (the watch filters puts out), or a watch etcd ended.
    if (!response.canceled) Deferred.unsafeDone(waiter.deleted, Exit.succeed(true))
    wake(waiter)
  }

  const connect = () => {
    if (stream !== undefined || opening || closed) return
    opening = true
    client = cluster.current()
    client.watchClient.watch().then(
      (s) => {
        opening = false
        if (closed) return cancel(s)
        stream = s
        s.on("data", (response) => onResponse(s, response))
        s.on("error", () => drop(s))
        s.on("end", () => drop(s))
        for (const [, waiter] of waiters) create(s, waiter)
      },
      () => {
        opening = false
        cluster.failed(client)
        wakeAll()
      }
    )
  }

  const watch = (key: Buffer): Effect.Effect<Watch, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const waiter: Waiter = {
          request: { key, filters: [NOPUT], watch_id: nextId++ },
          created: Deferred.unsafeMake<void>(FiberId.none),
          deleted: Deferred.unsafeMake<boolean>(FiberId.none),
          sentOn: undefined,
          sentAt: 0
        }
        if (closed) {
          wake(waiter)
        } else {
          waiters.set(Number(waiter.request.watch_id), waiter)
          if (stream !== undefined) create(stream, waiter)
          else connect()
        }
        return waiter
      }),
      (waiter) =>
        Effect.sync(() => {
          const id = Number(waiter.request.watch_id)
          if (waiters.delete(id) && stream !== undefined) send(stream, { cancel_request: { watch_id: id } })
        })
    ).pipe(
      Effect.map((waiter) => ({
        created: Deferred.await(waiter.created),
        deleted: Deferred.await(waiter.deleted),
        abandon: Effect.sync(() => {
          const s = waiter.sentOn
          if (s !== undefined && (answeredAt.get(s) ?? 0) < waiter.sentAt) drop(s)
        })
      }))
    )

  const close = () => {
    closed = true
    const s = stream
    stream = undefined
    wakeAll()
    if (s !== undefined) cancel(s)
  }

  return { watch, close }
}
