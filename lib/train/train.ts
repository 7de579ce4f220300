/**
 * The training path, top to bottom: config → tokenizer → data → model → optimizer →
 * (resume) → loop { batch, step, log, checkpoint }.
 */
import { join } from "node:path";
import {
  appendPeriodicEval,
  loadCheckpoint,
  openMetricsLog,
  resolveCheckpoint,
  restoreVariables,
  runPaths,
  saveCheckpoint,
  type StepMetrics,
  writeRunConfig,
} from "../runs/mod.ts";
import { tf, useBackend, WASM_MAX_TENSOR_BYTES } from "../backend/mod.ts";
import type { Sample } from "../data/mod.ts";
import { jointNextTokenLoss } from "../loss/mod.ts";
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  numVisualTokens,
  parameterCount,
  sequenceLength,
  SmallVLM,
} from "../model/mod.ts";
import { loadTokenizerFile, type WordTokenizer } from "../tokenizer/mod.ts";
import { writeSmallTokenizer } from "../tokenizer/small.ts";
import { IGNORE_INDEX } from "../labels/mod.ts";
import { AdamW, learningRate } from "./optimizer.ts";
import { type TrainConfig, type TrainConfigInput, TrainConfigSchema } from "./config.ts";
import { hfModelPath, trainHf } from "./hf.ts";
import { makeSampler } from "./sampler.ts";
import { BatchPrefetcher } from "./prefetch.ts";
import {
  NonFiniteLossError,
  recordStep,
  resumeTraining,
  stepError,
  type TrainOptions,
  type TrainResult,
  writeLossPlot,
} from "./loop.ts";

export function resolveModelConfig(c: TrainConfig, vocabSize: number): ModelConfig {
  if (hfModelPath(c.model) !== null) {
    throw new RangeError(`${c.model} is a Hugging Face checkpoint, not a built-in preset`);
  }
  const preset = MODEL_PRESETS[c.model as keyof typeof MODEL_PRESETS];
  return ModelConfigSchema.parse({ ...preset, ...c.modelOverrides, vocabSize });
}

/** Bytes full fine-tuning holds a parameter with: weight, gradient, AdamW's two moments (f32). */
const TRAINING_BYTES_PER_PARAMETER = 16;

/**
 * Refuse, before anything is allocated, a model whose full fine-tuning state alone passes what the
 * backend holds (wasm: its 32-bit heap; measured here at batch 1: 204 M parameters train, 229 M
 * run out of heap in their first step).
 */
export function checkTrainingFits(backend: string, parameters: number): void {
  const bytes = TRAINING_BYTES_PER_PARAMETER * parameters;
  if (backend === "wasm" && bytes > WASM_MAX_TENSOR_BYTES) {
    throw new RangeError(
      `Cannot train ${(parameters / 1e6).toFixed(0)} M parameters on wasm: full fine-tuning holds ${
        (bytes / 2 ** 30).toFixed(2)
      } GiB in weights, gradients and AdamW moments, more than the ${
        (WASM_MAX_TENSOR_BYTES / 2 ** 30).toFixed(2)
      } GiB of tensors a 32-bit wasm heap holds (≈ 200 M parameters train at batch 1); use a smaller model, or --set backend=webgpu`,
    );
  }
}

/** A batch as tensors: pixels [B, S, S, 3], inputIds [B, T], labels [B, T]. */
export function makeBatch(samples: Sample[], config: ModelConfig, withVision: boolean) {
  const B = samples.length;
  const S = config.imageSize;
  const T = sequenceLength(config);
  const N = numVisualTokens(config);
  const px = new Float32Array(B * S * S * 3);
  const ids = new Int32Array(B * T);
  const labels = new Int32Array(B * T);
  samples.forEach((s, b) => {
    px.set(s.pixels, b * S * S * 3);
    ids.set(s.inputIds, b * T);
    labels.set(s.labels, b * T);
    if (!withVision) labels.fill(IGNORE_INDEX, b * T + 1, b * T + 1 + N); // SFT: no vision labels
  });
  return {
    pixels: tf.tensor4d(px, [B, S, S, 3]),
    inputIds: tf.tensor2d(ids, [B, T], "int32"),
    labels: tf.tensor2d(labels, [B, T], "int32"),
  };
}

/** Run (or resume) a training job. */
export async function train(
  input: TrainConfigInput,
  options: TrainOptions = {},
): Promise<TrainResult> {
  // config
  const config = TrainConfigSchema.parse(input);
  if (config.evalEvery > 0 && !options.evaluate) {
    throw new TypeError(
      "Cannot train: 'evalEvery' is set but no evaluation hook was given (options.evaluate)",
    );
  }
  const runDir = join(config.outDir, config.name);
  // a run refused before its first step (bad data, a model that does not fit) leaves nothing
  const fresh = (await Deno.stat(runDir).catch(() => null)) === null;
  let stepped = false;
  await Deno.mkdir(runDir, { recursive: true });
  try {
    return hfModelPath(config.model) !== null
      ? await trainHf(runDir, config, options, () => (stepped = true))
      : await trainIn(runDir, config, options, () => (stepped = true));
  } catch (e) {
    if (fresh && !stepped) await Deno.remove(runDir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function trainIn(
  runDir: string,
  config: TrainConfig,
  options: TrainOptions,
  onFirstStep: () => void,
): Promise<TrainResult> {
  const paths = runPaths(runDir);
  const ckptDir = paths.checkpoints;
  const backend = await useBackend(config.backend);

  // tokenizer (saved with the run, an ordinary tokenizer.json)
  const tokPath = paths.tokenizer;
  await writeSmallTokenizer(tokPath);
  const tokenizer: WordTokenizer = await loadTokenizerFile(tokPath, "dvsft-small");

  // model and optimizer
  const modelConfig = resolveModelConfig(config, tokenizer.vocabSize);
  const parameters = parameterCount(modelConfig);
  checkTrainingFits(backend, parameters);
  const model = new SmallVLM(modelConfig, undefined, config.seed);
  const optimizer = new AdamW(config.optimizer, model.weights);
  let step = 0;
  let dataPosition = 0;

  try {
    // resume
    const resumed = await resumeTraining(
      ckptDir,
      options.resume ?? false,
      model.weights,
      optimizer,
    );
    const latest = resumed.latest;
    step = resumed.step;
    dataPosition = resumed.dataPosition;
    if (!latest && config.initFrom) {
      // fine-tuning: the base model's weights, a fresh optimizer, step 0
      const base = await resolveCheckpoint(config.initFrom);
      const ck = await loadCheckpoint(base);
      restoreVariables(model.weights, ck.weights, base);
    }
    await writeRunConfig(runDir, { ...config, resolvedModel: modelConfig, backend });

    const N = numVisualTokens(modelConfig);
    const T = sequenceLength(modelConfig);
    const sampleFrom0 = config.data.prefetch
      ? null
      : await makeSampler(config, modelConfig, tokenizer);
    // made in the loop's try, so that its finally always stops the worker
    let prefetch: BatchPrefetcher | null = null;
    // the batch at data position p: [start + p, start + p + B) of the stream
    const batchAt = (p: number) =>
      prefetch ? prefetch.batch(config.data.start + p, config.batchSize) : Promise.all(
        Array.from({ length: config.batchSize }, (_, k) => sampleFrom0!(config.data.start + p + k)),
      );
    const checkpoint = () =>
      saveCheckpoint(ckptDir, {
        step,
        dataPosition,
        adamT: optimizer.t,
        config: { train: config, model: modelConfig },
        weights: model.weights,
        m: optimizer.m,
        v: optimizer.v,
      }, config.keepCheckpoints);

    const metrics: StepMetrics[] = [];
    const log = await openMetricsLog(runDir, !latest);
    try {
      if (config.data.prefetch) prefetch = new BatchPrefetcher(config, modelConfig, tokPath);
      while (step < config.steps) {
        if (options.signal?.aborted) {
          // stopped from outside: keep the work done so far
          if (metrics.length > 0) await checkpoint();
          break;
        }
        const t0 = performance.now();
        // data
        const samples = await batchAt(dataPosition);
        const batch = makeBatch(samples, modelConfig, config.objective === "dvsft");
        const lr = learningRate(config.optimizer, step, config.steps);
        // step: forward, joint loss, backward, clipped AdamW update
        let parts: tf.Scalar[];
        let gradNorm: tf.Scalar;
        try {
          const { value, grads } = tf.variableGrads(() => {
            const logits = model.apply(batch.pixels, batch.inputIds);
            const l = jointNextTokenLoss(logits, batch.labels, [1, N + 1], config.loss);
            parts = [tf.keep(l.text), tf.keep(l.vision)];
            return l.total;
          });
          gradNorm = optimizer.apply(grads, lr);
          parts = [value, ...parts!];
          tf.dispose(grads);
        } catch (e) {
          throw stepError(e, backend, TRAINING_BYTES_PER_PARAMETER * parameters, step, ckptDir);
        } finally {
          tf.dispose([batch.pixels, batch.inputIds, batch.labels]);
        }
        const read = await Promise.all([...parts, gradNorm].map(async (t) => (await t.data())[0]!));
        const [loss, textLoss, visionLoss, norm] = read as [number, number, number, number];
        tf.dispose([...parts, gradNorm]);
        if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
          throw new NonFiniteLossError(
            `Training stopped at step ${step}: loss is ${loss} (grad norm ${norm}); the last good checkpoint is kept in ${ckptDir}`,
          );
        }
        step++;
        dataPosition += config.batchSize;
        await recordStep({
          step,
          lr,
          loss,
          textLoss,
          visionLoss,
          gradNorm: norm,
          tokens: config.batchSize * T,
          stepMs: performance.now() - t0,
        }, { config, log, metrics, onStep: options.onStep, onFirstStep, checkpoint });
        if (config.evalEvery > 0 && (step % config.evalEvery === 0 || step === config.steps)) {
          for (const e of await options.evaluate!({ model, tokenizer, step, config })) {
            await appendPeriodicEval(runDir, e);
            options.onEval?.(e);
          }
        }
      }
    } finally {
      log.close();
      prefetch?.close();
    }
    await writeLossPlot(runDir);
    return { runDir, backend, finalStep: step, metrics, parameterCount: model.parameterCount };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
