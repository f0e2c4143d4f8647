/**
 * Mutual authentication of a lock server connection with a shared secret, by
 * HMAC-SHA256 challenge-response.
 *
 * The client sends a nonce in `Hello`; a server with a secret answers with
 * its own nonce; the client sends HMAC(secret, client label, both nonces); the
 * server checks it in constant time and answers with HMAC(secret, server
 * label, both nonces), which the client checks in turn.
 *
 * Why not send the secret and compare it: the secret never crosses the wire,
 * so neither an eavesdropper nor a process that took the port while the server
 * was down learns it; and the client authenticates the server too, so such a
 * process cannot hand out locks. Fresh nonces on both sides make a recorded
 * proof useless on another connection, and the two labels keep either side's
 * proof from being replayed as the other's.
 *
 * What it does not do: encrypt or sign the messages after the handshake. Whoever
 * can intercept and alter the traffic can take over an authenticated
 * connection, so TCP belongs on loopback or a trusted network.
 *
 * @internal
 */
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"

/**
 * Shorter secrets are refused: a proof seen by a fake server can be attacked
 * offline, which a random secret of this length makes hopeless.
 *
 * @internal
 */
export const MIN_SECRET_BYTES = 16

/** @internal */
export type SecretInput = string | Redacted.Redacted<string>

/** The secret's bytes, or why it is refused. @internal */
export const secretOf = (input: SecretInput | undefined): Uint8Array | undefined | { readonly refused: string } => {
  if (input === undefined) return undefined
  const text = Redacted.isRedacted(input) ? Redacted.value(input) : input
  if (typeof text !== "string") return { refused: "the secret must be a string" }
  const bytes = new TextEncoder().encode(text)
  if (bytes.length < MIN_SECRET_BYTES) {
    return { refused: `the secret must be at least ${MIN_SECRET_BYTES} bytes (use a random one)` }
  }
  return bytes
}

/** 32 bytes in hex: a nonce or a proof. */
const HEX_32 = /^[0-9a-f]{64}$/

/** 32 random bytes, hex. @internal */
export const nonce = (): string => Crypto.randomBytes(32).toString("hex")

/** @internal */
export const isNonce = (value: unknown): value is string => typeof value === "string" && HEX_32.test(value)

const proof = (secret: Uint8Array, label: string, clientNonce: string, serverNonce: string): Buffer =>
  Crypto.createHmac("sha256", secret)
    .update(`effect-persistence lockd ${label}\0${clientNonce}\0${serverNonce}`)
    .digest()

/** The proof a client sends. @internal */
export const clientProof = (secret: Uint8Array, clientNonce: string, serverNonce: string): string =>
  proof(secret, "client", clientNonce, serverNonce).toString("hex")

/** The proof a server sends back. @internal */
export const serverProof = (secret: Uint8Array, clientNonce: string, serverNonce: string): string =>
  proof(secret, "server", clientNonce, serverNonce).toString("hex")

/**
 * Whether `received` is the expected proof, in time independent of where it
 * differs (the length of a proof is public).
 *
 * @internal
 */
export const verify = (expected: string, received: unknown): boolean => {
  if (typeof received !== "string" || received.length !== expected.length || !HEX_32.test(received)) return false
  return Crypto.timingSafeEqual(Buffer.from(expected, "hex"), Buffer.from(received, "hex"))
}
