/**
 * LoRA adapters in PEFT's on-disk layout: `adapter_config.json` (`peft_type: "LORA"`, `r`,
 * `lora_alpha`, `target_modules`, …) and `adapter_model.safetensors` with one pair per adapted
 * module, `base_model.model.<module>.lora_A.weight` [r, in] and `….lora_B.weight` [out, r]
 * (PyTorch layout). `PeftModel.from_pretrained(base, dir)` loads what `writeLoraAdapter` writes.
 */
import { z } from "zod";
import { join } from "node:path";
import {
  SafetensorsError,
  SafetensorsFile,
  type WriteDtype,
  writeSafetensors,
} from "./safetensors.ts";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
const PREFIX = "base_model.model.";

/** The adapter_config.json fields this code reads; variants it does not implement are refused. */
export const LoraAdapterConfigSchema = z.object({
  peft_type: z.literal("LORA"),
  r: z.number().int().positive().max(4096),
  lora_alpha: z.number().positive(),
  target_modules: z.union([z.array(z.string().min(1)), z.string().min(1)]),
  lora_dropout: z.number().min(0).max(1).default(0),
  bias: z.literal("none").default("none"),
  use_rslora: z.boolean().default(false),
  use_dora: z.literal(false).default(false),
  fan_in_fan_out: z.literal(false).default(false),
  modules_to_save: z.array(z.string()).max(0).nullish(),
  rank_pattern: z.record(z.string(), z.unknown()).refine(
    (r) => Object.keys(r).length === 0,
    "rank_pattern is not supported",
  )
    .optional(),
  alpha_pattern: z.record(z.string(), z.unknown()).refine(
    (r) => Object.keys(r).length === 0,
    "alpha_pattern is not supported",
  )
    .optional(),
  base_model_name_or_path: z.string().nullish(),
}).passthrough();
export type LoraAdapterConfig = z.infer<typeof LoraAdapterConfigSchema>;

/** LoRA scale: alpha / r (rsLoRA: alpha / √r), as PEFT computes it. */
export function loraScale(c: Pick<LoraAdapterConfig, "r" | "lora_alpha" | "use_rslora">): number {
  return c.use_rslora ? c.lora_alpha / Math.sqrt(c.r) : c.lora_alpha / c.r;
}

/** One adapted module's matrices in PyTorch layout. */
export interface LoraTensors {
  /** lora_A.weight [r, in] */
  a: { shape: number[]; data: Float32Array };
  /** lora_B.weight [out, r] */
  b: { shape: number[]; data: Float32Array };
}

/** Read an adapter folder: its config and the A/B pair of every module (keyed by module path). */
export async function readLoraAdapter(
  dir: string,
): Promise<{ config: LoraAdapterConfig; modules: Map<string, LoraTensors> }> {
  const cfgPath = join(dir, ADAPTER_CONFIG);
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(cfgPath));
  } catch (e) {
    throw new SafetensorsError(
      `Cannot load LoRA adapter '${dir}': ${ADAPTER_CONFIG} unreadable (${e})`,
    );
  }
  const parsed = LoraAdapterConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SafetensorsError(
      `Cannot load LoRA adapter '${dir}': ${ADAPTER_CONFIG} (${parsed.error.message})`,
    );
  }
  const f = await SafetensorsFile.open(join(dir, ADAPTER_WEIGHTS));
  const modules = new Map<string, Partial<LoraTensors>>();
  try {
    for (const key of f.names()) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(key);
      if (!m) {
        throw new SafetensorsError(
          `Cannot load LoRA adapter '${dir}': tensor '${key}' is not a lora_A/lora_B weight`,
        );
      }
      const t = await f.read(key);
      if (!(t.data instanceof Float32Array)) {
        throw new SafetensorsError(`Cannot load LoRA adapter '${dir}': '${key}' is ${t.dtype}`);
      }
      if (t.shape.length !== 2) {
        throw new SafetensorsError(
          `Cannot load LoRA adapter '${dir}': '${key}' is ${JSON.stringify(t.shape)}, not a matrix`,
        );
      }
      const entry = modules.get(m[1]!) ?? {};
      entry[m[2] === "A" ? "a" : "b"] = { shape: t.shape, data: t.data };
      modules.set(m[1]!, entry);
    }
  } finally {
    f.close();
  }
  const out = new Map<string, LoraTensors>();
  for (const [name, e] of modules) {
    if (!e.a || !e.b) {
      throw new SafetensorsError(
        `Cannot load LoRA adapter '${dir}': module '${name}' lacks lora_${e.a ? "B" : "A"}`,
      );
    }
    out.set(name, e as LoraTensors);
  }
  return { config: parsed.data, modules: out };
}

/** Options of {@linkcode writeLoraAdapter}. */
export interface WriteLoraOptions {
  rank: number;
  alpha: number;
  targetModules: string[];
  /** @default false */
  useRslora?: boolean;
  /** Recorded as `base_model_name_or_path` (where transformers finds the base). @default null */
  baseModel?: string | null;
  /** @default "F32" */
  dtype?: WriteDtype;
}

/** Write an adapter folder PEFT loads (config + weights, atomically per file). */
export async function writeLoraAdapter(
  dir: string,
  modules: ReadonlyMap<string, LoraTensors>,
  options: WriteLoraOptions,
): Promise<{ files: string[] }> {
  const { rank, alpha, targetModules, useRslora = false, baseModel = null, dtype = "F32" } =
    options;
  await Deno.mkdir(dir, { recursive: true });
  const tensors = [];
  for (const name of [...modules.keys()].sort()) {
    const m = modules.get(name)!;
    if (m.a.shape[0] !== rank || m.b.shape[1] !== rank) {
      throw new RangeError(`Cannot write LoRA adapter: module '${name}' is not rank ${rank}`);
    }
    tensors.push({
      name: `${PREFIX}${name}.lora_A.weight`,
      shape: m.a.shape,
      data: m.a.data,
      dtype,
    });
    tensors.push({
      name: `${PREFIX}${name}.lora_B.weight`,
      shape: m.b.shape,
      data: m.b.data,
      dtype,
    });
  }
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: "pt" });
  const config = {
    peft_type: "LORA",
    task_type: null,
    base_model_name_or_path: baseModel,
    revision: null,
    inference_mode: true,
    r: rank,
    lora_alpha: alpha,
    lora_dropout: 0,
    target_modules: targetModules,
    bias: "none",
    fan_in_fan_out: false,
    init_lora_weights: true,
    use_rslora: useRslora,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
  const tmp = join(dir, `${ADAPTER_CONFIG}.tmp-${crypto.randomUUID()}`);
  await Deno.writeTextFile(tmp, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(tmp, join(dir, ADAPTER_CONFIG));
  return { files: [ADAPTER_CONFIG, ADAPTER_WEIGHTS] };
}

/**
 * Does PEFT's `target_modules` select this module path? A list matches a path equal to an entry
 * or ending in `.entry`; a string is a regular expression that must match the whole path.
 */
export function matchesTargetModules(path: string, targets: string | readonly string[]): boolean {
  if (typeof targets === "string") return new RegExp(`^(?:${targets})$`).test(path);
  return targets.some((t) => path === t || path.endsWith("." + t));
}
