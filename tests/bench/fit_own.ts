/**
 * How large a model of our own architecture (`SmallVLM`) trains on a backend: full fine-tuning
 * (weights, gradients and both AdamW moments on the backend) of the `small` preset widened and
 * deepened, one step on synthetic inputs; prints parameters, the backend's bytes after the step
 * and the time, or dies with the backend's error past its bound (run one size per process).
 *
 *   deno run -A tests/bench/fit_own.ts [backend=wasm] [dim=1024] [layers=12] [batch=1]
 */
import { tf, useBackend, wasmHeapBytes } from "../../lib/backend/mod.ts";
import { MODEL_PRESETS, ModelConfigSchema } from "../../lib/model/mod.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";
import { syntheticStep } from "./synthetic_step.ts";

const [backend = "wasm", dimArg = "1024", layersArg = "12", batchArg = "1"] = Deno.args;
await useBackend(backend as "wasm" | "cpu" | "webgpu");
const vocabSize = Object.keys((buildSmallTokenizerJson().model as { vocab: object }).vocab).length;
const dim = Number(dimArg);
const c = ModelConfigSchema.parse({
  ...MODEL_PRESETS.small,
  vocabSize,
  dim,
  layers: Number(layersArg),
  heads: dim / 64,
});
const t0 = performance.now();
const { step, dispose, parameters: params } = syntheticStep(c, Number(batchArg));
console.log(
  `${backend}: SmallVLM dim ${dim}, ${layersArg} layers, batch ${batchArg}: ${
    (params / 1e6).toFixed(0)
  } M parameters (${(params * 16 / 2 ** 30).toFixed(2)} GiB with gradients and AdamW moments)`,
);
for (let i = 0; i < 2; i++) {
  const s = performance.now();
  await step();
  console.log(
    `step ${i + 1}: ${((performance.now() - s) / 1000).toFixed(1)} s, ${
      (tf.memory().numBytes / 2 ** 30).toFixed(2)
    } GiB of tensors held after it${
      wasmHeapBytes() ? `, heap ${(wasmHeapBytes()! / 2 ** 30).toFixed(2)} GiB` : ""
    }`,
  );
}
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
dispose();
