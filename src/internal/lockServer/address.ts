/**
 * Lock server addresses. Free of @effect/rpc and @effect/platform-node (both
 * optional peers): the public modules load the server and the remote manager
 * only when used.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Input from "../input.js"

/**
 * Where a server listens: a Unix domain socket or a TCP port.
 *
 * @internal
 */
export type Address =
  | { readonly _tag: "Unix"; readonly path: string }
  | { readonly _tag: "Tcp"; readonly host: string; readonly port: number }

/** @internal */
export const formatAddress = (address: Address): string =>
  address._tag === "Unix" ? `unix:${address.path}` : `tcp:${address.host}:${address.port}`

/** Loopback unless told otherwise: the server has no authentication. */
const DEFAULT_HOST = "127.0.0.1"

/**
 * The address of server or client options, or why they give none: a socket
 * path or a TCP port (0 to 65535, on `host`), not both. An empty host would
 * listen on every interface, and a NUL byte would cut a path or host short.
 *
 * @internal
 */
export const addressOf = (options: unknown): Either.Either<Address, Input.Refusal> => {
  if (typeof options !== "object" || options === null) {
    return Input.refuse("options", `expected an object, got ${Input.describe(options)}`)
  }
  const { host, port, socket } = options as Record<string, unknown>
  if (socket !== undefined) {
    if (port !== undefined) return Input.refuse("options", "give a socket or a port, not both")
    return Either.map(Input.text("options.socket", socket), (path): Address => ({ _tag: "Unix", path }))
  }
  if (port === undefined) return Input.refuse("options", "give a socket (a path) or a port")
  if (!(Number.isInteger(port) && (port as number) >= 0 && (port as number) <= 65535)) {
    return Input.refuse("options.port", `expected an integer from 0 to 65535, got ${Input.describe(port)}`)
  }
  return Either.map(
    host === undefined ? Either.right(DEFAULT_HOST) : Input.text("options.host", host),
    (host): Address => ({ _tag: "Tcp", host, port: port as number })
  )
}
