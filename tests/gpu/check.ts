/**
 * GPU check (run on a machine with a GPU; bundled into one file by tests/gpu/prepare.sh):
 * the `webgpu` backend over Vulkan — adapter, matmul rate, a training step's loss and
 * gradients against `cpu`, and the `small` step time next to PyTorch's on the same shapes
 * (tests/bench/torch_step.py, run by tests/gpu/run.sh). Prints one JSON object.
 */
import { tf } from "../../lib/backend/tf.ts";
import "@tensorflow/tfjs-backend-webgpu";
import {
  MODEL_PRESETS,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
  trainStepFlops,
} from "../../lib/model/mod.ts";
import type { ModelConfig } from "../../lib/model/mod.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import { AdamW, OptimizerConfigSchema } from "../../lib/train/optimizer.ts";
import { Rng } from "../../lib/util/rng.ts";

const VOCAB = 530; // the small tokenizer's size
const report: Record<string, unknown> = {};
const log = (k: string, v: unknown) => {
  report[k] = v;
  console.error(`${k}: ${JSON.stringify(v)}`);
};

function randomBatch(c: ModelConfig, B: number, seed: number) {
  const rng = new Rng(seed);
  const S = c.imageSize, T = sequenceLength(c), N = numVisualTokens(c);
  const px = Float32Array.from({ length: B * S * S * 3 }, () => rng.next());
  const ids = Int32Array.from({ length: B * T }, () => rng.int(6, VOCAB - 1));
  const labels = Int32Array.from(
    { length: B * T },
    (_, i) => (i % T === 0 ? -100 : rng.int(6, VOCAB - 1)),
  );
  return {
    pixels: tf.tensor4d(px, [B, S, S, 3]),
    inputIds: tf.tensor2d(ids, [B, T], "int32"),
    labels: tf.tensor2d(labels, [B, T], "int32"),
    vision: [1, N + 1] as [number, number],
  };
}

async function gradsOn(backend: string, c: ModelConfig) {
  await tf.setBackend(backend);
  const model = new SmallVLM(c, undefined, 7);
  const b = randomBatch(c, 4, 1);
  const { value, grads } = tf.variableGrads(() =>
    jointNextTokenLoss(model.apply(b.pixels, b.inputIds), b.labels, b.vision).total
  );
  const out = new Map<string, Float32Array>();
  for (const [n, w] of model.weights) out.set(n, (await grads[w.name]!.data()) as Float32Array);
  const loss = (await value.data())[0]!;
  tf.dispose([value, ...Object.values(grads), b.pixels, b.inputIds, b.labels]);
  model.dispose();
  return { loss, grads: out };
}

async function timeSteps(c: ModelConfig, B: number, steps: number) {
  const model = new SmallVLM(c, undefined, 0);
  const opt = new AdamW(OptimizerConfigSchema.parse({}), model.weights);
  const b = randomBatch(c, B, 2);
  const one = async () => {
    const { value, grads } = tf.variableGrads(() =>
      jointNextTokenLoss(model.apply(b.pixels, b.inputIds), b.labels, b.vision).total
    );
    const norm = opt.apply(grads, 1e-3);
    const l = (await value.data())[0]!;
    tf.dispose([value, norm, ...Object.values(grads)]);
    return l;
  };
  for (let i = 0; i < 3; i++) await one();
  const t0 = performance.now();
  let first = 0, last = 0;
  for (let i = 0; i < steps; i++) {
    last = await one();
    if (i === 0) first = last;
  }
  const ms = (performance.now() - t0) / steps;
  const flops = trainStepFlops(c, B);
  tf.dispose([b.pixels, b.inputIds, b.labels]);
  opt.dispose();
  model.dispose();
  return {
    batch: B,
    stepMs: Math.round(ms * 10) / 10,
    tokensPerSecond: Math.round((B * sequenceLength(c)) / (ms / 1000)),
    modelGflopPerSecond: Math.round(flops / (ms / 1000) / 1e9 * 10) / 10,
    lossFirst: first,
    lossLast: last,
    numTensors: tf.memory().numTensors,
  };
}

const gpu = (navigator as unknown as {
  gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> };
}).gpu;
const adapter = await gpu?.requestAdapter();
const info = adapter?.info;
log(
  "adapter",
  info
    ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" | ")
    : null,
);
if (!(await tf.setBackend("webgpu"))) {
  log("error", "webgpu backend did not initialize");
  console.log(JSON.stringify(report));
  Deno.exit(1);
}
await tf.ready();
log("backend", tf.getBackend());

// matmul rate (fp32) on webgpu
for (const n of [1024, 4096]) {
  const a = tf.randomNormal([n, n]), b = tf.randomNormal([n, n]);
  await tf.matMul(a, b).data();
  const reps = n === 4096 ? 10 : 30;
  const t0 = performance.now();
  let c: tf.Tensor | null = null;
  for (let i = 0; i < reps; i++) {
    c?.dispose();
    c = tf.matMul(a, b);
  }
  await c!.data();
  const ms = (performance.now() - t0) / reps;
  log(`matmul${n}`, {
    ms: Math.round(ms * 100) / 100,
    gflops: Math.round((2 * n ** 3) / (ms / 1000) / 1e9),
  });
  tf.dispose([a, b, c!]);
}

// correctness: tiny step, webgpu vs cpu
const tiny = ModelConfigSchema.parse({ ...MODEL_PRESETS.tiny, vocabSize: VOCAB });
const ref = await gradsOn("cpu", tiny);
const got = await gradsOn("webgpu", tiny);
let worst = 0;
for (const [n, g] of ref.grads) {
  const h = got.grads.get(n)!;
  let scale = 1e-3;
  for (const v of g) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(h[i]! - g[i]!) / scale);
}
log("agreement", { lossCpu: ref.loss, lossWebgpu: got.loss, worstRelGradDiff: worst });

await tf.setBackend("webgpu");
const small = ModelConfigSchema.parse({ ...MODEL_PRESETS.small, vocabSize: VOCAB });
log("smallConfig", small);
for (const B of [16, 64]) log(`smallStepB${B}`, await timeSteps(small, B, 10));
console.log(JSON.stringify(report));
