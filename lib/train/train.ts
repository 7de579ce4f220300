/**
 * The training path, top to bottom: config → tokenizer → data → model → optimizer →
 * (resume) → loop { batch, step, log, checkpoint }.
 */
import { join } from "node:path";
import { tf, useBackend } from "../backend/mod.ts";
import {
  itemSample,
  makeReadingSample,
  readItems,
  type Sample,
  suiteSamples,
} from "../data/mod.ts";
import { jointNextTokenLoss } from "../loss/mod.ts";
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../model/mod.ts";
import { loadTokenizerFile, type WordTokenizer } from "../tokenizer/mod.ts";
import { writeSmallTokenizer } from "../tokenizer/small.ts";
import { IGNORE_INDEX } from "../labels/mod.ts";
import { AdamW, learningRate } from "./optimizer.ts";
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { type TrainConfig, type TrainConfigInput, TrainConfigSchema } from "./config.ts";
import { lineChartSvg } from "../plot/mod.ts";

/** Write `loss.svg` from the run's metrics.jsonl (the whole run, across resumes). */
export async function writeLossPlot(runDir: string): Promise<void> {
  const byStep = new Map<number, StepMetrics>();
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl")).catch(() => "");
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as StepMetrics;
    byStep.set(m.step, m); // a step redone after a resume replaces its first record
  }
  const ms = [...byStep.values()].sort((a, b) => a.step - b.step);
  if (ms.length === 0) return;
  const series = (name: string, f: (m: StepMetrics) => number) => ({
    name,
    points: ms.map((m) => ({ x: m.step, y: f(m) })),
  });
  const svg = lineChartSvg([
    series("total", (m) => m.loss),
    series("text", (m) => m.textLoss),
    series("vision", (m) => m.visionLoss),
  ], {
    title: `${runDir.split("/").at(-1)}: loss`,
    x: "step",
    y: "loss",
  });
  await Deno.writeTextFile(join(runDir, "loss.svg"), svg);
}

export interface StepMetrics {
  step: number;
  lr: number;
  loss: number;
  textLoss: number;
  visionLoss: number;
  gradNorm: number;
  tokensPerSecond: number;
  stepMs: number;
  numTensors: number;
  heapMB: number;
}

/** Options of {@linkcode train}. */
export interface TrainOptions {
  /** Continue from the run's latest checkpoint when there is one. @default false */
  resume?: boolean;
  onStep?: (m: StepMetrics) => void;
  /** Called with each evaluation of `evalEvery`. */
  onEval?: (e: { step: number; suite: string; score: number; probeTop1: number | null }) => void;
  signal?: AbortSignal;
}

export interface TrainResult {
  runDir: string;
  backend: string;
  finalStep: number;
  metrics: StepMetrics[];
  parameterCount: number;
}

/** Raised when the loss becomes NaN or ±Inf: training stops, the last good checkpoint stays. */
export class NonFiniteLossError extends Error {
  override name = "NonFiniteLossError";
}

export function resolveModelConfig(c: TrainConfig, vocabSize: number): ModelConfig {
  return ModelConfigSchema.parse({ ...MODEL_PRESETS[c.model], ...c.modelOverrides, vocabSize });
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

/**
 * Sample i of the training stream, a pure function of (config, i): resuming at a data
 * position reproduces the same batches.
 */
export async function makeSampler(
  config: TrainConfig,
  modelConfig: ModelConfig,
  tokenizer: WordTokenizer,
): Promise<(i: number) => Promise<Sample>> {
  const d = config.data;
  if (d.task === "reading") {
    return (i) =>
      Promise.resolve(
        makeReadingSample(d.size > 0 ? i % d.size : i, {
          config: modelConfig,
          tokenizer,
          seed: d.seed,
        }),
      );
  }
  if (d.task === "suite") {
    // item k of the suite gives several questions; sample i takes item ⌊i/2⌋'s question i mod 2 (or the first)
    return async (i) => {
      const j = d.size > 0 ? i % d.size : i;
      const all = await suiteSamples(d.suite, Math.floor(j / 2), modelConfig, tokenizer);
      if (all.length === 0) {
        return await suiteSamples(d.suite, Math.floor(j / 2) + 1_000_000, modelConfig, tokenizer)
          .then((x) => x[0]!);
      }
      return all[j % 2 % all.length]!;
    };
  }
  const items = await readItems(d.path!);
  if (items.length === 0) throw new RangeError(`Dataset '${d.path}' has no items`);
  return async (i) => {
    for (let k = 0; k < items.length; k++) {
      const s = await itemSample(items[(i + k) % items.length]!, modelConfig, tokenizer);
      if (s) return s;
    }
    throw new RangeError(`No item of '${d.path}' fits the model's text length`);
  };
}

/** Run (or resume) a training job. */
export async function train(
  input: TrainConfigInput,
  options: TrainOptions = {},
): Promise<TrainResult> {
  // config
  const config = TrainConfigSchema.parse(input);
  const runDir = join(config.outDir, config.name);
  const ckptDir = join(runDir, "checkpoints");
  await Deno.mkdir(runDir, { recursive: true });
  const backend = await useBackend(config.backend);

  // tokenizer (saved with the run, an ordinary tokenizer.json)
  const tokPath = join(runDir, "tokenizer.json");
  await writeSmallTokenizer(tokPath);
  const tokenizer: WordTokenizer = await loadTokenizerFile(tokPath, "dvsft-small");

  // model and optimizer
  const modelConfig = resolveModelConfig(config, tokenizer.vocabSize);
  const model = new SmallVLM(modelConfig, undefined, config.seed);
  const optimizer = new AdamW(config.optimizer, model.weights);
  let step = 0;
  let dataPosition = 0;

  try {
    // resume
    const latest = options.resume ? await latestCheckpoint(ckptDir) : null;
    if (latest) {
      const ck = await loadCheckpoint(latest);
      for (const [name, w] of model.weights) {
        const values = ck.weights.get(name);
        if (!values || values.length !== w.size) {
          throw new Error(`Checkpoint ${latest} does not match the model at '${name}'`);
        }
        w.assign(tf.tensor(values, w.shape));
        optimizer.m.get(name)!.assign(tf.tensor(ck.optimizer.get(`${name}.m`)!, w.shape));
        optimizer.v.get(name)!.assign(tf.tensor(ck.optimizer.get(`${name}.v`)!, w.shape));
      }
      step = ck.manifest.step;
      dataPosition = ck.manifest.dataPosition;
      optimizer.t = ck.manifest.adamT;
    } else {
      await Deno.writeTextFile(join(runDir, "metrics.jsonl"), "");
    }
    await Deno.writeTextFile(
      join(runDir, "config.json"),
      JSON.stringify({ ...config, resolvedModel: modelConfig, backend }, null, 2) + "\n",
    );

    const N = numVisualTokens(modelConfig);
    const T = sequenceLength(modelConfig);
    const sampleAt = await makeSampler(config, modelConfig, tokenizer);
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
    const log = await Deno.open(join(runDir, "metrics.jsonl"), { append: true, create: true });
    try {
      while (step < config.steps) {
        if (options.signal?.aborted) {
          // stopped from outside: keep the work done so far
          if (metrics.length > 0) await checkpoint();
          break;
        }
        const t0 = performance.now();
        // data
        const samples = await Promise.all(
          Array.from({ length: config.batchSize }, (_, k) => sampleAt(dataPosition + k)),
        );
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
        const stepMs = performance.now() - t0;
        const m: StepMetrics = {
          step,
          lr,
          loss,
          textLoss,
          visionLoss,
          gradNorm: norm,
          tokensPerSecond: (config.batchSize * T) / (stepMs / 1000),
          stepMs,
          numTensors: tf.memory().numTensors,
          heapMB: Math.round(Deno.memoryUsage().rss / 1e6),
        };
        metrics.push(m);
        await log.write(new TextEncoder().encode(JSON.stringify(m) + "\n"));
        options.onStep?.(m);
        if (
          (config.checkpointEvery > 0 && step % config.checkpointEvery === 0) ||
          step === config.steps
        ) await checkpoint();
        if (config.evalEvery > 0 && (step % config.evalEvery === 0 || step === config.steps)) {
          // loaded here: lib/eval reads checkpoints through this folder's modules
          const { evaluateSuite } = await import("../eval/evaluate.ts");
          for (const suite of config.evalSuites) {
            const r = await evaluateSuite(model, tokenizer, suite, {
              n: config.evalN,
              batchSize: config.batchSize,
              maxNewTokens: 16,
              align: config.loss.align,
            });
            const line = {
              step,
              suite,
              metric: r.metric,
              score: r.score,
              probeTop1: r.probeTop1,
              probeTop5: r.probeTop5,
              n: r.n,
            };
            await Deno.writeTextFile(join(runDir, "evals.jsonl"), JSON.stringify(line) + "\n", {
              append: true,
            });
            options.onEval?.(line);
          }
        }
      }
    } finally {
      log.close();
    }
    await writeLossPlot(runDir);
    return { runDir, backend, finalStep: step, metrics, parameterCount: model.parameterCount };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
