/**
 * The bounds of a job, checked before it is queued: every size a request can ask for (steps,
 * batch × sequence, dataset size, evaluation items, the model an override builds) and the
 * memory the training step would need against the job process's memory cap. Each limit comes
 * from the environment (README "Limits").
 */
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
} from "../model/mod.ts";
import { buildSmallTokenizerJson } from "../tokenizer/small.ts";
import { SUITES } from "../data/mod.ts";
import type { TrainConfig } from "../train/mod.ts";

/** The limits of jobs and of the requests that create them. */
export interface JobLimits {
  /** Memory cap of one job process (RSS), MB. */
  memoryMB: number;
  /** Wall-time cap of one job run, seconds. */
  timeS: number;
  /** After SIGTERM (shutdown, time cap), a job that has not exited is killed, ms. */
  killGraceMs: number;
  /**
   * After a cancel's SIGTERM, ms: a training step is synchronous work that no signal interrupts,
   * so a job in a long step is killed (it keeps its last periodic checkpoint).
   */
  cancelGraceMs: number;
  /** stderr kept of a job process (the tail), bytes. */
  stderrBytes: number;
  /** Training steps of one job. */
  maxSteps: number;
  /** batchSize × sequence length of one training step. */
  maxBatchTokens: number;
  /** `data.size` (samples a job cycles over). */
  maxDataSize: number;
  /** Size of a dataset file a job names, MB. */
  maxDatasetMB: number;
  /** Evaluation items of one job: n × suites (and evalN × evalSuites of a training job). */
  maxEvalItems: number;
  /** Parameters of the model a config builds (preset + overrides). */
  maxParams: number;
}

/** Environment variable and default of each limit (the README "Limits" table). */
export const JOB_LIMIT_ENV: Record<
  keyof JobLimits,
  { env: string; default: number; unit: number }
> = {
  memoryMB: { env: "DVSFT_JOB_MEMORY_MB", default: 4096, unit: 1 },
  timeS: { env: "DVSFT_JOB_TIME_S", default: 24 * 3600, unit: 1 },
  killGraceMs: { env: "DVSFT_JOB_KILL_GRACE_S", default: 10, unit: 1000 },
  cancelGraceMs: { env: "DVSFT_JOB_CANCEL_GRACE_S", default: 1, unit: 1000 },
  stderrBytes: { env: "DVSFT_JOB_STDERR_KB", default: 8, unit: 1024 },
  maxSteps: { env: "DVSFT_MAX_STEPS", default: 1_000_000, unit: 1 },
  maxBatchTokens: { env: "DVSFT_MAX_BATCH_TOKENS", default: 131_072, unit: 1 },
  maxDataSize: { env: "DVSFT_MAX_DATA_SIZE", default: 10_000_000, unit: 1 },
  maxDatasetMB: { env: "DVSFT_MAX_DATASET_MB", default: 1024, unit: 1 },
  maxEvalItems: { env: "DVSFT_MAX_EVAL_ITEMS", default: 20_000, unit: 1 },
  maxParams: { env: "DVSFT_MAX_PARAMS", default: 200_000_000, unit: 1 },
};

/** The limits from the environment (unset → default); a value that is not a positive number is an error. */
export function jobLimitsFromEnv(
  get: (name: string) => string | undefined = (n) => Deno.env.get(n),
): JobLimits {
  const out = {} as JobLimits;
  for (
    const [k, spec] of Object.entries(JOB_LIMIT_ENV) as Array<
      [keyof JobLimits, typeof JOB_LIMIT_ENV[keyof JobLimits]]
    >
  ) {
    const raw = get(spec.env);
    const v = raw === undefined || raw === "" ? spec.default : Number(raw);
    if (!Number.isFinite(v) || v <= 0) {
      throw new RangeError(`${spec.env} must be a positive number, got '${raw}'`);
    }
    out[k] = v * spec.unit;
  }
  return out;
}

/** A request that asks for more than a limit: 413 (a count or size) or 422 (does not fit memory). */
export class LimitError extends Error {
  override name = "LimitError";
  constructor(
    readonly status: 413 | 422,
    readonly limit: string,
    readonly value: number,
    readonly max: number,
    message: string,
  ) {
    super(message);
  }
}

let vocab: number | null = null;
/** Vocabulary size of the small tokenizer every training run uses. */
export function smallVocabSize(): number {
  vocab ??= Object.keys(
    (buildSmallTokenizerJson().model as { vocab: Record<string, number> }).vocab,
  ).length;
  return vocab;
}

/** The model a training config builds (preset + overrides), or a 422 naming what is wrong. */
export function resolveJobModel(
  config: Pick<TrainConfig, "model" | "modelOverrides">,
): ModelConfig {
  const r = ModelConfigSchema.safeParse({
    ...MODEL_PRESETS[config.model as keyof typeof MODEL_PRESETS],
    ...config.modelOverrides,
    vocabSize: smallVocabSize(),
  });
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new LimitError(
      422,
      "modelOverrides",
      NaN,
      NaN,
      `modelOverrides do not give a valid model: ${
        issue.path.join(".") || "(root)"
      }: ${issue.message}`,
    );
  }
  return r.data;
}

function blockParams(d: number, r: number): number {
  return 4 * d + 4 * (d * d + d) + 2 * r * d * d + r * d + d; // 2 norms, q k v o, MLP
}

/** Parameters of the small MLLM of a config (lib/model's weights, counted from the shapes). */
export function parameterCount(c: ModelConfig): number {
  const g = c.imageSize / c.patchSize;
  let p = c.patchSize * c.patchSize * 3 * c.visionDim + c.visionDim + 2 * g * c.visionDim;
  p += c.visionLayers * blockParams(c.visionDim, c.mlpRatio) + 2 * c.visionDim;
  p += 4 * c.visionDim * c.dim + c.dim + c.dim * c.dim + c.dim; // merger
  p += c.vocabSize * c.dim + sequenceLength(c) * c.dim; // token and position embeddings (tied head)
  p += c.layers * blockParams(c.dim, c.mlpRatio) + 2 * c.dim;
  return p;
}

/**
 * Peak memory of a training step in MB: weights, gradients and AdamW moments (4 × params), the
 * activations the tape keeps for the backward pass (per block and token: q, k, v, output, MLP
 * in/out, norms, residuals ≈ (12 + 3·mlpRatio)·d floats, plus 3 attention maps of h × T), the
 * logits with their softmax and gradient, the pixels; all float32, ×4 for the intermediates tfjs
 * keeps between kernels (measured: `small` at batch 8 and 32 peaks at 861 and 2766 MB RSS; this
 * gives 1043 and 2913), plus the process's own ≈ 400 MB (runtime, tfjs, wasm heap).
 */
export function estimateTrainMemoryMB(c: ModelConfig, batchSize: number): number {
  const patches = (c.imageSize / c.patchSize) ** 2;
  const T = sequenceLength(c);
  const block = (tokens: number, d: number, heads: number) =>
    tokens * (d * (12 + 3 * c.mlpRatio) + 3 * heads * tokens);
  const perSample = c.visionLayers * block(patches, c.visionDim, c.visionHeads) +
    patches * c.patchSize * c.patchSize * 3 * 2 +
    numVisualTokens(c) * (4 * c.visionDim + 2 * c.dim) +
    c.layers * block(T, c.dim, c.heads) +
    3 * T * c.vocabSize;
  const floats = 4 * parameterCount(c) + 4 * batchSize * perSample;
  return Math.ceil(400 + (floats * 4) / 1e6);
}

const tooLarge = (limit: string, value: number, max: number, what: string, env: string) =>
  new LimitError(413, limit, value, max, `${what} ${value} exceeds the limit of ${max} (${env})`);

/** A suite name a request gives is one of the generator's suites (own keys only). */
export function isSuiteName(name: string): boolean {
  return Object.hasOwn(SUITES, name);
}

/** Check a training job's config against the limits before it is queued; returns the estimate. */
export function checkTrainJob(
  config: Pick<
    TrainConfig,
    | "model"
    | "modelOverrides"
    | "batchSize"
    | "steps"
    | "data"
    | "evalEvery"
    | "evalSuites"
    | "evalN"
  >,
  limits: JobLimits,
): { model: ModelConfig | null; memoryMB: number | null; parameters: number | null } {
  const env = JOB_LIMIT_ENV;
  if (config.steps > limits.maxSteps) {
    throw tooLarge("steps", config.steps, limits.maxSteps, "steps", env.maxSteps.env);
  }
  if (config.data.size > limits.maxDataSize) {
    throw tooLarge(
      "data.size",
      config.data.size,
      limits.maxDataSize,
      "data.size",
      env.maxDataSize.env,
    );
  }
  if (config.evalEvery > 0) {
    const items = config.evalN * config.evalSuites.length;
    if (items > limits.maxEvalItems) {
      throw tooLarge(
        "evalItems",
        items,
        limits.maxEvalItems,
        "evalN × evalSuites",
        env.maxEvalItems.env,
      );
    }
  }
  // a Hugging Face checkpoint: its size is bounded when it loads (maxParameters, the wasm heap),
  // and the job's memory cap kills it past that; the estimate below is for built-in presets
  if (config.model.startsWith("hf:")) return { model: null, memoryMB: null, parameters: null };
  const model = resolveJobModel(config);
  const parameters = parameterCount(model);
  if (parameters > limits.maxParams) {
    throw tooLarge(
      "parameters",
      parameters,
      limits.maxParams,
      "model parameters",
      env.maxParams.env,
    );
  }
  const tokens = config.batchSize * sequenceLength(model);
  if (tokens > limits.maxBatchTokens) {
    throw tooLarge(
      "batchTokens",
      tokens,
      limits.maxBatchTokens,
      `batchSize × sequence length (${config.batchSize} × ${sequenceLength(model)}) =`,
      env.maxBatchTokens.env,
    );
  }
  const memoryMB = estimateTrainMemoryMB(model, config.batchSize);
  if (memoryMB > limits.memoryMB) {
    throw new LimitError(
      422,
      "memoryMB",
      memoryMB,
      limits.memoryMB,
      `the training step needs about ${memoryMB} MB (model '${config.model}', batchSize ${config.batchSize}, sequence ${
        sequenceLength(model)
      }), more than the job memory cap of ${limits.memoryMB} MB (${env.memoryMB.env}); lower batchSize`,
    );
  }
  return { model, memoryMB, parameters };
}

/** Check an evaluation job's size before it is queued. */
export function checkEvalJob(config: { suites: string[]; n: number }, limits: JobLimits): void {
  const items = config.n * config.suites.length;
  if (items > limits.maxEvalItems) {
    throw tooLarge(
      "evalItems",
      items,
      limits.maxEvalItems,
      "n × suites",
      JOB_LIMIT_ENV.maxEvalItems.env,
    );
  }
}

/** A dataset file a job names is not larger than the limit (checked at acceptance and at start). */
export async function checkDatasetSize(path: string, limits: JobLimits): Promise<void> {
  const st = await Deno.stat(path);
  let bytes = st.size;
  if (st.isDirectory) {
    // a dataset folder: its shards' images and records, every level down
    bytes = 0;
    const walk = async (dir: string): Promise<void> => {
      for await (const e of Deno.readDir(dir)) {
        if (e.name.startsWith(".")) continue;
        const p = `${dir}/${e.name}`;
        if (e.isDirectory) await walk(p);
        else if (e.isFile) bytes += (await Deno.stat(p)).size;
      }
    };
    await walk(path);
  }
  const mb = Math.ceil(bytes / 1e6);
  if (mb > limits.maxDatasetMB) {
    throw tooLarge(
      "datasetMB",
      mb,
      limits.maxDatasetMB,
      "dataset size (MB)",
      JOB_LIMIT_ENV.maxDatasetMB.env,
    );
  }
}
