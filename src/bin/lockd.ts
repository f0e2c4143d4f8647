#!/usr/bin/env node
/**
 * `lockd`: runs a lock server until SIGINT or SIGTERM.
 *
 *   lockd --socket /run/app/locks.sock
 *   lockd --port 7420 [--host 127.0.0.1]
 *
 * Prints one line, `lockd listening on <address>`, once it accepts
 * connections (with the actual port for `--port 0`). Exits with 2 on bad
 * arguments and 1 if it cannot listen.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as LockServer from "../LockServer.js"

const USAGE = "usage: lockd (--socket PATH | --port N [--host HOST])"

const parse = (args: ReadonlyArray<string>): LockServer.ListenOptions | string => {
  const values = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]
    if (flag === "--help" || flag === "-h") return USAGE
    if (flag !== "--socket" && flag !== "--port" && flag !== "--host") return `unknown argument ${flag}\n${USAGE}`
    const value = args[++i]
    if (value === undefined) return `${flag} needs a value\n${USAGE}`
    values.set(flag, value)
  }
  const socket = values.get("--socket")
  const port = values.get("--port")
  const host = values.get("--host")
  if ((socket === undefined) === (port === undefined)) return `give one of --socket and --port\n${USAGE}`
  if (socket !== undefined) return host === undefined ? { socket } : `--host goes with --port\n${USAGE}`
  const n = Number(port)
  if (!Number.isInteger(n) || n < 0 || n > 65535) return `--port must be an integer in 0..65535\n${USAGE}`
  return host === undefined ? { port: n } : { port: n, host }
}

const options = parse(process.argv.slice(2))
if (typeof options === "string") {
  process.stderr.write(options + "\n")
  process.exit(options === USAGE ? 0 : 2)
}

NodeRuntime.runMain(
  Effect.scoped(Effect.gen(function*() {
    const server = yield* LockServer.make(options)
    yield* Console.log(`lockd listening on ${server.address}`)
    return yield* Effect.never
  }))
)
