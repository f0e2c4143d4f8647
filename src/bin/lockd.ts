#!/usr/bin/env node
/**
 * `lockd`: runs a lock server until SIGINT or SIGTERM.
 *
 *   lockd --socket /run/app/locks.sock [--mode 660]
 *   lockd --port 7420 [--host 127.0.0.1] [--secret-file /etc/app/lockd.secret]
 *
 * `--mode` sets the socket's permissions in octal (default 600: owner only).
 * `--max-heartbeat-deadline` bounds the heartbeat deadline clients get
 * (default 10s), `--grace-period` how long after starting nothing is granted
 * (default the maximum deadline: holders of a server that ran before may still
 * trust their leases; 0 on a first start). Durations are milliseconds, or
 * seconds with an `s` suffix (`500`, `2.5s`). `--max-connections` bounds the
 * connections served at once (default 4096).
 * The shared secret comes from `--secret-file` (a file only its owner may
 * read or write) or the `LOCKD_SECRET` environment variable, never from the
 * command line, where `ps` would show it to every user; whitespace around it
 * (a trailing newline) is ignored.
 *
 * Prints one line, `lockd listening on <address>`, once it accepts
 * connections (with the actual port for `--port 0`), and on stderr one line
 * saying how long it grants nothing, unless the grace period is 0. Exits
 * with 2 on bad arguments and 1, after one line on stderr, if it cannot start.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as nodeFs from "node:fs"
import * as LockServer from "../LockServer.js"

const USAGE = "usage: lockd (--socket PATH [--mode OCTAL] | --port N [--host HOST]) [--secret-file PATH]\n" +
  "             [--max-heartbeat-deadline DURATION] [--grace-period DURATION] [--max-connections N]\n" +
  "       (the secret may be in the LOCKD_SECRET environment variable; DURATION: 500, 2.5s)"

const FLAGS = new Set([
  "--socket",
  "--mode",
  "--port",
  "--host",
  "--secret-file",
  "--max-heartbeat-deadline",
  "--grace-period",
  "--max-connections"
])

interface Parsed {
  readonly listen: { readonly socket: string; readonly mode?: number } | {
    readonly port: number
    readonly host?: string
  }
  readonly secretFile: string | undefined
  readonly settings: {
    readonly maxHeartbeatDeadline?: number
    readonly gracePeriod?: number
    readonly maxConnections?: number
  }
}

/** Milliseconds from `500` or `2.5s`; undefined if it is neither. */
const parseDuration = (text: string): number | undefined => {
  const match = /^(\d{1,9}(?:\.\d{1,3})?)(s?)$/.exec(text)
  return match === null ? undefined : Number(match[1]) * (match[2] === "s" ? 1000 : 1)
}

const parse = (args: ReadonlyArray<string>): Parsed | string => {
  const values = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]
    if (flag === "--help" || flag === "-h") return USAGE
    if (flag === "--secret") return `--secret would show the secret to every user (ps): use --secret-file\n${USAGE}`
    if (!FLAGS.has(flag)) return `unknown argument ${flag}\n${USAGE}`
    const value = args[++i]
    if (value === undefined) return `${flag} needs a value\n${USAGE}`
    values.set(flag, value)
  }
  const socket = values.get("--socket")
  const port = values.get("--port")
  const host = values.get("--host")
  const mode = values.get("--mode")
  const secretFile = values.get("--secret-file")
  const settings: { maxHeartbeatDeadline?: number; gracePeriod?: number; maxConnections?: number } = {}
  for (
    const [flag, key] of [["--max-heartbeat-deadline", "maxHeartbeatDeadline"], [
      "--grace-period",
      "gracePeriod"
    ]] as const
  ) {
    const value = values.get(flag)
    if (value === undefined) continue
    const millis = parseDuration(value)
    if (millis === undefined) return `${flag} must be a duration such as 500 (milliseconds) or 2.5s\n${USAGE}`
    settings[key] = millis
  }
  const maxConnections = values.get("--max-connections")
  if (maxConnections !== undefined) {
    // Decimal digits only, as --port: Number() would read "" as 0 and "0x10" as 16.
    const n = /^0*\d{1,15}$/.test(maxConnections) ? Number(maxConnections) : 0
    if (!(n >= 1)) return `--max-connections must be a positive integer\n${USAGE}`
    settings.maxConnections = n
  }
  if ((socket === undefined) === (port === undefined)) return `give one of --socket and --port\n${USAGE}`
  if (socket !== undefined) {
    if (host !== undefined) return `--host goes with --port\n${USAGE}`
    if (mode === undefined) return { listen: { socket }, secretFile, settings }
    if (!/^[0-7]{1,4}$/.test(mode) || Number.parseInt(mode, 8) > 0o777) {
      return `--mode must be octal permissions such as 600 or 660\n${USAGE}`
    }
    return { listen: { socket, mode: Number.parseInt(mode, 8) }, secretFile, settings }
  }
  if (mode !== undefined) return `--mode goes with --socket\n${USAGE}`
  // Decimal digits only: Number() would read "" and " " as 0 (a random port) and "0x10" as 16.
  const n = /^\d{1,5}$/.test(port!) ? Number(port) : NaN
  if (!(n <= 65535)) return `--port must be an integer in 0..65535\n${USAGE}`
  return { listen: host === undefined ? { port: n } : { port: n, host }, secretFile, settings }
}

/** A one-line failure: lockd prints it and exits with 1. */
class StartError extends Error {}

/** The largest secret file read: a secret is a few dozen bytes. */
const MAX_SECRET_FILE = 64 * 1024

/** How long a pipe may take to deliver its secret. */
const PIPE_DEADLINE_MS = 10_000

/**
 * The secret file's text. Opened without blocking (a FIFO without a writer
 * would block the open, past any signal), checked on the descriptor opened
 * (what is read is what was checked): a regular file or a pipe
 * (`--secret-file <(pass show lockd)`), of root or this user, that nobody else
 * may read; read from the descriptor to its end, at most `MAX_SECRET_FILE`
 * bytes. Through `node:fs`: the platform's reads of an open file seek, which
 * a pipe cannot.
 */
const readSecretFile = async (file: string): Promise<string> => {
  const handle = await nodeFs.promises.open(file, nodeFs.constants.O_RDONLY | nodeFs.constants.O_NONBLOCK)
  try {
    const info = await handle.stat()
    if (!info.isFile() && !info.isFIFO()) {
      throw new StartError(`the secret file ${file} is neither a regular file nor a pipe`)
    }
    if ((info.mode & 0o077) !== 0) {
      throw new StartError(
        `the secret file ${file} is accessible to other users (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`
      )
    }
    // Whoever owns it knows the secret.
    const euid = process.geteuid?.()
    if (euid !== undefined && info.uid !== euid && info.uid !== 0) {
      throw new StartError(
        `the secret file ${file} belongs to uid ${info.uid}, neither root nor this user: whoever owns it knows it`
      )
    }
    const buffer = Buffer.alloc(MAX_SECRET_FILE + 1)
    const deadline = Date.now() + PIPE_DEADLINE_MS
    let length = 0
    while (length <= MAX_SECRET_FILE) {
      let n: number
      try {
        n = (await handle.read(buffer, length, buffer.length - length, null)).bytesRead
      } catch (error) {
        // A pipe whose writer has not written yet.
        if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() > deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, 10))
        continue
      }
      if (n === 0) {
        // A named pipe whose writer has not opened it yet reads as ended: wait for one.
        if (length > 0 || !info.isFIFO() || Date.now() > deadline) break
        await new Promise((resolve) => setTimeout(resolve, 10))
        continue
      }
      length += n
    }
    if (length > MAX_SECRET_FILE) {
      throw new StartError(`the secret file ${file} holds more than ${MAX_SECRET_FILE} bytes: is it the right file?`)
    }
    return new TextDecoder().decode(buffer.subarray(0, length))
  } finally {
    await handle.close()
  }
}

/**
 * The secret from the file or the environment. A file others may read is
 * refused, as ssh refuses such a key: the secret would not be one.
 */
const readSecret = (file: string | undefined): Effect.Effect<Redacted.Redacted<string> | undefined, StartError> =>
  Effect.gen(function*() {
    const fromEnv = process.env.LOCKD_SECRET
    // Not inherited by anything this process might start.
    delete process.env.LOCKD_SECRET
    if (file === undefined) return fromEnv === undefined ? undefined : Redacted.make(fromEnv.trim())
    if (fromEnv !== undefined) {
      return yield* Effect.fail(new StartError("give the secret one way: --secret-file or LOCKD_SECRET"))
    }
    const text = yield* Effect.tryPromise({
      try: () => readSecretFile(file),
      catch: (error) =>
        error instanceof StartError ? error : new StartError(`cannot read the secret file: ${(error as Error).message}`)
    })
    return Redacted.make(text.trim())
  })

const parsed = parse(process.argv.slice(2))
if (typeof parsed === "string") {
  process.stderr.write(parsed + "\n")
  process.exit(parsed === USAGE ? 0 : 2)
}

const main = Effect.gen(function*() {
  const secret = yield* readSecret(parsed.secretFile)
  if (secret === undefined && "port" in parsed.listen) {
    yield* Effect.sync(() =>
      process.stderr.write(
        "lockd: warning: no secret: whoever can reach the port (every local user on loopback) can take locks\n"
      )
    )
  }
  yield* Effect.scoped(Effect.gen(function*() {
    const server = yield* LockServer.make({
      ...parsed.listen,
      ...(secret === undefined ? {} : { secret }),
      ...parsed.settings
    })
    yield* Console.log(`lockd listening on ${server.address}`)
    const grace = Duration.toMillis(server.gracePeriod)
    if (grace > 0) {
      // Requests wait meanwhile: say why, where the operator looks.
      yield* Effect.sync(() =>
        process.stderr.write(
          `lockd: grace period: granting locks in ${grace} ms (holders of a server that ran here before may still ` +
            "count on their leases; --grace-period 0 when none can have)\n"
        )
      )
    }
    return yield* Effect.never
  }))
}).pipe(
  Effect.tapError((error) => Effect.sync(() => process.stderr.write(`lockd: ${error.message}\n`)))
)

NodeRuntime.runMain(main, { disableErrorReporting: true })
