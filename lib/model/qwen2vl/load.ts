/**
 * Qwen2-VL-family checkpoints in and out: `loadQwenVL(dir)` reads config.json and the weights
 * (single or sharded safetensors, f32/f16/bf16, one tensor at a time) into a
 * {@linkcode QwenVLModel}; `saveQwenVL` writes a folder transformers' `from_pretrained` loads.
 */
import { join } from "node:path";
import { tf, WASM_MAX_TENSOR_BYTES } from "../../backend/mod.ts";
import { Checkpoint, readConfigJson, writeCheckpointWeights } from "../../hf/checkpoint.ts";
import type { WriteDtype } from "../../hf/safetensors.ts";
import { parseQwenConfig, qwenParameterCount } from "./config.ts";
import {
  canonicalWeightName,
  checkTensorBytes,
  fromHfTensor,
  QwenVLModel,
  type QwenVLModelOptions,
  qwenWeightShapes,
  toHfTensor,
} from "./model.ts";

/** A refusal bound before anything is allocated (any backend). */
export const DEFAULT_MAX_PARAMETERS = 8e9;

/** A loaded model and the config.json it came from (written back unchanged by `saveQwenVL`). */
export interface LoadedQwenVL {
  model: QwenVLModel;
  configJson: Record<string, unknown>;
}

/**
 * Load a Qwen2-VL / Qwen2.5-VL checkpoint folder.
 *
 * @example
 * ```ts
 * const { model } = await loadQwenVL("models/Qwen2-VL-2B-Instruct");
 * const logits = model.apply({ pixelValues, gridThw: [[1, 28, 36]] }, inputIds);
 * ```
 */
export async function loadQwenVL(
  dir: string,
  options: QwenVLModelOptions = {},
): Promise<LoadedQwenVL> {
  const configJson = await readConfigJson(dir) as Record<string, unknown>;
  const config = parseQwenConfig(configJson);
  const { maxParameters = DEFAULT_MAX_PARAMETERS } = options;
  const count = qwenParameterCount(config);
  if (count > maxParameters) {
    throw new RangeError(
      `Cannot load '${dir}': ${count} parameters exceed maxParameters ${maxParameters}`,
    );
  }
  if (tf.getBackend() === "wasm" && 4 * count > WASM_MAX_TENSOR_BYTES) {
    throw new RangeError(
      `Cannot load '${dir}' on wasm: ${count} parameters need ${
        (4 * count / 2 ** 30).toFixed(1)
      } GiB as f32, the wasm heap (32-bit) holds at most ${
        (WASM_MAX_TENSOR_BYTES / 2 ** 30).toFixed(1)
      } GiB of tensors (use webgpu or tensorflow)`,
    );
  }
  const shapes = qwenWeightShapes(config);
  for (const [name, shape] of shapes) {
    checkTensorBytes(
      `weight '${name}'`,
      shape.reduce((a, b) => a * b, 1),
    );
  }
  const ckpt = await Checkpoint.open(dir);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  try {
    const byCanonical = new Map<string, string>();
    for (const name of ckpt.names()) {
      const canonical = canonicalWeightName(name);
      // a tied checkpoint may still carry lm_head.weight (a copy of the embedding): not a weight here
      if (canonical === "lm_head.weight" && config.tieWordEmbeddings) continue;
      if (!shapes.has(canonical)) {
        throw new RangeError(
          `Cannot load '${dir}': tensor '${name}' is not a weight of this config`,
        );
      }
      byCanonical.set(canonical, name);
    }
    for (const [name, shape] of shapes) {
      const stored = byCanonical.get(name);
      if (!stored) throw new RangeError(`Cannot load '${dir}': weight '${name}' is missing`);
      const info = ckpt.info(stored);
      if (JSON.stringify(info.shape) !== JSON.stringify(shape)) {
        throw new RangeError(
          `Cannot load '${dir}': '${stored}' is ${JSON.stringify(info.shape)}, the config needs ${
            JSON.stringify(shape)
          }`,
        );
      }
      const t = await ckpt.read(stored);
      if (!(t.data instanceof Float32Array)) {
        throw new RangeError(
          `Cannot load '${dir}': '${stored}' is ${t.dtype}, not a floating dtype`,
        );
      }
      tensors.set(name, fromHfTensor(name, shape, t.data));
    }
  } finally {
    ckpt.close();
  }
  const model = new QwenVLModel(config, QwenVLModel.variables(tensors), options);
  return { model, configJson };
}

/** Options of {@linkcode saveQwenVL}. */
export interface SaveQwenVLOptions {
  /** @default "F32" */
  dtype?: WriteDtype;
  /** @default 5 GiB */
  maxShardBytes?: number;
}

/**
 * Write the model's weights (LoRA adapters not merged: save those with `saveLoraAdapter`) and
 * its config.json into `dir`, as transformers lays a checkpoint out.
 */
export async function saveQwenVL(
  model: QwenVLModel,
  configJson: Record<string, unknown>,
  dir: string,
  options: SaveQwenVLOptions = {},
): Promise<{ files: string[] }> {
  const { dtype = "F32", maxShardBytes } = options;
  const tensors = [];
  for (const [name, hfShape] of model.hfShapes) {
    const w = model.weights.get(name)!;
    const data = toHfTensor(name, hfShape, (await w.data()) as Float32Array);
    tensors.push({ name, shape: hfShape, data, dtype });
  }
  const written = await writeCheckpointWeights(dir, tensors, { maxShardBytes });
  const json = {
    ...configJson,
    dtype: dtype === "F32" ? "float32" : dtype === "BF16" ? "bfloat16" : "float16",
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(json, null, 2) + "\n");
  return { files: ["config.json", ...written.files] };
}
