/**
 * `deno task bench:gpu [--presets tiny,small] [--batch 2] [--steps 2] [--ops]`: one training
 * step of each preset on `webgpu`, with the fused WGSL kernels and with the composed tfjs ops,
 * in the same run: dispatches per step, GPU→CPU reads per step (async and synchronous) and step
 * ms. `--ops`: each fused op forward + backward against its composed form, at the `small`
 * preset's shapes (where a step's time goes).
 *
 * On software Vulkan (lavapipe) the times say nothing about a GPU; the counts do.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  attention,
  gelu,
  layerNorm,
  linear,
  setFusedEnabled,
  tf,
  tokenCrossEntropy,
  useBackend,
  webgpuAdapterDescription,
} from "../../lib/backend/mod.ts";
import { webgpuAdamW, webgpuCounters } from "../../lib/backend/webgpu_fused.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../../lib/model/mod.ts";
import { AdamW, OptimizerConfigSchema } from "../../lib/train/optimizer.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";
import { syntheticStep } from "./synthetic_step.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    presets: { type: "string", default: "tiny,small" },
    batch: { type: "string", default: "2" },
    steps: { type: "string", default: "2" },
    ops: { type: "boolean", default: false },
  },
});
const flags = z.strictObject({
  presets: z.array(z.enum(Object.keys(MODEL_PRESETS) as [keyof typeof MODEL_PRESETS])).min(1),
  batch: z.coerce.number().int().min(1).max(256),
  steps: z.coerce.number().int().min(1).max(100),
  ops: z.boolean(),
}).parse({ ...values, presets: values.presets.split(",") });

await useBackend("webgpu");
const adapter = await webgpuAdapterDescription();
const counters = webgpuCounters();
const vocabSize = Object.keys((buildSmallTokenizerJson().model as { vocab: object }).vocab).length;
console.log(`webgpu adapter: ${adapter}; batch ${flags.batch}, ${flags.steps} timed steps`);

/**
 * `syntheticStep` with the in-place webgpu AdamW (`AdamW.apply` takes its tensor path on
 * webgpu; the optimizer is not wired to `webgpuAdamW` yet). Same shapes and seeds.
 */
function adamwStep(c: ModelConfig, B: number) {
  const model = new SmallVLM(c, undefined, 0);
  const opt = new AdamW(OptimizerConfigSchema.parse({}), model.weights);
  const S = c.imageSize, T = sequenceLength(c), N = numVisualTokens(c);
  const pixels = tf.randomUniform([B, S, S, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  const ids = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 2) as tf.Tensor2D;
  const labels = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 3) as tf.Tensor2D;
  return {
    step: async (around = (update: () => tf.Tensor) => update()) => {
      const { value, grads } = tf.variableGrads(() =>
        jointNextTokenLoss(model.apply(pixels, ids), labels, [1, N + 1]).total
      );
      const norm = around(() => webgpuAdamW(opt, grads, 1e-3));
      await value.data();
      tf.dispose([value, norm, ...Object.values(grads)]);
    },
    dispose: () => {
      tf.dispose([pixels, ids, labels]);
      opt.dispose();
      model.dispose();
    },
  };
}

interface Row {
  preset: string;
  path: string;
  dispatches: number;
  reads: number;
  syncReads: number;
  optimizerDispatches: number;
  ms: number;
  top: string;
}
const rows: Row[] = [];
for (const preset of flags.presets) {
  const c = ModelConfigSchema.parse({ ...MODEL_PRESETS[preset], vocabSize });
  for (const path of ["fused+adamw", "fused", "composed"] as const) {
    setFusedEnabled(path !== "composed");
    const { step, dispose } = path === "fused+adamw"
      ? adamwStep(c, flags.batch)
      : syntheticStep(c, flags.batch);
    await step(); // warm-up: pipelines compile
    counters.reset();
    let optimizerDispatches = 0;
    const t0 = performance.now();
    for (let i = 0; i < flags.steps; i++) {
      await step((update) => {
        const before = counters.dispatches;
        const norm = update();
        optimizerDispatches += counters.dispatches - before;
        return norm;
      });
    }
    const ms = (performance.now() - t0) / flags.steps;
    rows.push({
      preset,
      path,
      dispatches: counters.dispatches / flags.steps,
      reads: counters.reads / flags.steps,
      syncReads: counters.syncReads / flags.steps,
      optimizerDispatches: optimizerDispatches / flags.steps,
      ms,
      top: [...counters.byProgram].sort((a, b) => b[1] - a[1]).slice(0, 8)
        .map(([k, n]) => `${k} ${n / flags.steps}`).join(", "),
    });
    dispose();
  }
}
setFusedEnabled(true);
console.log(
  "preset  path        dispatches/step (optimizer)  reads/step  syncReads/step  step ms",
);
for (const r of rows) {
  console.log(
    [
      r.preset.padEnd(7),
      r.path.padEnd(11),
      String(r.dispatches).padStart(15),
      `(${r.optimizerDispatches})`.padStart(11),
      String(r.reads).padStart(11),
      String(r.syncReads).padStart(15),
      r.ms.toFixed(0).padStart(8),
    ].join(" "),
  );
}
console.log("most dispatched programs per step:");
for (const r of rows) console.log(`  ${r.preset} ${r.path}: ${r.top}`);
if (flags.ops) {
  // the small preset's text shapes: T = 96, C = 128, 4 heads, MLP 4C
  const B = flags.batch, T = 96, C = 128, V = vocabSize;
  const rn = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);
  const [q, k, v, h, l] = [
    rn([B, T, C], 1),
    rn([B, T, C], 2),
    rn([B, T, C], 3),
    rn([B, T, 4 * C], 4),
    rn([B, T, V], 5),
  ];
  const [g, b, w, bias] = [rn([C], 6), rn([C], 7), rn([C, 4 * C], 8), rn([4 * C], 9)];
  const targets = tf.randomUniform([B, T], 0, V, "int32", 10);
  const ops: Array<[string, tf.Tensor[], (...x: tf.Tensor[]) => tf.Tensor]> = [
    ["attention", [q!, k!, v!], (a, c, d) => attention(a!, c!, d!, 4, true)],
    ["layerNorm", [q!, g!, b!], (a, c, d) => layerNorm(a!, c!, d!)],
    ["gelu", [h!], (a) => gelu(a!)],
    ["crossEntropy", [l!], (a) => tokenCrossEntropy(a!, targets)],
    ["linear", [q!, w!, bias!], (a, c, d) => linear(a!, c!, d!)],
  ];
  console.log("op            path      dispatches  ms (forward + backward)");
  for (const [name, xs, f] of ops) {
    for (const fused of [true, false]) {
      setFusedEnabled(fused);
      const run = async () => {
        const gs = tf.grads((...a: tf.Tensor[]) => tf.sum(f(...a)))(xs);
        await gs[0]!.data();
        tf.dispose(gs);
      };
      await run();
      counters.reset();
      const t0 = performance.now();
      for (let i = 0; i < flags.steps; i++) await run();
      const ms = (performance.now() - t0) / flags.steps;
      console.log(
        `${name.padEnd(13)} ${(fused ? "fused" : "composed").padEnd(9)} ${
          String(counters.dispatches / flags.steps).padStart(10)
        }  ${ms.toFixed(1)}`,
      );
    }
  }
  setFusedEnabled(true);
  tf.dispose([q!, k!, v!, h!, l!, g!, b!, w!, bias!, targets]);
}
console.log(`tensors alive at the end: ${tf.memory().numTensors}`);
