/**
 * Lock server addresses. Free of @effect/rpc and @effect/platform-node (both
 * optional peers): the public modules load the server and the remote manager
 * only when used.
 *
 * @internal
 */

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

/** @internal */
export const addressOf = (
  options: { readonly socket: string } | { readonly port: number; readonly host?: string }
): Address =>
  "socket" in options ?
    { _tag: "Unix", path: options.socket } :
    { _tag: "Tcp", host: options.host ?? DEFAULT_HOST, port: options.port }
