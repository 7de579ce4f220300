/**
 * Where a webgpu training step spends its time: forward / backward / optimizer split,
 * the number of kernels a step dispatches, and the slowest kernels (tf.profile).
 */
import { tf } from "../../lib/backend/tf.ts";
import "@tensorflow/tfjs-backend-webgpu";
import {
  MODEL_PRESETS,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../../lib/model/mod.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import { AdamW, OptimizerConfigSchema } from "../../lib/train/optimizer.ts";

const batchFlag = Number(Deno.args[0] ?? 16);
const submitBatch = Deno.args[1];
await tf.setBackend("webgpu");
await tf.ready();
if (submitBatch) tf.env().set("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE", Number(submitBatch));
const c = ModelConfigSchema.parse({ ...MODEL_PRESETS.small, vocabSize: 530 });
const B = batchFlag, S = c.imageSize, T = sequenceLength(c), N = numVisualTokens(c);
const model = new SmallVLM(c, undefined, 0);
const opt = new AdamW(OptimizerConfigSchema.parse({}), model.weights);
const pixels = tf.randomUniform([B, S, S, 3]) as tf.Tensor4D;
const ids = tf.randomUniform([B, T], 6, 529, "int32") as tf.Tensor2D;
const labels = tf.randomUniform([B, T], 6, 529, "int32") as tf.Tensor2D;
const lossFn = () => jointNextTokenLoss(model.apply(pixels, ids), labels, [1, N + 1]).total;
const step = async () => {
  const { value, grads } = tf.variableGrads(lossFn);
  const n = opt.apply(grads, 1e-3);
  await value.data();
  tf.dispose([value, n, ...Object.values(grads)]);
};
for (let i = 0; i < 3; i++) await step();
const time = async (label: string, f: () => Promise<void>, reps = 5) => {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await f();
  console.log(`${label}: ${((performance.now() - t0) / reps).toFixed(1)} ms`);
};
await time("forward", async () => {
  const l = tf.tidy(lossFn);
  await l.data();
  l.dispose();
});
await time("forward+backward", async () => {
  const { value, grads } = tf.variableGrads(lossFn);
  await value.data();
  await Object.values(grads).at(-1)!.data();
  tf.dispose([value, ...Object.values(grads)]);
});
await time("full step", step);
const prof = await tf.profile(async () => {
  const { value, grads } = tf.variableGrads(lossFn);
  const n = opt.apply(grads, 1e-3);
  await value.data();
  tf.dispose([value, n, ...Object.values(grads)]);
});
console.log(
  `kernels per step: ${prof.kernels.length}, newTensors ${prof.newTensors}, peakBytes ${prof.peakBytes}`,
);
const rows = await Promise.all(prof.kernels.map(async (k) => ({
  name: k.name,
  ms: typeof k.kernelTimeMs === "number"
    ? k.kernelTimeMs
    : (await k.kernelTimeMs as unknown as number),
  shapes: JSON.stringify(k.inputShapes),
})));
const byName = new Map<string, { n: number; ms: number }>();
for (const r of rows) {
  const e = byName.get(r.name) ?? { n: 0, ms: 0 };
  e.n++;
  e.ms += Number(r.ms) || 0;
  byName.set(r.name, e);
}
console.log(
  "by kernel:",
  JSON.stringify([...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)),
);
console.log(
  "slowest:",
  JSON.stringify(rows.sort((a, b) => (Number(b.ms) || 0) - (Number(a.ms) || 0)).slice(0, 12)),
);
