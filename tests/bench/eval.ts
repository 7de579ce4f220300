/**
 * `deno task bench:eval`: greedy-decoding throughput (items/s) of the KV-cache decoder
 * (`greedyDecodeCached`, lib/model/decode.ts) and the full-recompute decoder (`greedyDecode`,
 * lib/eval/evaluate.ts) on the same model and the same items, in the same run, interleaved
 * (old, new, old, new…), and their ratio. Both outputs are checked to be the same token ids.
 *
 *   --preset tiny|small (default small)   --items N (default 16, one batch)   --tokens N (16)
 *   --rounds R (default 2)   --backend wasm|cpu|… (default auto)
 *   --checkpoint DIR: a trained checkpoint instead of a seeded random model
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { BackendNameSchema, useBackend } from "../../lib/backend/mod.ts";
import { makeReadingSample } from "../../lib/data/mod.ts";
import { greedyDecode, modelFromCheckpoint } from "../../lib/eval/mod.ts";
import { greedyDecodeCached } from "../../lib/model/decode.ts";
import { MODEL_PRESETS, ModelConfigSchema, sequenceLength, SmallVLM } from "../../lib/model/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string" },
    items: { type: "string" },
    tokens: { type: "string" },
    rounds: { type: "string" },
    backend: { type: "string" },
    checkpoint: { type: "string" },
  },
});
const flags = z.strictObject({
  preset: z.enum(["tiny", "small"]).default("small"),
  items: z.coerce.number().int().min(1).max(256).default(16),
  tokens: z.coerce.number().int().min(1).max(256).default(16),
  rounds: z.coerce.number().int().min(1).max(20).default(2),
  backend: BackendNameSchema.default("auto"),
  checkpoint: z.string().optional(),
}).parse(values);

const backend = await useBackend(flags.backend);
const tokenizer = await getTokenizer("dvsft-small");
const model = flags.checkpoint ? (await modelFromCheckpoint(flags.checkpoint)).model : new SmallVLM(
  ModelConfigSchema.parse({ ...MODEL_PRESETS[flags.preset], vocabSize: tokenizer.vocabSize }),
  undefined,
  1,
);
const config = model.config;
const samples = Array.from(
  { length: flags.items },
  (_, i) => makeReadingSample(i, { config, tokenizer, seed: 5 }),
);

const time = async (f: () => Promise<number[][]>) => {
  const t0 = performance.now();
  const ids = await f();
  return { ids, s: (performance.now() - t0) / 1000 };
};
// warm-up: kernels compiled, caches filled, for both
await greedyDecode(model, samples.slice(0, 1), 2);
await greedyDecodeCached(model, samples.slice(0, 1), 2);

const oldS: number[] = [], newS: number[] = [];
let tokens = 0;
for (let r = 0; r < flags.rounds; r++) {
  const a = await time(() => greedyDecode(model, samples, flags.tokens));
  const b = await time(() => greedyDecodeCached(model, samples, flags.tokens));
  if (JSON.stringify(a.ids) !== JSON.stringify(b.ids)) {
    throw new Error(`round ${r}: the two decoders wrote different token ids`);
  }
  tokens = a.ids.reduce((n, x) => n + x.length, 0);
  oldS.push(a.s);
  newS.push(b.s);
  console.log(
    `round ${r + 1}: full recompute ${(flags.items / a.s).toFixed(2)} items/s, ` +
      `KV cache ${(flags.items / b.s).toFixed(2)} items/s, ratio ${(a.s / b.s).toFixed(1)}x`,
  );
}
const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
const oldRate = (flags.items * flags.rounds) / sum(oldS);
const newRate = (flags.items * flags.rounds) / sum(newS);
console.log(
  `\n${flags.checkpoint ?? `${flags.preset} (seeded random init)`} on ${backend}: ` +
    `${flags.items} items, ≤ ${flags.tokens} new tokens (${tokens} generated per pass), ` +
    `sequence length ${sequenceLength(config)}, ${flags.rounds} interleaved rounds`,
);
console.log(`full recompute (greedyDecode):     ${oldRate.toFixed(2)} items/s`);
console.log(`KV cache (greedyDecodeCached):     ${newRate.toFixed(2)} items/s`);
console.log(
  `ratio:                             ${(newRate / oldRate).toFixed(1)}x (same token ids)`,
);
model.dispose();
