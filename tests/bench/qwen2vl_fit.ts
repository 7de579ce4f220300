/**
 * Does a Qwen2-VL of real width fit a backend? Builds Qwen2-VL-2B's architecture
 * (tests/fixtures/qwen2vl/real_configs) with fewer decoder layers and vision blocks, random
 * weights, and runs one DV-SFT step (LoRA on q/v/qkv, or full fine-tuning gradients) on a
 * 224×224 image; prints parameters, tensor bytes held and the time.
 *
 *   npx -y deno@2.9.6 run -A tests/bench/qwen2vl_fit.ts [backend] [decoder layers] [vision blocks] [lora|full]
 */
import { tf, useBackend, wasmHeapBytes } from "../../lib/backend/mod.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import {
  addLora,
  parseQwenConfig,
  qwenParameterCount,
  QwenVLModel,
  randomQwenWeights,
  trainableWeights,
} from "../../lib/model/qwen2vl/mod.ts";

const [backendArg = "wasm", layersArg = "4", blocksArg = "4", mode = "lora"] = Deno.args;
const backend = await useBackend(backendArg as "wasm" | "cpu" | "webgpu");
const json = JSON.parse(
  await Deno.readTextFile(
    new URL("../fixtures/qwen2vl/real_configs/qwen2_vl_2b_instruct.json", import.meta.url),
  ),
);
json.num_hidden_layers = Number(layersArg);
json.vision_config.depth = Number(blocksArg);
const config = parseQwenConfig(json);
const n = qwenParameterCount(config);
console.log(
  `${backend}: Qwen2-VL-2B width, ${layersArg} decoder layers, ${blocksArg} vision blocks: ${
    (n / 1e6).toFixed(0)
  } M parameters (${(4 * n / 2 ** 30).toFixed(2)} GiB f32), ${mode}`,
);
const t0 = performance.now();
const model = new QwenVLModel(config, QwenVLModel.variables(randomQwenWeights(config, 0)));
console.log(
  `weights made in ${((performance.now() - t0) / 1000).toFixed(1)} s${
    wasmHeapBytes() ? `, wasm heap ${(wasmHeapBytes()! / 2 ** 30).toFixed(2)} GiB` : ""
  }`,
);
if (mode === "lora") {
  addLora(model, { rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj", "qkv"] });
}
const N = 64; // 224×224 → 8 × 8 visual tokens
const T = N + 2 + 24;
const ids = [
  151652,
  ...Array(N).fill(151655),
  151653,
  ...Array.from({ length: 24 }, (_, i) => 100 + i),
];
const labels = [-100, ...Array.from({ length: N }, (_, i) => 1000 + i), -100, ...ids.slice(N + 2)];
const pixels = tf.randomUniform([1, 224, 224, 3]) as tf.Tensor4D;
const idT = tf.tensor2d([ids], [1, T], "int32");
const labT = tf.tensor2d([labels], [1, T], "int32");
let peak = 0;
try {
  const t1 = performance.now();
  const { value, grads } = tf.variableGrads(() => {
    const l = jointNextTokenLoss(model.apply(pixels, idT), labT, [1, N + 1]).total;
    peak = Math.max(peak, tf.memory().numBytes);
    return l;
  }, [...trainableWeights(model).values()]);
  const loss = (await value.data())[0]!;
  peak = Math.max(peak, tf.memory().numBytes);
  console.log(
    `DV-SFT step: loss ${loss.toFixed(3)}, ${
      ((performance.now() - t1) / 1000).toFixed(1)
    } s, tensors held at the end of the step ${
      (peak / 2 ** 30).toFixed(2)
    } GiB (views counted apart)${
      wasmHeapBytes() ? `, wasm heap ${(wasmHeapBytes()! / 2 ** 30).toFixed(2)} GiB` : ""
    }`,
  );
  tf.dispose([value, ...Object.values(grads)]);
} catch (e) {
  console.log(`DV-SFT step failed: ${String(e).slice(0, 200)}`);
}
