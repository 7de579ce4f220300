/** Training configuration: flat, commented defaults; unknown keys are errors. */
import { z } from "zod";
import { BackendNameSchema } from "../backend/mod.ts";
import { LossOptionsSchema } from "../loss/mod.ts";
import { OptimizerConfigSchema } from "./optimizer.ts";
import { SUITES } from "../data/generate.ts";

export const TrainConfigSchema = z.strictObject({
  /** Run name; outputs go to `<outDir>/<name>/`. */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,80}$/, "letters, digits, . _ - only").default("run"),
  outDir: z.string().default("out/runs"),
  /** Model preset, and overrides of its fields (e.g. { "layers": 2 }). */
  model: z.union([
    z.enum(["tiny", "small", "medium"]),
    z.string().regex(/^hf:.+$/, "a preset (tiny, small) or hf:<checkpoint folder>"),
  ]).default("tiny"),
  /**
   * For `model: "hf:<folder>"` (Qwen2-VL / Qwen2.5-VL checkpoints): LoRA, frozen parts,
   * gradient accumulation (one image per micro-batch), the resize limit and the longest sequence.
   */
  hf: z.strictObject({
    lora: z.strictObject({
      rank: z.number().int().min(1).max(1024).default(8),
      alpha: z.number().positive().default(16),
      targetModules: z.union([z.array(z.string()).min(1), z.string()]).default([
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
      ]),
    }).optional(),
    freeze: z.strictObject({
      vision: z.boolean().default(false),
      merger: z.boolean().default(false),
      lm: z.boolean().default(false),
    }).default({ vision: false, merger: false, lm: false }),
    gradAccum: z.number().int().min(1).max(1024).default(1),
    /** smart_resize's max_pixels for the training images. */
    maxPixels: z.number().int().min(3136).max(16_777_216).default(200_704),
    maxSequence: z.number().int().min(16).max(65_536).default(4096),
  }).default({
    freeze: { vision: false, merger: false, lm: false },
    gradAccum: 1,
    maxPixels: 200_704,
    maxSequence: 4096,
  }),
  modelOverrides: z.record(z.string(), z.number()).default({}),
  /** sft: text loss only; dvsft: text + λ·vision. */
  objective: z.enum(["sft", "dvsft"]).default("dvsft"),
  loss: LossOptionsSchema.default({ lambda: 1, align: "next" }),
  data: z.strictObject({
    /**
     * reading: the built-in reading task; suite: items of a generator suite drawn on the fly
     * (e.g. "train"); dataset: a dataset folder (`deno task data generate|import`, `deno task
     * label --dataset`); mix: several of these by weight.
     */
    task: z.enum(["reading", "suite", "dataset", "mix"]).default("reading"),
    suite: z.string().refine((s) => Object.hasOwn(SUITES, s), "unknown suite").default("train"),
    path: z.string().optional(),
    /**
     * mix: each sample comes from one of these sources (a dataset folder, a generator suite or
     * the built-in reading task), picked with probability proportional to its weight.
     */
    mix: z.array(
      z.strictObject({
        path: z.string().optional(),
        suite: z.string().refine((s) => Object.hasOwn(SUITES, s), "unknown suite").optional(),
        task: z.literal("reading").optional(),
        weight: z.number().positive().max(1e6),
      }).refine(
        (m) => [m.path, m.suite, m.task].filter((x) => x !== undefined).length === 1,
        {
          message:
            "a mix source names one of: a dataset 'path', a generator 'suite', or task 'reading'",
        },
      ),
    ).max(16).default([]),
    /** Seed of the reading generator (samples are a pure function of (seed, index)). */
    seed: z.number().int().default(0),
    /** Cycle over this many samples (0 = a fresh sample every time; datasets cycle over their items). */
    size: z.number().int().min(0).default(0),
    /** Index of the stream's first sample: a fine-tuning run starts after what its base saw. */
    start: z.number().int().min(0).default(0),
    /** Make the next batch in a worker while the step runs (the same batches either way). */
    prefetch: z.boolean().default(true),
  }).refine((d) => d.task !== "dataset" || d.path, {
    message: "data.path is required for task 'dataset'",
  }).refine((d) => d.task !== "mix" || d.mix.length > 0, {
    message: "data.mix needs at least one source for task 'mix'",
  })
    .default({
      task: "reading",
      suite: "train",
      seed: 0,
      size: 0,
      start: 0,
      mix: [],
      prefetch: true,
    }),
  batchSize: z.number().int().min(1).max(4096).default(8),
  steps: z.number().int().min(1).max(10_000_000).default(100),
  optimizer: OptimizerConfigSchema.default(OptimizerConfigSchema.parse({})),
  /** Seed of the weight initialization. */
  seed: z.number().int().default(0),
  /**
   * Start from another run's weights (a run folder: its latest checkpoint, or a checkpoint
   * folder) instead of a random initialization: fine-tuning a base model. The optimizer starts
   * fresh; the model config must match.
   */
  initFrom: z.string().optional(),
  checkpointEvery: z.number().int().min(0).default(50),
  /** Evaluate the model every N steps (0: never) on these suites' first evalN items → evals.jsonl. */
  evalEvery: z.number().int().min(0).default(0),
  evalSuites: z.array(z.string()).min(1).default(["text-reading"]),
  evalN: z.number().int().min(1).max(10_000).default(32),
  /** Checkpoints kept (newest). */
  keepCheckpoints: z.number().int().min(1).default(3),
  backend: BackendNameSchema.default("auto"),
});
export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;
