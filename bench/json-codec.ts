/**
 * What building the JSON codec on every call cost `readJson`: `npx tsx bench/json-codec.ts`.
 * Decodes one small document in process (no I/O), alternating in each round the former way (a
 * `Schema.parseJson(schema)` and its decoder built per call) and the codec built once per schema,
 * and prints microseconds per decode for each round. Not part of `npm run bench`.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { jsonCodec } from "../src/internal/jsonCodec.js"

const User = Schema.Struct({ name: Schema.String, visits: Schema.Number, tags: Schema.Array(Schema.String) })
const text = JSON.stringify({ name: "ada", visits: 3, tags: ["a", "b"] })
const N = 20_000

const perCall = () => Effect.runSync(Schema.decodeUnknown(Schema.parseJson(User))(text))
const once = () => Effect.runSync(jsonCodec(User).decode("bench", "/doc.json", text))

const microsPerCall = (f: () => unknown): number => {
  const start = performance.now()
  for (let i = 0; i < N; i++) f()
  return (performance.now() - start) / N * 1000
}

// Warm-up.
for (let i = 0; i < 2; i++) {
  microsPerCall(perCall)
  microsPerCall(once)
}
for (let round = 1; round <= 5; round++) {
  const built = microsPerCall(perCall)
  const cached = microsPerCall(once)
  console.log(
    `round ${round}: codec per call ${built.toFixed(1)} us, once per schema ${cached.toFixed(1)} us ` +
      `(${(built / cached).toFixed(1)}x)`
  )
}
