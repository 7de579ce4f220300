/**
 * What every training loop shares: its options and result, the step recorder (metrics record,
 * log, callback, due checkpoint) and the loss plot — so the built-in model's loop (train.ts) and
 * the Hugging Face one (hf.ts) are siblings, neither importing the other.
 */
import { tf, WASM_MAX_TENSOR_BYTES } from "../backend/mod.ts";
import type { SmallVLM } from "../model/mod.ts";
import { lineChartSvg } from "../plot/mod.ts";
import {
  latestCheckpoint,
  loadCheckpoint,
  type MetricsLog,
  type PeriodicEval,
  readMetrics,
  restoreVariables,
  runPaths,
  type StepMetrics,
  writeFileAtomic,
} from "../runs/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import type { TrainConfig } from "./config.ts";
import type { AdamW } from "./optimizer.ts";

/** Write `loss.svg` from the run's metrics (the whole run, across resumes). */
export async function writeLossPlot(runDir: string): Promise<void> {
  const ms = (await readMetrics(runDir)) ?? [];
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
  await writeFileAtomic(runPaths(runDir).lossPlot, svg);
}

/**
 * Log a finished step: its metrics record (with throughput, tensors, memory), the metrics file,
 * the caller's callback, and a checkpoint when one is due. Shared by every model's loop.
 */
export async function recordStep(
  s: Omit<StepMetrics, "tokensPerSecond" | "numTensors" | "heapMB"> & { tokens: number },
  ctx: {
    config: TrainConfig;
    log: MetricsLog;
    metrics: StepMetrics[];
    onStep?: (m: StepMetrics) => void;
    onFirstStep: () => void;
    checkpoint: () => Promise<unknown>;
  },
): Promise<StepMetrics> {
  const { tokens, ...rest } = s;
  const m: StepMetrics = {
    ...rest,
    tokensPerSecond: tokens / (s.stepMs / 1000),
    numTensors: tf.memory().numTensors,
    heapMB: Math.round(Deno.memoryUsage().rss / 1e6),
  };
  ctx.metrics.push(m);
  ctx.onFirstStep();
  await ctx.log.append(m);
  ctx.onStep?.(m);
  const c = ctx.config;
  if ((c.checkpointEvery > 0 && m.step % c.checkpointEvery === 0) || m.step === c.steps) {
    await ctx.checkpoint();
  }
  return m;
}

/** What a periodic evaluation hook gets: the model being trained, as it is at `step`. */
export interface PeriodicEvalContext {
  model: SmallVLM;
  tokenizer: WordTokenizer;
  step: number;
  config: TrainConfig;
}

/**
 * Evaluates the model during training (every `evalEvery` steps); supplied by the caller
 * (e.g. `periodicEvaluation` of lib/eval), so training does not depend on evaluation.
 */
export type PeriodicEvalHook = (ctx: PeriodicEvalContext) => Promise<PeriodicEval[]>;

/** Options of {@linkcode train}. */
export interface TrainOptions {
  /** Continue from the run's latest checkpoint when there is one. @default false */
  resume?: boolean;
  onStep?: (m: StepMetrics) => void;
  /** Runs the evaluations of `evalEvery`; required when the config sets `evalEvery`. */
  evaluate?: PeriodicEvalHook;
  /** Called with each evaluation of `evalEvery`. */
  onEval?: (e: PeriodicEval) => void;
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

/**
 * Continue from the newest checkpoint in `ckptDir` when resuming: the weights, the optimizer's
 * moments and step, and the data position. `latest` is null when there was nothing to resume.
 */
export async function resumeTraining(
  ckptDir: string,
  resume: boolean,
  weights: Map<string, tf.Variable>,
  optimizer: AdamW,
): Promise<{ latest: string | null; step: number; dataPosition: number }> {
  const latest = resume ? await latestCheckpoint(ckptDir) : null;
  if (!latest) return { latest, step: 0, dataPosition: 0 };
  const ck = await loadCheckpoint(latest);
  restoreVariables(weights, ck.weights, latest);
  restoreVariables(optimizer.m, ck.optimizer, latest, ".m");
  restoreVariables(optimizer.v, ck.optimizer, latest, ".v");
  optimizer.t = ck.manifest.adamT;
  return { latest, step: ck.manifest.step, dataPosition: ck.manifest.dataPosition };
}

/**
 * A wasm trap in training step `step` (0-based; the heap full, most likely), said as such, with
 * the bytes the model's weights and training state hold; other errors come back unchanged.
 */
export function stepError(
  e: unknown,
  backend: string,
  stateBytes: number,
  step: number,
  checkpoints: string,
): unknown {
  if (backend !== "wasm" || !(e instanceof WebAssembly.RuntimeError)) return e;
  return new RangeError(
    `Training step ${step + 1} failed on wasm (${e.message}): the wasm heap holds ${
      (WASM_MAX_TENSOR_BYTES / 2 ** 30).toFixed(2)
    } GiB of tensors, and the weights, gradients and AdamW moments already hold ${
      (stateBytes / 2 ** 30).toFixed(2)
    } GiB before the step's activations; use a smaller batch or model, or --set backend=webgpu${
      step > 0 ? `. Checkpoints so far are in ${checkpoints}` : ""
    }`,
    { cause: e },
  );
}
