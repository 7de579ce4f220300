/** Hyper-parameters of the small MLLM, and its presets. */
import { z } from "zod";

export const ModelConfigSchema = z.strictObject({
  /** Square input side in pixels: a multiple of patchSize × merge (28), so qwen2-vl geometry applies. */
  imageSize: z.number().int().min(28).max(1792).refine(
    (n) => n % 28 === 0,
    "imageSize must be a multiple of 28",
  ),
  patchSize: z.literal(14).default(14),
  merge: z.literal(2).default(2),
  visionDim: z.number().int().positive(),
  visionLayers: z.number().int().min(0),
  visionHeads: z.number().int().positive(),
  dim: z.number().int().positive(),
  layers: z.number().int().min(1),
  heads: z.number().int().positive(),
  vocabSize: z.number().int().positive(),
  /** Text tokens after the visual block (prompt + answer + eos). */
  maxTextLen: z.number().int().positive(),
  mlpRatio: z.number().int().positive().default(4),
}).refine(
  (c) => c.visionDim % c.visionHeads === 0 && c.dim % c.heads === 0,
  "dims must divide by heads",
);
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** Presets; `vocabSize` is filled in from the tokenizer. */
export const MODEL_PRESETS = {
  /** For tests: 56×56 image → 4 visual tokens, 2 layers of 32. */
  tiny: {
    imageSize: 56,
    visionDim: 32,
    visionLayers: 1,
    visionHeads: 2,
    dim: 32,
    layers: 2,
    heads: 2,
    maxTextLen: 16,
  },
  /** For experiments on a CPU: 224×224 → 64 visual tokens, 4 layers of 128 (≈ the PyTorch reference shape). */
  small: {
    imageSize: 224,
    visionDim: 96,
    visionLayers: 2,
    visionHeads: 4,
    dim: 128,
    layers: 4,
    heads: 4,
    maxTextLen: 30,
  },
  /**
   * The larger benchmark shape (≈ 9× the step FLOPs of `small` at half its batch): 448×448 →
   * 256 visual tokens, 2 vision layers of 192, 6 layers of 256.
   */
  medium: {
    imageSize: 448,
    visionDim: 192,
    visionLayers: 2,
    visionHeads: 6,
    dim: 256,
    layers: 6,
    heads: 8,
    maxTextLen: 30,
  },
} as const;
export type ModelPreset = keyof typeof MODEL_PRESETS;

/** Visual tokens the model produces: (imageSize / 28)². */
export function numVisualTokens(c: Pick<ModelConfig, "imageSize" | "patchSize" | "merge">): number {
  return (c.imageSize / (c.patchSize * c.merge)) ** 2;
}

/** Full sequence length: [vision_start] v1…vN [vision_end] text… */
export function sequenceLength(c: ModelConfig): number {
  return numVisualTokens(c) + 2 + c.maxTextLen;
}
