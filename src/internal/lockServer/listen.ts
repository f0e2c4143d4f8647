/**
 * Where the lock server listens, and the rules for a Unix socket path:
 *
 * - Nothing at the path is ever replaced except a stale socket (a socket file
 *   nothing accepts on). A regular file, a directory, a symbolic link (even to
 *   a socket) or a live socket is refused.
 * - The socket gets its permissions before anyone can reach it: it is bound,
 *   listening and `chmod`ed inside a private directory (mode 0700) created
 *   beside the path, then hard-linked into place. `link` never replaces an
 *   existing entry, so two servers cannot both place a socket at the path,
 *   and a client can never find a socket there that is bound but not yet
 *   listening (which would look stale).
 * - Taking over a stale socket is serialised between servers by binding an
 *   abstract Unix socket (Linux) named after the stale file's device and inode:
 *   the kernel lets one process bind a name, and releases it when that process
 *   dies, so a crashed server never leaves this lock behind. Its holder checks
 *   that the path still is that stale file and still dead, removes it and
 *   links its own; a server that fails to bind the name gives up. An abstract
 *   name has no permissions, so the name comes from the stale file's inode,
 *   which only users who can look inside the socket's directory learn: any
 *   other user cannot block a take-over.
 * - A server removes the path on shutdown only if it is still its own socket.
 *
 * The socket file is handled with `node:fs` rather than the platform
 * `FileSystem`: it is not the library's data but part of opening a Node
 * socket; the public `LockServer` requires no `FileSystem`; and this needs
 * `lstat` and `link` on a socket inode, next to the `node:net` calls.
 *
 * @internal
 */
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import type * as SocketServer from "@effect/platform/SocketServer"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as nodeFs from "node:fs"
import * as Net from "node:net"
import * as nodePath from "node:path"
import { RemoteLockError } from "../../PersistenceError.js"
import { type Address, formatAddress } from "./address.js"

/** How many times the path may change under a server placing its socket before it gives up. */
const ATTEMPTS = 3

const errnoOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ?
    cause.code :
    undefined

const listenFailed = (address: Address, detail: string, cause?: unknown) =>
  new RemoteLockError({
    operation: "LockServer.make",
    address: formatAddress(address),
    reason: "ListenFailed",
    detail,
    ...(cause !== undefined ? { cause } : {})
  })

const describe = (stats: nodeFs.BigIntStats): string =>
  stats.isFile() ?
    "a regular file" :
    stats.isDirectory() ?
    "a directory" :
    stats.isSymbolicLink() ?
    "a symbolic link" :
    stats.isFIFO() ?
    "a FIFO" :
    stats.isCharacterDevice() || stats.isBlockDevice() ?
    "a device" :
    "something else"

const sameFile = (a: nodeFs.BigIntStats, b: nodeFs.BigIntStats): boolean => a.dev === b.dev && a.ino === b.ino

/** `lstat`, or `undefined` if nothing is there. */
const lstat = (path: string): nodeFs.BigIntStats | undefined =>
  nodeFs.lstatSync(path, { bigint: true, throwIfNoEntry: false })

/**
 * Why a client without a secret must not trust whatever listens at the Unix
 * socket `path`, if it must not: a socket that is neither root's nor this
 * user's, or that sits (or is linked) in a directory that is neither's or
 * that others may write without the sticky bit. Whoever can put a socket
 * there could serve every lock to everyone. `undefined` when the path is
 * missing (the connection reports it) or the system has no user ids.
 *
 * @internal
 */
export const untrustedSocket = (path: string): string | undefined => {
  const euid = process.geteuid?.()
  if (euid === undefined) return undefined
  try {
    const trusted = (uid: bigint) => uid === 0n || uid === BigInt(euid)
    const untrustedDirectory = (dir: string): string | undefined => {
      const parent = nodeFs.statSync(dir, { bigint: true })
      if (!trusted(parent.uid)) {
        return `the directory ${dir} belongs to uid ${parent.uid}, neither root nor this process's user`
      }
      if ((parent.mode & 0o022n) !== 0n && (parent.mode & 0o1000n) === 0n) {
        return `the directory ${dir} may be written by other users (mode ${(parent.mode & 0o7777n).toString(8)}), ` +
          "who could replace the socket"
      }
      return undefined
    }
    // The path, and each link on the way to the socket: whoever could change one could lead elsewhere.
    let at = path
    for (let hops = 0; hops < 40; hops++) {
      const entry = lstat(at)
      if (entry === undefined) return undefined
      if (!trusted(entry.uid)) return `${at} belongs to uid ${entry.uid}, neither root nor this process's user`
      const directory = untrustedDirectory(nodePath.dirname(at))
      if (directory !== undefined || !entry.isSymbolicLink()) return directory
      at = nodePath.resolve(nodePath.dirname(at), nodeFs.readlinkSync(at))
    }
    return undefined
  } catch {
    // Not there, a loop, not reachable: the connection says so.
    return undefined
  }
}

type Probe = "alive" | "stale" | "gone" | { readonly unknown: string }

/**
 * Whether something accepts connections on the socket at `path`. Only a
 * refused connection means stale: any other failure (a full backlog, no
 * permission) says nothing about whether a server is there.
 */
const probe = (path: string): Effect.Effect<Probe> =>
  Effect.async<Probe>((resume) => {
    const socket = Net.createConnection({ path })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("alive"))
    })
    socket.once("error", (error) => {
      const code = errnoOf(error)
      resume(
        Effect.succeed(
          code === "ECONNREFUSED" ? "stale" : code === "ENOENT" ? "gone" : { unknown: code ?? String(error) }
        )
      )
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutTo({
      duration: "2 seconds",
      onSuccess: (probe) => probe,
      onTimeout: () => ({ unknown: "no answer" })
    })
  )

/**
 * Binds an abstract Unix socket: the kernel's mutual exclusion between
 * processes, released when the holder closes it or dies. `false` if another
 * process holds the name.
 */
const rendezvous = (name: string): Effect.Effect<boolean, unknown, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Net.Server | undefined, unknown>((resume) => {
      const server = Net.createServer()
      server.once("error", (error) =>
        errnoOf(error) === "EADDRINUSE" ? resume(Effect.succeed(undefined)) : resume(Effect.fail(error)))
      server.listen({ path: `\0${name}` }, () =>
        resume(Effect.succeed(server)))
    }),
    (server) =>
      server === undefined ? Effect.void : Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => server !== undefined))

const attempt = <A>(address: Address, detail: string, f: () => A): Effect.Effect<A, RemoteLockError> =>
  Effect.try({
    try: f,
    catch: (cause) => listenFailed(address, `${detail} (${errnoOf(cause) ?? String(cause)})`, cause)
  })

/** Links `bound` at `path`; `false` if something is already there. */
const linkInto = (address: Address, bound: string, path: string) =>
  Effect.try({
    try: () => {
      nodeFs.linkSync(bound, path)
      return true
    },
    catch: (cause) => cause
  }).pipe(
    Effect.catchAll((cause) =>
      errnoOf(cause) === "EEXIST" ?
        Effect.succeed(false) :
        Effect.fail(listenFailed(address, `cannot create the socket file (${errnoOf(cause) ?? String(cause)})`, cause))
    )
  )

/**
 * Puts the listening socket `bound` at `path` without replacing anything but
 * a stale socket.
 */
const place = (address: Address, bound: string, path: string): Effect.Effect<void, RemoteLockError> =>
  Effect.gen(function*() {
    for (let i = 0; i < ATTEMPTS; i++) {
      if (yield* linkInto(address, bound, path)) return
      const found = yield* attempt(address, "cannot inspect the existing file", () => lstat(path))
      if (found === undefined) continue
      if (!found.isSocket()) {
        return yield* Effect.fail(
          listenFailed(address, `the path is ${describe(found)}, not a socket: refusing to replace it`)
        )
      }
      const state = yield* probe(path)
      if (state === "gone") continue
      if (state === "alive") return yield* Effect.fail(listenFailed(address, "another server is listening there"))
      if (state !== "stale") {
        return yield* Effect.fail(
          listenFailed(address, `cannot tell whether another server listens there (${state.unknown})`)
        )
      }
      if (process.platform !== "linux") {
        return yield* Effect.fail(
          listenFailed(address, "a stale socket file is there: remove it (taking it over safely needs Linux)")
        )
      }
      const placed = yield* Effect.scoped(Effect.gen(function*() {
        const held = yield* rendezvous(`effect-persistence/lockd/take-over/${found.dev}/${found.ino}`).pipe(
          Effect.mapError((cause) => listenFailed(address, "cannot serialise the take-over of the stale socket", cause))
        )
        if (!held) {
          return yield* Effect.fail(listenFailed(address, "another server is taking over the stale socket there"))
        }
        // Another server may have replaced the stale file between the checks
        // above and the rendezvous: only that very file, still dead, goes.
        const still = yield* attempt(address, "cannot inspect the existing file", () => lstat(path))
        if (still === undefined || !sameFile(still, found)) return false
        const again = yield* probe(path)
        if (again === "alive") return yield* Effect.fail(listenFailed(address, "another server is listening there"))
        if (again === "gone") return false
        if (again !== "stale") {
          return yield* Effect.fail(
            listenFailed(address, `cannot tell whether another server listens there (${again.unknown})`)
          )
        }
        yield* attempt(address, "cannot remove the stale socket file", () => {
          try {
            nodeFs.unlinkSync(path)
          } catch (cause) {
            if (errnoOf(cause) !== "ENOENT") throw cause
          }
        })
        return yield* linkInto(address, bound, path)
      }))
      if (placed) return
    }
    return yield* Effect.fail(listenFailed(address, "the socket path kept changing while this server tried to take it"))
  })

/**
 * Runs a scoped constructor in a scope of its own, closed at once if it fails:
 * a listener must not outlive a failed start until the caller's scope closes.
 */
const transactional = <A, E>(
  effect: Effect.Effect<A, E, Scope.Scope>
): Effect.Effect<A, E, Scope.Scope> =>
  Effect.flatMap(
    Effect.scope,
    (outer) =>
      Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (inner) =>
        Scope.extend(effect, inner).pipe(Effect.onError((cause) => Scope.close(inner, Exit.failCause(cause)))))
  )

/** The longest Unix socket path on Linux: `sun_path` holds 108 bytes with the terminating NUL. */
const SOCKET_PATH_MAX = 107

const listenUnix = (
  address: Extract<Address, { readonly _tag: "Unix" }>,
  mode: number
): Effect.Effect<SocketServer.SocketServer["Type"], RemoteLockError, Scope.Scope> =>
  Effect.gen(function*() {
    const path = address.path
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      return yield* Effect.fail(
        listenFailed(address, `the socket mode must be an integer from 0 to 0o777, got ${mode}`)
      )
    }
    const dir = nodePath.dirname(path)
    // The socket is bound in a private directory beside `path`, then moved:
    // both names must fit in a socket address, which libuv cuts short
    // silently (binding a socket under another name) when they do not.
    const longest = Math.max(Buffer.byteLength(path), Buffer.byteLength(nodePath.join(dir, ".lockd-XXXXXX", "s")))
    if (longest > SOCKET_PATH_MAX) {
      return yield* Effect.fail(listenFailed(
        address,
        `the path is too long for a Unix socket: it is bound first in a private directory beside it, at ${longest} ` +
          `bytes, and a socket path holds at most ${SOCKET_PATH_MAX}; use a shorter directory`
      ))
    }
    const privateDir = yield* attempt(
      address,
      `cannot create a private directory in ${dir}`,
      () => nodeFs.mkdtempSync(nodePath.join(dir, ".lockd-"))
    )
    return yield* Effect.gen(function*() {
      const bound = nodePath.join(privateDir, "s")
      const server = yield* NodeSocketServer.make({ path: bound }).pipe(
        Effect.mapError((error) => {
          const code = errnoOf(error.cause)
          return listenFailed(
            address,
            code === "ENAMETOOLONG" || code === "EINVAL" ?
              `cannot bind a socket beside ${path}: the path is too long for a Unix socket` :
              `cannot bind a socket (${code ?? String(error.cause)})`,
            error.cause
          )
        })
      )
      yield* attempt(address, "cannot set the socket's permissions", () => nodeFs.chmodSync(bound, mode))
      const own = yield* attempt(address, "cannot inspect the socket", () => nodeFs.lstatSync(bound, { bigint: true }))
      yield* place(address, bound, path)
      // Before the listener closes (finalizers run in reverse): a successor
      // may take the path from then on, and this must not remove its socket.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          try {
            const current = lstat(path)
            if (current !== undefined && sameFile(current, own)) nodeFs.unlinkSync(path)
          } catch {
            // Gone already, or the directory is: nothing of ours is left there.
          }
        })
      )
      return server
    }).pipe(Effect.ensuring(Effect.sync(() => nodeFs.rmSync(privateDir, { recursive: true, force: true }))))
  }).pipe(transactional)

/**
 * Listens at the address: a TCP port, or a Unix socket placed by the rules
 * above with permissions `mode`.
 *
 * @internal
 */
export const listen = (
  address: Address,
  mode: number
): Effect.Effect<SocketServer.SocketServer["Type"], RemoteLockError, Scope.Scope> =>
  address._tag === "Unix" ?
    listenUnix(address, mode) :
    NodeSocketServer.make({ port: address.port, host: address.host, noDelay: true }).pipe(
      Effect.mapError((error) => {
        const code = errnoOf(error.cause)
        return listenFailed(
          address,
          code === "EADDRINUSE" ? "the port is in use" : `cannot listen (${code ?? String(error.cause)})`,
          error.cause
        )
      })
    )
