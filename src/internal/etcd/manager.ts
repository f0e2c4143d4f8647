/**
 * The etcd lock manager: a `LockManagerService` whose queue is etcd's key
 * space (see ./keys.ts for the layout).
 *
 * Arrival order is etcd's revision order. A request puts its keys (one per
 * locked path, all in one transaction, so at one revision R, attached to the
 * session's lease) and, in the same transaction, reads the entries it could
 * conflict with. It is blocked by every conflicting entry created before R;
 * those are exactly the earlier conflicting requests, granted or waiting, so
 * granting when none is left is the fairness rule of the in-memory manager.
 * Waits only ever go to lower revisions, so they cannot form a cycle: a
 * `lockAll` puts all its keys at one revision.
 *
 * Waiting: watch the newest blocker's key for its deletion (from the moment
 * the watch exists, then check that the key still does: see ./watch.ts for
 * why not from the scan's revision), then scan again. A scan is conditional
 * on the request's own key still existing at the request's revision: a lease
 * that expired while waiting fails the wait instead of granting it (the flaw
 * Jepsen found in etcd's own mutex recipe). A waiter also scans again after
 * a time to live without news, so a watch stream that froze delays it, but
 * never leaves it waiting forever; and the end of the session fails it at
 * once.
 *
 * Lock ids are the request's revision: they increase with arrival over every
 * client of the cluster, and etcd never reuses a revision, not even after a
 * restart of the whole cluster.
 *
 * Doubt ends the session: if the enqueue's outcome or a release cannot be
 * confirmed, the session's lease is revoked (or left to expire), so no key of
 * this manager can stay behind to block others. Its held locks are reported
 * lost; the next request opens a new session. An enqueue confirmed on a retry
 * after an attempt that went unanswered retires the session instead: that
 * attempt may still be applied, after its request has left, so the lease is
 * revoked once the session's last request has left, and new requests open
 * another session meanwhile.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { CompareResult, CompareTarget, type IRangeResponse, type IRequestOp, type ITxnRequest } from "etcd3"
import * as Crypto from "node:crypto"
import type { EtcdOptions, Lock, LockManagerService } from "../../LockManager.js"
import { type InvalidArgumentError, RemoteLockError } from "../../PersistenceError.js"
import * as Input from "../input.js"
import { leasedLock } from "../leasedLock.js"
import { type Plan, planAll, type PlanError, planOne, TypeId } from "../lockManager.js"
import * as RemoteLink from "../remoteLink.js"
import * as Cluster from "./cluster.js"
import { entryMode, type KeyRange, normalizePrefix, requestKey, scanRanges } from "./keys.js"
import * as Session from "./session.js"

/**
 * @internal
 */
export interface EtcdConfig {
  readonly endpoints: ReadonlyArray<string>
  readonly prefix: string
  /** The lease's time to live asked for, in whole seconds. */
  readonly ttl: number
  /** Milliseconds: opening a session, and every call to the cluster. */
  readonly connectTimeout: number
}

/** etcd's longest lease (`MaxLeaseTTL`, 9,000,000,000 seconds), in milliseconds. */
const MAX_TTL = 9e12

/**
 * The manager's settings from its public options (as a caller in plain
 * JavaScript may give them), or why they are refused.
 *
 * @internal
 */
export const configOf = (options: EtcdOptions): Either.Either<EtcdConfig, Input.Refusal> =>
  Either.gen(function*() {
    if (typeof options !== "object" || options === null) {
      return yield* Input.refuse("options", `expected an object, got ${Input.describe(options)}`)
    }
    const { connectTimeout, endpoints, prefix, ttl } = options as unknown as Record<string, unknown>
    // A string is iterable too: its characters are no endpoints.
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      return yield* Input.refuse(
        "options.endpoints",
        `expected a non-empty array of URLs, got ${Input.describe(endpoints)}`
      )
    }
    for (const endpoint of endpoints) yield* Input.text("options.endpoints", endpoint)
    // One spelling per prefix: "app/locks", "/app//locks" and "/app/locks"
    // would be three lock spaces that never see one another's locks.
    if (
      prefix !== undefined &&
      (typeof prefix !== "string" || prefix.includes("\0") || !/^(\/[^/]+)*\/*$/.test(prefix))
    ) {
      return yield* Input.refuse(
        "options.prefix",
        `expected a key prefix that starts with "/", has no empty segment and no NUL byte ("/app/locks"), got ${
          Input.describe(prefix)
        }`
      )
    }
    return {
      endpoints: Array.from(endpoints as ReadonlyArray<string>),
      prefix: normalizePrefix(prefix ?? "/effect-persistence/locks"),
      // etcd leases count whole seconds.
      ttl: Math.ceil((yield* Input.millis("options.ttl", ttl, 5_000, 1, MAX_TTL)) / 1000),
      connectTimeout: yield* Input.millis("options.connectTimeout", connectTimeout, 5_000, 1, Input.MAX_TIMER)
    }
  })

/**
 * Builds the manager from its public options: refused ones fail with an
 * `InvalidArgumentError` naming the option.
 *
 * @internal
 */
export const start = (
  options: EtcdOptions
): Effect.Effect<LockManagerService<RemoteLockError>, InvalidArgumentError, Scope.Scope> =>
  Either.match(configOf(options), {
    onLeft: (refusal) =>
      Effect.fail(Input.invalidSetting("LockManager.makeEtcd", (options as any)?.endpoints, refusal)),
    onRight: make
  })

/**
 * etcd's default limit on the operations of one transaction (`--max-txn-ops`).
 * The puts of one request must fit in one transaction; its reads are split.
 */
const MAX_TXN_OPS = 128

/**
 * What one transaction may carry in keys, well within etcd's default request
 * limit (`--max-request-bytes`, 1.5 MiB) with room for the rest of the
 * request. The puts of one request must fit; its reads are split.
 */
const MAX_TXN_BYTES = 1024 * 1024

const rangeBytes = (range: KeyRange) => range.key.length + range.end.length
const keyBytes = (key: Buffer) => key.length

const EMPTY = Buffer.alloc(0)

/** How long after a grant a held lock's guard starts (see `guard`), in milliseconds. */
const GUARD_DELAY = 100

/** The guard's first pause after a round without a verdict, and its longest, in milliseconds. */
const GUARD_FIRST_PAUSE = 1_000
const GUARD_MAX_PAUSE = 10_000

const LEASE_EXPIRED: Cluster.Failure = {
  reason: "Disconnected",
  detail: "the request left etcd's queue while waiting: the session's lease expired"
}

const KEY_DELETED: Cluster.Failure = {
  reason: "Disconnected",
  detail: "the request left etcd's queue while waiting: another client of etcd deleted its key"
}

interface Request {
  readonly session: Session.Session
  readonly plan: Plan
  readonly keys: ReadonlyArray<Buffer>
  readonly ranges: ReadonlyArray<KeyRange>
  /** The revision of the keys' creation: the arrival order and the lock id. */
  readonly revision: number
  state: "pending" | "held" | "left"
  /** Another client deleted a key of the request while it was held (see `guard`); `gone` is then done. */
  keysGone: boolean
  readonly gone: Deferred.Deferred<void>
}

const rangeOp = (range: KeyRange, before: number | undefined): IRequestOp => ({
  request_range: {
    key: range.key,
    range_end: range.end,
    keys_only: true,
    // Known (the re-scans): older entries only.
    ...(before === undefined ? {} : { max_create_revision: before })
  }
})

/**
 * The key of the newest entry in `scans`, created before `revision`, that
 * conflicts with the request of `plan`: the one a waiter watches.
 */
const newestBlocker = (scans: ReadonlyArray<IRangeResponse>, revision: number, plan: Plan): Buffer | undefined => {
  let newest: Buffer | undefined
  let newestRevision = 0
  for (const scan of scans) {
    for (const kv of scan.kvs) {
      const created = Number(kv.create_revision)
      if (created >= revision || created <= newestRevision) continue
      // Every request has a lease; a key without one, or outside the layout, is not a request.
      const mode = entryMode(kv.key)
      if (mode === undefined || kv.lease === "0") continue
      // Reads only conflict with writes (the scans of ancestors already hold writes only).
      if (plan.mode === "read" && mode === "read") continue
      newest = kv.key
      newestRevision = created
    }
  }
  return newest
}

/** An enqueued request: granted at once, or waiting (for `blocker`, or to be scanned if undefined). */
interface Enqueued {
  readonly request: Request
  readonly granted: boolean
  readonly blocker: Buffer | undefined
}

/** `items` in runs of at most `MAX_TXN_OPS` and `MAX_TXN_BYTES` (an item larger than that alone). */
const chunks = <A>(items: ReadonlyArray<A>, bytesOf: (item: A) => number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < items.length; i++) {
    const size = bytesOf(items[i])
    if (i > start && (i - start === MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES)) {
      out.push(items.slice(start, i))
      start = i
      bytes = 0
    }
    bytes += size
  }
  if (start < items.length) out.push(items.slice(start))
  return out
}

const totalBytes = <A>(items: ReadonlyArray<A>, bytesOf: (item: A) => number): number =>
  items.reduce((n, item) => n + bytesOf(item), 0)

/**
 * @internal
 */
export const make = (config: EtcdConfig): Effect.Effect<LockManagerService<RemoteLockError>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const managerScope = yield* Effect.scope
    const address = `etcd:${config.endpoints.join(",")}`
    // A cluster that cannot be set up (no endpoints, a bad URL) fails every request with the reason.
    const cluster = yield* Effect.either(
      Cluster.make({ endpoints: config.endpoints, requestTimeout: config.connectTimeout })
    )
    const prefix = config.prefix
    const stats = { held: 0, pending: 0, nodes: 0 }
    let closed = false
    // Sessions, once there is a cluster client to open them on.
    const link = Either.map(cluster, (c) => ({
      cluster: c,
      sessions: RemoteLink.make(Session.open(c, config.ttl, config.connectTimeout), managerScope)
    }))
    const toError = (operation: string, failure: Cluster.Failure) => RemoteLink.toError(operation, address, failure)

    /** Retired sessions (see `Session.retire`) that may still have requests. */
    const retired = new Set<Session.Session>()
    const retire = (session: Session.Session) => {
      if (session.retired) return
      for (const old of retired) if (old.lost !== undefined) retired.delete(old)
      Session.retire(session)
      retired.add(session)
    }

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        if (Either.isLeft(link)) return Effect.void
        const { cluster: c, sessions } = link.right
        const open = new Set(retired)
        if (sessions.current !== undefined) open.add(sessions.current)
        return Effect.forEach(open, (session) => Session.shutdown(c, session), { discard: true })
      })
    )

    /** The live session, or a new one (see `RemoteLink.make`), with the cluster it is on. */
    const session = (operation: string): Effect.Effect<[Cluster.Cluster, Session.Session], RemoteLockError> =>
      Effect.suspend(() => {
        if (closed) return Effect.dieMessage(`${operation}: the etcd lock manager was used after its scope closed`)
        if (Either.isLeft(link)) return Effect.fail(toError(operation, link.left))
        const { cluster: c, sessions } = link.right
        return sessions.get.pipe(
          Effect.map((s): [Cluster.Cluster, Session.Session] => [c, s]),
          Effect.mapError((failure) => toError(operation, failure))
        )
      })

    /**
     * Puts the request's keys and scans for what blocks it, in one
     * transaction when it fits. The put is conditional on the first key not
     * existing, so a retried transaction (the first attempt's answer was
     * lost) does not put twice: it reads the revision of the first put.
     */
    const enqueue = (
      operation: string,
      c: Cluster.Cluster,
      session: Session.Session,
      plan: Plan
    ): Effect.Effect<Enqueued, RemoteLockError> =>
      Effect.suspend(() => {
        if (session.lost !== undefined) return Effect.fail(toError(operation, session.lost))
        // Unguessable: every client of the cluster sees the keys, and one that
        // put a key at this request's next name would make its put a no-op.
        const id = `${session.lease}.${++session.nextRequest}.${Crypto.randomBytes(9).toString("base64url")}`
        const keys = plan.locked.map((path) => Buffer.from(requestKey(prefix, path, plan.mode, id), "utf8"))
        const ranges = scanRanges(prefix, plan.mode, plan.locked)
        const inline = keys.length + ranges.length <= MAX_TXN_OPS &&
          totalBytes(keys, keyBytes) + totalBytes(ranges, rangeBytes) <= MAX_TXN_BYTES
        const scans = inline ? ranges.map((range) => rangeOp(range, undefined)) : []
        const txn: ITxnRequest = {
          compare: [{ key: keys[0], target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }],
          success: [...keys.map((key) => ({ request_put: { key, value: EMPTY, lease: session.lease } })), ...scans],
          failure: [{ request_range: { key: keys[0], keys_only: true } }, ...scans]
        }
        // Counted from now: a retired session is not revoked under an enqueue in flight.
        session.live++
        // An attempt that may land late retires the session (see `Session.retire`), however this call ends.
        return c.call("enqueue", (client, options) => client.kv.txn(txn, options), undefined, () => retire(session))
          .pipe(
            Effect.flatMap((response) => {
              const existing = response.succeeded ? undefined : response.responses[0].response_range.kvs[0]
              // A key already there is this request's own only on this session's
              // lease (an earlier attempt that landed); another client's is not a
              // place in the queue.
              if (existing !== undefined && String(existing.lease) !== String(session.lease)) {
                return Effect.fail<Cluster.Failure>({
                  reason: "Rejected",
                  detail: "another client of etcd put a key at this request's name: nothing was put or granted"
                })
              }
              const revision = response.succeeded ?
                Number(response.header.revision) :
                Number(existing?.create_revision ?? 0)
              if (!(revision > 0)) {
                return Effect.fail<Cluster.Failure>({
                  reason: "Disconnected",
                  detail: "the request's key vanished from etcd while it was being enqueued"
                })
              }
              const request: Request = {
                session,
                plan,
                keys,
                ranges,
                revision,
                state: "pending",
                keysGone: false,
                gone: Deferred.unsafeMake(FiberId.none)
              }
              stats.pending++
              stats.nodes += keys.length
              const found = (response.succeeded ? response.responses.slice(keys.length) : response.responses.slice(1))
                .map((r) => r.response_range)
              // Not scanned yet (too many ranges for one transaction): the waiter scans first.
              if (!inline) return Effect.succeed({ request, granted: false, blocker: undefined })
              const blocker = newestBlocker(found, revision, plan)
              if (blocker === undefined) {
                request.state = "held"
                stats.pending--
                stats.held++
              }
              return Effect.succeed({ request, granted: blocker === undefined, blocker })
            }),
            // Whether the keys are in etcd is unknown (a refusal is certain: nothing was put).
            Effect.tapError((failure) => {
              session.live--
              return failure.reason === "Rejected" ? Session.settle(c, session) : Session.end(c, session, failure)
            }),
            Effect.mapError((failure) => toError(operation, failure))
          )
      })

    /**
     * Scans again for the newest blocker (undefined: granted). Fails if one
     * of the request's own keys is gone: its lease expired (the session
     * ends), or another client deleted it (only this request fails); either
     * way its place in the queue is lost. Every scan is conditional on the
     * first key; a request of several keys checks them all before it is
     * granted (they could not all ride along with every scan: together with
     * the ranges they may pass etcd's request size).
     */
    const rescan = (c: Cluster.Cluster, request: Request): Effect.Effect<Buffer | undefined, Cluster.Failure> =>
      Effect.suspend(() => {
        const session = request.session
        if (session.lost !== undefined) return Effect.fail(session.lost)
        const own = (key: Buffer) => ({
          key,
          target: CompareTarget.Create,
          result: CompareResult.Equal,
          create_revision: request.revision
        })
        // Its key is gone: with the lease, or deleted by someone else.
        const gone = Effect.flatMap(
          c.call(
            "lease check",
            (client, options) => client.leaseClient.leaseTimeToLive({ ID: session.lease }, options)
          ),
          (answer) => Effect.fail(Number(answer.TTL) > 0 ? KEY_DELETED : LEASE_EXPIRED)
        )
        // Chunks may be read at different revisions: an older conflicting
        // request that is gone stays gone, so "none in any chunk" holds at the last.
        const scan = Effect.reduce(
          chunks(request.ranges, rangeBytes),
          undefined as Buffer | undefined,
          (found, ranges) =>
            found !== undefined ? Effect.succeed(found) : c.call("scan", (client, options) =>
              client.kv.txn({
                compare: [own(request.keys[0])],
                success: ranges.map((range) => rangeOp(range, request.revision - 1)),
                failure: []
              }, options)).pipe(
                Effect.flatMap((response) =>
                  response.succeeded ?
                    Effect.succeed(
                      newestBlocker(response.responses.map((r) => r.response_range), request.revision, request.plan)
                    ) :
                    gone
                )
              )
        )
        // At most 128 keys of at most 1 MiB in all (they were put in one transaction): one check.
        const allKeys = c.call(
          "check keys",
          (client, options) => client.kv.txn({ compare: request.keys.map(own), success: [], failure: [] }, options)
        ).pipe(
          Effect.flatMap((response) => response.succeeded ? Effect.void : gone)
        )
        return Effect.flatMap(
          scan,
          (blocker) =>
            blocker !== undefined || request.keys.length === 1 ? Effect.succeed(blocker) : Effect.as(allKeys, blocker)
        ).pipe(
          // Only the request's own key gone: the session and its other locks stay.
          // (Told by its detail: a failure raised inside a span arrives as a proxy of the object.)
          Effect.tapError((failure) =>
            failure.detail === KEY_DELETED.detail ? Effect.void : Session.end(c, session, failure)
          )
        )
      })

    const toLock = (request: Request): Lock =>
      leasedLock(
        { id: request.revision, mode: request.plan.mode, paths: request.plan.paths },
        Effect.raceFirst(Deferred.await(request.session.lostSignal), Deferred.await(request.gone)),
        () =>
          request.state === "held" && request.session.lost === undefined &&
          performance.now() < request.session.leaseUntil && !request.keysGone
      )

    /** Whether `key` exists now (a linearizable read). */
    const exists = (c: Cluster.Cluster, key: Buffer): Effect.Effect<boolean, Cluster.Failure> =>
      Effect.map(
        c.call("check", (client, options) => client.kv.range({ key, count_only: true }, options)),
        (response) => Number(response.count) > 0
      )

    /**
     * Until `key` is deleted: watch it from now on, then check that it was
     * not deleted before the watch began. After a time to live without news,
     * give up (the caller scans again): the watch's stream may be stuck. A
     * watch not even created within a call's time is on a stuck stream (a
     * frozen member): the stream is dropped, and the caller scans again.
     */
    const deletion = (
      c: Cluster.Cluster,
      session: Session.Session,
      key: Buffer
    ): Effect.Effect<void, Cluster.Failure> =>
      Effect.scoped(Effect.gen(function*() {
        const watch = yield* session.watches.watch(key)
        if (Option.isNone(yield* Effect.timeoutOption(watch.created, c.attemptTimeout))) return yield* watch.abandon
        if (yield* exists(c, key)) yield* watch.deleted
      })).pipe(
        Effect.timeout(session.ttl),
        Effect.catchTag("TimeoutException", () => Effect.void)
      )

    /**
     * While a request is held, watches its keys: a key deleted by another
     * client (or with the lease, revoked by one), or deleted and put again,
     * leaves the path free for others, so the lock is lost from then on
     * (`lost`, `ensureHeld`), in the time a watch event takes rather than at
     * the next keepalive, or never. One round: a watch on each key, then one
     * transaction checking that every key is still the one this request put
     * (its creation revision), then a wait for an event on any of them, and
     * the check again. A round that ends without a verdict (a lost stream, a
     * failed call) is followed by another after a pause that doubles up to
     * `GUARD_MAX_PAUSE`, with jitter, so that a lost stream does not make
     * every held lock of the process call at once. It starts `GUARD_DELAY`
     * after the grant (a lock released sooner costs etcd nothing more; a key
     * deleted meanwhile is still caught, by revision), and runs until
     * interrupted, which releasing the lock does first.
     */
    const guard = (c: Cluster.Cluster, request: Request): Effect.Effect<void> => {
      const session = request.session
      const own = request.keys.map((key) => ({
        key,
        target: CompareTarget.Create,
        result: CompareResult.Equal,
        create_revision: request.revision
      }))
      const intact = Effect.map(
        c.call("check keys", (client, options) => client.kv.txn({ compare: own, success: [], failure: [] }, options)),
        (response) => response.succeeded
      )
      /** `true`: a key is gone; `false`: no verdict. */
      const round: Effect.Effect<boolean> = Effect.scoped(Effect.gen(function*() {
        const watches = yield* Effect.forEach(request.keys, (key) => session.guards.watch(key))
        const created = yield* Effect.timeoutOption(
          Effect.forEach(watches, (watch) => watch.created, { discard: true }),
          c.attemptTimeout
        )
        if (Option.isNone(created)) {
          yield* Effect.forEach(watches, (watch) => watch.abandon, { discard: true })
          return false
        }
        if (!(yield* intact)) return true
        // A deletion is checked at once; a lost stream, after the loop's pause (every guard of the process
        // would check at once).
        return (yield* Effect.raceAll(watches.map((watch) => watch.deleted))) && !(yield* intact)
      })).pipe(Effect.orElseSucceed(() => false))
      const loop = (pause: number): Effect.Effect<void> =>
        Effect.suspend(() => {
          const started = performance.now()
          return Effect.flatMap(round, (gone) => {
            if (gone) return Effect.void
            // A session that ended says so itself.
            if (session.lost !== undefined) return Effect.never
            // After a long healthy round, a lost stream starts the pauses over.
            const next = performance.now() - started > GUARD_MAX_PAUSE ? GUARD_FIRST_PAUSE : pause
            return Effect.zipRight(
              Effect.sleep(next / 2 + Math.random() * next),
              loop(Math.min(next * 2, GUARD_MAX_PAUSE))
            )
          })
        })
      return Effect.sleep(GUARD_DELAY).pipe(
        Effect.zipRight(loop(GUARD_FIRST_PAUSE)),
        Effect.zipRight(Effect.sync(() => {
          if (request.state !== "held") return
          request.keysGone = true
          Deferred.unsafeDone(request.gone, Exit.void)
        })),
        Effect.interruptible
      )
    }

    /** Waits until nothing older conflicts: watch the newest blocker, scan again, repeat. */
    const awaitGrant = (
      operation: string,
      c: Cluster.Cluster,
      request: Request,
      first: Buffer | undefined
    ): Effect.Effect<Lock, RemoteLockError> =>
      Effect.gen(function*() {
        const session = request.session
        const wait = Effect.gen(function*() {
          let blocker = first === undefined ? yield* rescan(c, request) : first
          while (blocker !== undefined) {
            yield* deletion(c, session, blocker)
            blocker = yield* rescan(c, request)
          }
        })
        // A session that ends (its lease lost) fails the wait at once, even mid-call.
        const ended = Effect.flatMap(Deferred.await(session.lostSignal), () => Effect.fail(session.lost!))
        yield* Effect.raceFirst(wait, ended)
        if (session.lost !== undefined) return yield* Effect.fail(session.lost)
        request.state = "held"
        stats.pending--
        stats.held++
        return toLock(request)
      }).pipe(
        Effect.mapError((failure) => toError(operation, failure)),
        Effect.withSpan("LockManager.wait", {
          attributes: {
            "lock.paths": request.plan.paths.join(","),
            "lock.mode": request.plan.mode,
            "lock.server": address
          },
          captureStackTrace: false
        })
      )

    /**
     * Ends a request, waiting or held, and waits until etcd confirms the
     * deletion of its keys. Idempotent. A deletion that cannot be confirmed
     * ends the session, whose lease then takes the keys with it.
     */
    const leave = (c: Cluster.Cluster, request: Request): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (request.state === "left") return Effect.void
        if (request.state === "held") stats.held--
        else stats.pending--
        stats.nodes -= request.keys.length
        request.state = "left"
        const session = request.session
        session.live--
        if (session.lost !== undefined) return Effect.void
        return Effect.forEach(
          chunks(request.keys, keyBytes),
          (keys) =>
            c.call("release", (client, options) =>
              client.kv.txn(
                { compare: [], success: keys.map((key) => ({ request_delete_range: { key } })) },
                options
              )),
          { discard: true }
        ).pipe(
          // A retired session's lease goes with its last request.
          Effect.zipRight(Session.settle(c, session)),
          Effect.catchAll((failure) => Session.end(c, session, failure))
        )
      })

    const scoped = (
      operation: string,
      plan: Either.Either<Plan, PlanError>
    ): Effect.Effect<Lock, PlanError | RemoteLockError, Scope.Scope> =>
      Either.isLeft(plan) ?
        Effect.fail(plan.left) :
        Effect.flatMap(session(operation), ([c, s]) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.acquireRelease(enqueue(operation, c, s, plan.right), ({ request }) =>
              leave(c, request)).pipe(
                Effect.flatMap(({ blocker, granted, request }) =>
                  // A failed or interrupted wait inside a larger scope leaves the
                  // queue now, not when the scope closes; so does a request
                  // whose caller was interrupted during the enqueue (the
                  // interruption lands as the region is restored), granted or not.
                  Effect.onExit(
                    restore(granted ? Effect.succeed(toLock(request)) : awaitGrant(operation, c, request, blocker)),
                    (exit) => Exit.isFailure(exit) ? leave(c, request) : Effect.void
                  ).pipe(
                    // Interrupted when the scope closes, before the release (finalizers run last first).
                    Effect.tap(() => Effect.forkScoped(guard(c, request)))
                  )
                )
              )
          ))

    const bracket = (operation: string, plan: Either.Either<Plan, PlanError>) =>
    <A, E, R>(
      effect: Effect.Effect<A, E, R> | ((lock: Lock) => Effect.Effect<A, E, R>)
    ): Effect.Effect<A, E | PlanError | RemoteLockError, R> => {
      if (Either.isLeft(plan)) return Effect.fail(plan.left)
      const use = Effect.isEffect(effect) ? () => effect : effect
      return Effect.flatMap(
        session(operation),
        ([c, s]) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.flatMap(enqueue(operation, c, s, plan.right), ({ blocker, granted, request }) =>
              (granted ?
                Effect.succeed(toLock(request)) :
                restore(awaitGrant(operation, c, request, blocker))).pipe(
                  Effect.flatMap((lock) =>
                    Effect.flatMap(
                      Effect.fork(guard(c, request)),
                      (guarding) => restore(use(lock)).pipe(Effect.ensuring(Fiber.interrupt(guarding)))
                    )
                  ),
                  Effect.ensuring(leave(c, request))
                ))
          )
      )
    }

    return {
      [TypeId]: TypeId,
      lock: (path, mode) => scoped("LockManager.lock", planOne("LockManager.lock", path, mode)),
      lockAll: (paths) => scoped("LockManager.lockAll", planAll("LockManager.lockAll", paths)),
      withLock: (path, mode) => bracket("LockManager.withLock", planOne("LockManager.withLock", path, mode)),
      withLockAll: (paths) => bracket("LockManager.withLockAll", planAll("LockManager.withLockAll", paths)),
      stats: Effect.sync(() => ({ ...stats }))
    }
  })
