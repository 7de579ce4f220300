/**
 * `deno task bench:data`: drawn + exactly labeled samples per second on one core, 448×448,
 * per suite; and the dataset writer's rate (PNG encoding and disk included).
 *
 *   --n N (samples per suite, default 200)
 */
import { parseArgs } from "node:util";
import { generateDataset, generateSample } from "../../lib/data/mod.ts";
import { buildLabelSet, LabelOptionsSchema } from "../../lib/labels/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";

const { values } = parseArgs({ args: Deno.args, options: { n: { type: "string" } } });
const n = Number(values.n ?? 200);
const tokenizer = await getTokenizer("dvsft-small");
const o = LabelOptionsSchema.parse({});
console.log(
  `drawn + exactly labeled (qwen2-vl, dvsft-small), 448x448, ${n} samples per suite, one core:`,
);
let all = 0, allMs = 0;
for (
  const suite of [
    "train",
    "text-reading",
    "doc-kv",
    "table-lookup",
    "heldout-fonts",
    "degraded",
    "charts",
    "dense-text",
  ]
) {
  await generateSample(suite, 0, 448);
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const g = await generateSample(suite, k, 448);
    buildLabelSet({
      image: { sha256: "", width: 448, height: 448 },
      words: g.words,
      source: { kind: "render" },
      tokenizer,
      geometry: o.geometry,
      policy: o.policy,
      minConfidence: 0,
    });
  }
  const ms = performance.now() - t0;
  all += n;
  allMs += ms;
  console.log(`  ${suite.padEnd(14)} ${(n / (ms / 1000)).toFixed(1).padStart(7)} samples/s`);
}
console.log(
  `  ${"all".padEnd(14)} ${
    (all / (allMs / 1000)).toFixed(1).padStart(7)
  } samples/s  (target ≥ 100)`,
);
const dir = await Deno.makeTempDir();
const t0 = performance.now();
await generateDataset({ suite: "train", n, shardSize: 100, size: 448 }, { out: dir });
console.log(
  `dataset writer (PNG + records + hashes on disk): ${
    (n / ((performance.now() - t0) / 1000)).toFixed(1)
  } samples/s`,
);
await Deno.remove(dir, { recursive: true });
