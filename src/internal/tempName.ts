/**
 * Names of temp files: `.<name>.<token>.<suffix>`, where the token is 12
 * random characters from [0-9a-z] followed by 8 more that are a check of the
 * rest of the name (the name part, the random part and the suffix).
 *
 * `recover` deletes what it takes for a temp file and `collect` hides it, so
 * the test must not match names people give their own files: a timestamp or a
 * random string where the token goes (`.notes.202401011200.tmp`) is not enough,
 * the check must hold too, which a name not made here matches by chance once
 * in 36^8 (2.8e12). And the Client refuses to create a path with a segment
 * that passes the test, so only a program other than this library can make
 * one on purpose.
 *
 * The name part is the target's name cut to what fits in 255 bytes of UTF-8
 * (NAME_MAX on Linux and most file systems) with the rest of the temp name,
 * never inside a character: a temp name is always valid UTF-8, so the name
 * read back from the directory is the one the check was computed on.
 *
 * @internal
 */

import * as Crypto from "node:crypto"

/** The longest file name, in bytes, on Linux file systems (ext4, xfs, btrfs, tmpfs). */
export const NAME_MAX = 255

/**
 * The longest `tempSuffix` in UTF-8 bytes: the name part keeps at least 165
 * bytes of the target's name.
 *
 * @internal
 */
export const SUFFIX_MAX = 64

const RANDOM_LENGTH = 12
const CHECK_LENGTH = 8
/** @internal */
export const TOKEN_LENGTH = RANDOM_LENGTH + CHECK_LENGTH
const CHECK_MODULUS = 36 ** CHECK_LENGTH

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
const DIGITS = Array.from(ALPHABET, (c) => c.charCodeAt(0))
const SLASH = 47

// Random bytes drawn in blocks: one kernel call per few hundred names.
const pool = new Uint8Array(4096)
let poolAt = pool.length

// The character codes of one token (random part, then check), filled in
// place: a name costs one string for its token, not one per character.
const token: Array<number> = new Array(TOKEN_LENGTH).fill(0)

/**
 * Fills the random part of `token`: 12 characters from [0-9a-z], from the
 * system's cryptographic generator, so another local user cannot predict the
 * next temp name (and occupy it). `Math.random().toString(36)` was
 * predictable and cost most of a name.
 */
const drawRandom = (): void => {
  let at = poolAt
  for (let n = 0; n < RANDOM_LENGTH;) {
    if (at === pool.length) {
      Crypto.randomFillSync(pool)
      at = 0
    }
    const byte = pool[at++]
    // 252 = 7 x 36: the bytes above would favour the first four characters.
    if (byte < 252) token[n++] = DIGITS[byte % 36]
  }
  poolAt = at
}

/**
 * cyrb53 (a public-domain 53-bit string hash): stable across processes and
 * versions, which the check must be (a leftover is recognised by the next
 * process, maybe of a later version). Its state lives here between the calls
 * that feed one text (each hash runs in one synchronous call).
 */
let h1 = 0
let h2 = 0

const hashUnit = (c: number): void => {
  h1 = Math.imul(h1 ^ c, 2654435761)
  h2 = Math.imul(h2 ^ c, 1597334677)
}

const hashString = (s: string): void => {
  for (let i = 0; i < s.length; i++) hashUnit(s.charCodeAt(i))
}

const isAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/**
 * The check of a temp name, as a number below 36^8: cyrb53 of
 * `<name part>/<random part>/<suffix>` in NFC, so that a file system that
 * stores names decomposed (macOS) gives back a recognisable name. The random
 * part is the first 12 codes of `random` (token characters: ASCII).
 */
const checkOf = (namePart: string, random: ArrayLike<number>, suffix: string): number => {
  h1 = 0xdeadbeef
  h2 = 0x41c6ce57
  if (isAscii(namePart) && isAscii(suffix)) {
    // ASCII is its own NFC: the parts are hashed where they are, not joined.
    hashString(namePart)
    hashUnit(SLASH)
    for (let i = 0; i < RANDOM_LENGTH; i++) hashUnit(random[i])
    hashUnit(SLASH)
    hashString(suffix)
  } else {
    let randomPart = ""
    for (let i = 0; i < RANDOM_LENGTH; i++) randomPart += String.fromCharCode(random[i])
    hashString(`${namePart}/${randomPart}/${suffix}`.normalize("NFC"))
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)) % CHECK_MODULUS
}

// A check is below 36^8: each half of its digits is below 36^4 (2^21).
const HALF = 36 ** (CHECK_LENGTH / 2)

/**
 * Writes the 8 base-36 digits of a check, most significant first, into
 * `codes` from `at`. By hand: Number#toString(36) of a double above 2^31 is
 * slow in V8, and so is `%` on one; each half of the check is a small integer.
 */
const checkDigits = (check: number, codes: Array<number>, at: number): void => {
  const high = Math.floor(check / HALF)
  let low = check - high * HALF
  let rest = high
  for (let i = CHECK_LENGTH - 1; i >= CHECK_LENGTH / 2; i--) {
    codes[at + i] = DIGITS[low % 36]
    low = (low / 36) | 0
  }
  for (let i = CHECK_LENGTH / 2 - 1; i >= 0; i--) {
    codes[at + i] = DIGITS[rest % 36]
    rest = (rest / 36) | 0
  }
}

/**
 * The UTF-8 length of a well-formed string.
 *
 * @internal
 */
export const utf8Length = (s: string): number => {
  let bytes = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && isLow(s.charCodeAt(i + 1))) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * `s` with each lone surrogate replaced by U+FFFD, which is what the file
 * system gets when Node encodes it in UTF-8.
 *
 * @internal
 */
export const wellFormed = (s: string): string => /[\uD800-\uDFFF]/.test(s) ? s.replace(loneSurrogate, "\uFFFD") : s

/**
 * The longest prefix of a well-formed `s` that takes at most `max` bytes of
 * UTF-8, cut between code points (never inside a surrogate pair).
 *
 * @internal
 */
export const cutToBytes = (s: string, max: number): string => {
  // Each UTF-16 unit is at most 3 bytes of UTF-8.
  if (s.length * 3 <= max) return s
  let bytes = 0
  let i = 0
  while (i < s.length) {
    const c = s.charCodeAt(i)
    const pair = c >= 0xd800 && c <= 0xdbff && isLow(s.charCodeAt(i + 1))
    const size = c < 0x80 ? 1 : c < 0x800 ? 2 : pair ? 4 : 3
    if (bytes + size > max) break
    bytes += size
    i += pair ? 2 : 1
  }
  return s.slice(0, i)
}

/**
 * A fresh temp name for a file named `name` (a `suffix` already checked by
 * `validSuffix`).
 *
 * @internal
 */
export const tempName = (name: string, suffix: string): string => {
  const budget = NAME_MAX - utf8Length(suffix) - TOKEN_LENGTH - 3
  const namePart = cutToBytes(wellFormed(name), budget)
  drawRandom()
  checkDigits(checkOf(namePart, token, suffix), token, RANDOM_LENGTH)
  return `.${namePart}.${String.fromCharCode.apply(null, token)}.${suffix}`
}

const isTokenChar = (c: number) => (c >= 48 && c <= 57) || (c >= 97 && c <= 122)

/**
 * Whether `name` (one path segment) is a temp name with the suffix `suffix`,
 * as `tempName` makes them: `.`, a non-empty name part, `.`, 20 characters
 * from [0-9a-z] whose last 8 are the check of the rest, `.`, the suffix.
 *
 * @internal
 */
export const isTempName = (name: string, suffix: string): boolean => {
  const tokenEnd = name.length - suffix.length - 1
  const tokenStart = tokenEnd - TOKEN_LENGTH
  // The leading dot, one character of name part, the dot before the token.
  if (tokenStart < 3 || name.charCodeAt(0) !== 46 || name.charCodeAt(tokenStart - 1) !== 46) return false
  if (name.charCodeAt(tokenEnd) !== 46 || !name.endsWith(suffix)) return false
  for (let i = tokenStart; i < tokenEnd; i++) if (!isTokenChar(name.charCodeAt(i))) return false
  // The token as `tempName` fills it: the random part read, the check computed.
  const codes: Array<number> = []
  for (let i = 0; i < RANDOM_LENGTH; i++) codes.push(name.charCodeAt(tokenStart + i))
  checkDigits(checkOf(name.slice(1, tokenStart - 1), codes, suffix), codes, RANDOM_LENGTH)
  for (let i = RANDOM_LENGTH; i < TOKEN_LENGTH; i++) if (name.charCodeAt(tokenStart + i) !== codes[i]) return false
  return true
}

/**
 * Whether `name` is a temp name for some suffix: what the Client refuses to
 * create, whatever its own `tempSuffix`, so that no Client makes a file that
 * another Client's `recover` would remove.
 *
 * @internal
 */
export const isAnyTempName = (name: string): boolean => {
  // A temp name fits in NAME_MAX bytes of UTF-8, and a UTF-16 unit takes at
  // least one: a longer name is none (and a hostile one costs one check).
  if (name.length > NAME_MAX || name.charCodeAt(0) !== 46) return false
  // The suffix is what follows a dot that follows a token; a suffix may
  // itself hold dots, so every dot close enough to the end (a suffix takes
  // at most SUFFIX_MAX bytes) is a candidate.
  const first = Math.max(TOKEN_LENGTH + 3, name.length - SUFFIX_MAX - 1)
  for (let dot = name.indexOf(".", first); dot !== -1; dot = name.indexOf(".", dot + 1)) {
    const suffix = name.slice(dot + 1)
    if (suffix.length > 0 && isTempName(name, suffix)) return true
  }
  return false
}
