/**
 * Qwen2-VL / Qwen2.5-VL hyper-parameters from a checkpoint's `config.json`.
 *
 * Both layouts transformers has written are read: the nested one (`text_config` +
 * `vision_config`, transformers ≥ 4.52 and 5.x) and the flat one of the released checkpoints
 * (text fields at the top level); RoPE from `rope_parameters` or from `rope_scaling` +
 * `rope_theta`. Unknown keys are ignored (config.json carries many that do not shape the model).
 */
import { z } from "zod";

export const QWEN_FAMILIES = ["qwen2_vl", "qwen2_5_vl"] as const;
export type QwenFamily = (typeof QWEN_FAMILIES)[number];

/** Activations the vision tower and decoder may name (transformers' ACT2FN keys). */
export const ACTIVATIONS = ["quick_gelu", "gelu", "gelu_pytorch_tanh", "silu"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

const Int = z.number().int();
const Pos = Int.positive();

const RopeSchema = z.object({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  mrope_section: z.array(Pos).length(3).optional(),
}).passthrough();

const TextSchema = z.object({
  vocab_size: Pos,
  hidden_size: Pos,
  intermediate_size: Pos,
  num_hidden_layers: Pos,
  num_attention_heads: Pos,
  num_key_value_heads: Pos.nullish(),
  head_dim: Pos.nullish(),
  hidden_act: z.enum(ACTIVATIONS).default("silu"),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().optional(),
  rope_parameters: RopeSchema.nullish(),
  rope_scaling: RopeSchema.nullish(),
  use_sliding_window: z.boolean().nullish(),
  tie_word_embeddings: z.boolean().optional(),
}).passthrough();

const VisionSchema = z.object({
  depth: Pos,
  /** Qwen2-VL: tower width in `embed_dim`, output width in `hidden_size`. */
  embed_dim: Pos.optional(),
  /** Qwen2.5-VL: tower width in `hidden_size`, output width in `out_hidden_size`. */
  hidden_size: Pos,
  out_hidden_size: Pos.optional(),
  intermediate_size: Pos.optional(),
  mlp_ratio: z.number().positive().optional(),
  hidden_act: z.enum(ACTIVATIONS).optional(),
  num_heads: Pos,
  in_channels: Pos.default(3),
  patch_size: Pos.default(14),
  spatial_merge_size: Pos.default(2),
  temporal_patch_size: Pos.default(2),
  window_size: Pos.optional(),
  fullatt_block_indexes: z.array(Int.min(0)).optional(),
  tokens_per_second: z.number().optional(),
  rope_parameters: RopeSchema.nullish(),
}).passthrough();

const ConfigJsonSchema = z.object({
  model_type: z.enum(QWEN_FAMILIES),
  architectures: z.array(z.string()).optional(),
  text_config: TextSchema.partial().passthrough().optional(),
  vision_config: VisionSchema,
  image_token_id: Int.min(0).default(151655),
  video_token_id: Int.min(0).default(151656),
  vision_start_token_id: Int.min(0).default(151652),
  vision_end_token_id: Int.min(0).default(151653),
  tie_word_embeddings: z.boolean().optional(),
}).passthrough();

/** The resolved shape of a Qwen2-VL-family model (what the tfjs model is built from). */
export interface QwenVLConfig {
  family: QwenFamily;
  vision: {
    depth: number;
    /** Tower width. */
    dim: number;
    heads: number;
    /** MLP hidden width. */
    mlpDim: number;
    act: Activation;
    /** "layer": LayerNorm + fc1/fc2 MLP (Qwen2-VL); "rms": RMSNorm + gated SwiGLU MLP (Qwen2.5-VL). */
    kind: "layer" | "rms";
    inChannels: number;
    patchSize: number;
    temporalPatchSize: number;
    mergeSize: number;
    /** Merger output width (the decoder's hidden size). */
    outDim: number;
    ropeTheta: number;
    /** Qwen2.5-VL window attention: window side in pixels, and the blocks that attend fully. */
    windowSize: number | null;
    fullAttBlocks: number[];
  };
  text: {
    vocabSize: number;
    hidden: number;
    intermediate: number;
    layers: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    act: Activation;
    rmsEps: number;
    ropeTheta: number;
    /** M-RoPE: how many of the head's frequency pairs follow t, h and w. */
    mropeSection: [number, number, number];
  };
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  tieWordEmbeddings: boolean;
}

/** Raised when a config.json does not describe a model this code can build. */
export class QwenConfigError extends Error {
  override name = "QwenConfigError";
}

function fail(msg: string): never {
  throw new QwenConfigError(`Cannot build Qwen2-VL model: ${msg}`);
}

/**
 * Resolve a parsed config.json (either layout) into {@linkcode QwenVLConfig}.
 *
 * @example
 * ```ts
 * const config = parseQwenConfig(JSON.parse(await Deno.readTextFile("ckpt/config.json")));
 * ```
 */
export function parseQwenConfig(json: unknown): QwenVLConfig {
  const parsed = ConfigJsonSchema.safeParse(json);
  if (!parsed.success) fail(`config.json does not match (${parsed.error.message})`);
  const c = parsed.data;
  const top = c as unknown as Record<string, unknown>;
  // flat layout: the text fields sit at the top level; nested ones win where both exist
  const textRaw = { ...top, ...(c.text_config ?? {}) };
  const t = TextSchema.safeParse(textRaw);
  if (!t.success) fail(`text config does not match (${t.error.message})`);
  const text = t.data;
  if (text.use_sliding_window) {
    fail("use_sliding_window is true (sliding-window attention is not implemented)");
  }
  const rope = text.rope_parameters ?? text.rope_scaling ?? {};
  const ropeType = rope.rope_type ?? rope.type ?? "default";
  if (!["default", "mrope"].includes(ropeType)) {
    fail(`text rope type '${ropeType}' is not supported`);
  }
  const ropeTheta = rope.rope_theta ?? text.rope_theta ?? 1_000_000;
  const heads = text.num_attention_heads;
  const kvHeads = text.num_key_value_heads ?? heads;
  if (text.hidden_size % heads !== 0) {
    fail(`hidden_size ${text.hidden_size} does not divide into ${heads} heads`);
  }
  if (heads % kvHeads !== 0) {
    fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  }
  // the attention code computes head_dim as hidden / heads; a differing head_dim would be ignored by HF too
  const headDim = text.hidden_size / heads;
  const mrope = rope.mrope_section ?? [16, 24, 24];
  if (2 * (mrope[0]! + mrope[1]! + mrope[2]!) !== headDim) {
    fail(`mrope_section ${JSON.stringify(mrope)} must sum to head_dim / 2 = ${headDim / 2}`);
  }

  const v = c.vision_config;
  const family = c.model_type;
  const is25 = family === "qwen2_5_vl";
  const vdim = is25 ? v.hidden_size : v.embed_dim ?? fail("vision_config.embed_dim is missing");
  const outDim = is25
    ? v.out_hidden_size ?? fail("vision_config.out_hidden_size is missing")
    : v.hidden_size;
  if (outDim !== text.hidden_size) {
    fail(
      `vision output width ${outDim} differs from the decoder's hidden_size ${text.hidden_size}`,
    );
  }
  if (vdim % v.num_heads !== 0) {
    fail(`vision width ${vdim} does not divide into ${v.num_heads} heads`);
  }
  if ((vdim / v.num_heads) % 4 !== 0) {
    fail(`vision head_dim ${vdim / v.num_heads} must be a multiple of 4 (2-D RoPE)`);
  }
  const mlpDim = is25
    ? v.intermediate_size ?? fail("vision_config.intermediate_size is missing")
    : Math.trunc(vdim * (v.mlp_ratio ?? 4));
  const windowSize = is25 ? v.window_size ?? 112 : null;
  if (windowSize !== null && windowSize % (v.patch_size * v.spatial_merge_size) !== 0) {
    fail(`window_size ${windowSize} is not a multiple of patch_size × spatial_merge_size`);
  }
  const fullAttBlocks = is25 ? [...(v.fullatt_block_indexes ?? [7, 15, 23, 31])] : [];
  const tie = c.tie_word_embeddings ?? text.tie_word_embeddings ?? false;
  return {
    family,
    vision: {
      depth: v.depth,
      dim: vdim,
      heads: v.num_heads,
      mlpDim,
      act: v.hidden_act ?? (is25 ? "silu" : "quick_gelu"),
      kind: is25 ? "rms" : "layer",
      inChannels: v.in_channels,
      patchSize: v.patch_size,
      temporalPatchSize: v.temporal_patch_size,
      mergeSize: v.spatial_merge_size,
      outDim,
      ropeTheta: v.rope_parameters?.rope_theta ?? 10_000,
      windowSize,
      fullAttBlocks,
    },
    text: {
      vocabSize: text.vocab_size,
      hidden: text.hidden_size,
      intermediate: text.intermediate_size,
      layers: text.num_hidden_layers,
      heads,
      kvHeads,
      headDim,
      act: text.hidden_act,
      rmsEps: text.rms_norm_eps,
      ropeTheta,
      mropeSection: [mrope[0]!, mrope[1]!, mrope[2]!],
    },
    imageTokenId: c.image_token_id,
    videoTokenId: c.video_token_id,
    visionStartTokenId: c.vision_start_token_id,
    visionEndTokenId: c.vision_end_token_id,
    tieWordEmbeddings: tie,
  };
}

/** Parameter count of a config (bounds memory before any weight is read). */
export function qwenParameterCount(c: QwenVLConfig): number {
  const v = c.vision;
  const t = c.text;
  const patch = v.inChannels * v.temporalPatchSize * v.patchSize ** 2 * v.dim;
  const norm = v.kind === "layer" ? 2 * v.dim : v.dim;
  const mlp = v.kind === "layer"
    ? 2 * v.dim * v.mlpDim + v.mlpDim + v.dim
    : 3 * v.dim * v.mlpDim + 2 * v.mlpDim + v.dim;
  const block = 2 * norm + 3 * v.dim * v.dim + 3 * v.dim + v.dim * v.dim + v.dim + mlp;
  const m = v.dim * v.mergeSize ** 2;
  const merger = norm + m * m + m + m * v.outDim + v.outDim;
  const kv = t.kvHeads * t.headDim;
  const layer = 2 * t.hidden + t.hidden * t.hidden + t.hidden + 2 * (t.hidden * kv + kv) +
    t.hidden * t.hidden + 3 * t.hidden * t.intermediate;
  const embed = t.vocabSize * t.hidden;
  return patch + v.depth * block + merger + embed + t.layers * layer + t.hidden +
    (c.tieWordEmbeddings ? 0 : embed);
}
