/**
 * Fine-tuning controls of a {@linkcode QwenVLModel}: LoRA adapters on chosen linear layers
 * (saved and loaded in PEFT's layout) and freezing of the vision tower, the merger and the
 * language model.
 */
import { tf } from "../../backend/mod.ts";
import {
  loraScale,
  type LoraTensors,
  matchesTargetModules,
  readLoraAdapter,
  writeLoraAdapter,
} from "../../hf/peft.ts";
import type { WriteDtype } from "../../hf/safetensors.ts";
import { Rng } from "../../util/rng.ts";
import { canonicalWeightName, type QwenVLModel } from "./model.ts";

/** The module path transformers ≥ 4.52 gives a weight's module (what PEFT keys adapters by). */
export function liveModulePath(canonicalModule: string): string {
  if (canonicalModule.startsWith("model.")) {
    return "model.language_model." + canonicalModule.slice("model.".length);
  }
  if (canonicalModule.startsWith("visual.")) return "model." + canonicalModule;
  return canonicalModule;
}

/** Linear modules of the model (canonical paths), in weight order. */
export function linearModules(model: QwenVLModel): string[] {
  const out: string[] = [];
  for (const [name, shape] of model.hfShapes) {
    if (name.endsWith(".weight") && shape.length === 2 && name !== "model.embed_tokens.weight") {
      out.push(name.slice(0, -".weight".length));
    }
  }
  return out;
}

/** Options of {@linkcode addLora}. */
export interface LoraOptions {
  /** @default 8 */
  rank?: number;
  /** @default 16 */
  alpha?: number;
  /** PEFT `target_modules`: suffixes (`["q_proj", "v_proj"]`) or one regular expression. */
  targetModules: string[] | string;
  /** @default false */
  useRslora?: boolean;
  /** Seed of lora_A's initialisation. @default 0 */
  seed?: number;
  /** Freeze every base weight (the usual LoRA setting). @default true */
  freezeBase?: boolean;
}

/** The LoRA settings a model carries (for saving). */
export interface LoraState {
  rank: number;
  alpha: number;
  targetModules: string[] | string;
  useRslora: boolean;
}
const loraStates = new WeakMap<QwenVLModel, LoraState>();

function selectModules(model: QwenVLModel, targets: string[] | string): string[] {
  const modules = linearModules(model).filter((m) =>
    matchesTargetModules(liveModulePath(m), targets)
  );
  // PEFT would adapt these as Conv3d / Embedding LoRA, which is not implemented here
  for (const other of ["visual.patch_embed.proj", "model.embed_tokens"]) {
    if (matchesTargetModules(liveModulePath(other), targets)) {
      throw new RangeError(
        `Cannot add LoRA: target_modules ${
          JSON.stringify(targets)
        } selects '${other}' (only linear layers are supported; name e.g. 'attn.proj')`,
      );
    }
  }
  if (modules.length === 0) {
    throw new RangeError(
      `Cannot add LoRA: target_modules ${JSON.stringify(targets)} selects no linear layer`,
    );
  }
  return modules;
}

function makeAdapter(
  model: QwenVLModel,
  module: string,
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  scale: number,
) {
  const name = `${model.prefix}${module}`;
  model.lora.set(module, {
    a: tf.variable(a, true, `${name}.lora_A`),
    b: tf.variable(b, true, `${name}.lora_B`),
    scale,
  });
  a.dispose();
  b.dispose();
}

/**
 * Add LoRA adapters: per selected module A [in, r] uniform in ±1/√in (PEFT's kaiming-uniform
 * bound) and B [r, out] zero, so the model's output is unchanged until B trains.
 *
 * @example
 * ```ts
 * addLora(model, { rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj", "qkv"] });
 * const trainable = trainableWeights(model); // adapters only
 * ```
 */
export function addLora(model: QwenVLModel, options: LoraOptions): string[] {
  const { rank = 8, alpha = 16, targetModules, useRslora = false, seed = 0, freezeBase = true } =
    options;
  if (!Number.isInteger(rank) || rank < 1 || rank > 4096) {
    throw new RangeError(`Cannot add LoRA: rank must be an integer in [1, 4096], got ${rank}`);
  }
  if (!(alpha > 0)) throw new RangeError(`Cannot add LoRA: alpha must be positive, got ${alpha}`);
  if (model.lora.size > 0) throw new RangeError("Cannot add LoRA: the model already has adapters");
  const modules = selectModules(model, targetModules);
  const rng = new Rng(seed);
  const scale = loraScale({ r: rank, lora_alpha: alpha, use_rslora: useRslora });
  for (const m of modules) {
    const [inDim, outDim] = model.weights.get(`${m}.weight`)!.shape as [number, number];
    const bound = 1 / Math.sqrt(inDim);
    const a = Float32Array.from({ length: inDim * rank }, () => (2 * rng.next() - 1) * bound);
    makeAdapter(model, m, tf.tensor2d(a, [inDim, rank]), tf.zeros([rank, outDim]), scale);
  }
  loraStates.set(model, { rank, alpha, targetModules, useRslora });
  if (freezeBase) setTrainable(model, { vision: false, merger: false, lm: false });
  return modules;
}

/** Which parts of the base weights train (LoRA adapters always do). */
export interface TrainableParts {
  /** Patch embedding and vision blocks. */
  vision: boolean;
  /** The 2×2 patch merger. */
  merger: boolean;
  /** Embeddings, decoder layers, final norm, LM head. */
  lm: boolean;
}

/** Freeze or unfreeze the vision tower, the merger and the language model. */
export function setTrainable(model: QwenVLModel, parts: TrainableParts): void {
  for (const [name, w] of model.weights) {
    const part = name.startsWith("visual.merger.")
      ? "merger"
      : name.startsWith("visual.")
      ? "vision"
      : "lm";
    w.trainable = parts[part];
  }
}

/** Every weight that trains now (base weights not frozen + adapters), keyed by name. */
export function trainableWeights(model: QwenVLModel): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, w] of model.weights) if (w.trainable) out.set(name, w);
  for (const [m, l] of model.lora) {
    out.set(`${m}.lora_A`, l.a);
    out.set(`${m}.lora_B`, l.b);
  }
  return out;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  }
  return out;
}

/** Options of {@linkcode saveLoraAdapter}. */
export interface SaveLoraOptions {
  /** `base_model_name_or_path` in adapter_config.json. @default null */
  baseModel?: string | null;
  /** @default "F32" */
  dtype?: WriteDtype;
}

/** Save the model's adapters in PEFT's layout (keys by transformers ≥ 4.52 module paths). */
export async function saveLoraAdapter(
  model: QwenVLModel,
  dir: string,
  options: SaveLoraOptions = {},
): Promise<{ files: string[] }> {
  const state = loraStates.get(model);
  if (!state || model.lora.size === 0) {
    throw new RangeError("Cannot save LoRA adapter: the model has none");
  }
  const modules = new Map<string, LoraTensors>();
  for (const [m, l] of model.lora) {
    const [inDim, r] = l.a.shape as [number, number];
    const outDim = l.b.shape[1]!;
    modules.set(liveModulePath(m), {
      a: { shape: [r, inDim], data: transpose(await l.a.data() as Float32Array, inDim, r) },
      b: { shape: [outDim, r], data: transpose(await l.b.data() as Float32Array, r, outDim) },
    });
  }
  return writeLoraAdapter(dir, modules, {
    rank: state.rank,
    alpha: state.alpha,
    targetModules: typeof state.targetModules === "string"
      ? [state.targetModules]
      : state.targetModules,
    useRslora: state.useRslora,
    baseModel: options.baseModel ?? null,
    dtype: options.dtype,
  });
}

/** Load a PEFT LoRA adapter folder onto the model (base weights frozen, adapters trainable). */
export async function loadLoraAdapter(model: QwenVLModel, dir: string): Promise<string[]> {
  if (model.lora.size > 0) {
    throw new RangeError("Cannot load LoRA adapter: the model already has adapters");
  }
  const { config, modules } = await readLoraAdapter(dir);
  const scale = loraScale(config);
  const names: string[] = [];
  const staged: Array<[string, tf.Tensor2D, tf.Tensor2D]> = [];
  try {
    for (const [path, t] of modules) {
      const m = canonicalWeightName(path);
      const w = model.weights.get(`${m}.weight`);
      if (!w || w.shape.length !== 2 || m === "model.embed_tokens") {
        throw new RangeError(
          `Cannot load LoRA adapter '${dir}': module '${path}' is not a linear layer of this model`,
        );
      }
      const [inDim, outDim] = w.shape as [number, number];
      const r = config.r;
      if (
        JSON.stringify(t.a.shape) !== JSON.stringify([r, inDim]) ||
        JSON.stringify(t.b.shape) !== JSON.stringify([outDim, r])
      ) {
        throw new RangeError(
          `Cannot load LoRA adapter '${dir}': '${path}' has A ${JSON.stringify(t.a.shape)}, B ${
            JSON.stringify(t.b.shape)
          }; the layer needs [${r}, ${inDim}] and [${outDim}, ${r}]`,
        );
      }
      staged.push([
        m,
        tf.tensor2d(transpose(t.a.data, r, inDim), [inDim, r]),
        tf.tensor2d(transpose(t.b.data, outDim, r), [r, outDim]),
      ]);
      names.push(m);
    }
  } catch (e) {
    for (const [, a, b] of staged) tf.dispose([a, b]);
    throw e;
  }
  for (const [m, a, b] of staged) makeAdapter(model, m, a, b, scale);
  loraStates.set(model, {
    rank: config.r,
    alpha: config.lora_alpha,
    targetModules: config.target_modules,
    useRslora: config.use_rslora,
  });
  setTrainable(model, { vision: false, merger: false, lm: false });
  return names;
}
