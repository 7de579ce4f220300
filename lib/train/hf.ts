/**
 * Fine-tuning a Hugging Face Qwen2-VL / Qwen2.5-VL checkpoint (`model: "hf:<folder>"`) with the
 * same joint loss as the built-in model: each dataset item's image resized by the `qwen2-vl`
 * geometry (smart_resize), its vision labels derived there with the real Qwen tokenizer, laid out
 * as `<|vision_start|> <|image_pad|>×N <|vision_end|> question answer <|im_end|>`. One image a
 * micro-batch (images differ in size), `gradAccum` micro-batches a step; LoRA or frozen parts
 * as the config says. The result is written back in Hugging Face's layout: a PEFT adapter
 * (`<run>/adapter/`) or full weights (`<run>/hf/`).
 */
import { join } from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import { tf, useBackend } from "../backend/mod.ts";
import { readDatasetTurns } from "../data/mod.ts";
import { decodeImage } from "../image/mod.ts";
import { computeGrid, GeometrySpecSchema } from "../geometry/mod.ts";
import { buildLabelSet, type WordBox } from "../labels/mod.ts";
import { jointNextTokenLoss } from "../loss/mod.ts";
import {
  addLora,
  buildQwenSequence,
  loadQwenVL,
  type QwenVLModel,
  saveLoraAdapter,
  saveQwenVL,
  setTrainable,
  trainableWeights,
} from "../model/qwen2vl/mod.ts";
import {
  openMetricsLog,
  runPaths,
  saveCheckpoint,
  type StepMetrics,
  writeRunConfig,
} from "../runs/mod.ts";
import { getTokenizer, type WordTokenizer } from "../tokenizer/mod.ts";
import { AdamW, learningRate } from "./optimizer.ts";
import type { TrainConfig } from "./config.ts";
import {
  recordStep,
  resumeTraining,
  stepError,
  type TrainOptions,
  type TrainResult,
} from "./loop.ts";

/** The checkpoint folder a `model: "hf:<folder>"` names, or null for a built-in preset. */
export const hfModelPath = (model: string): string | null =>
  model.startsWith("hf:") ? model.slice(3) : null;

interface QwenSample {
  pixels: tf.Tensor4D;
  inputIds: tf.Tensor2D;
  labels: tf.Tensor2D;
  vision: [number, number];
}

/** One dataset turn as Qwen inputs: image at its smart_resize size, labels for that grid. */
async function qwenSample(
  turn: Awaited<ReturnType<typeof readDatasetTurns>>[number],
  model: QwenVLModel,
  tokenizer: WordTokenizer,
  config: TrainConfig,
): Promise<QwenSample | null> {
  const { item } = turn;
  const geometry = GeometrySpecSchema.parse({
    name: "qwen2-vl",
    maxPixels: config.hf.maxPixels,
    minPixels: Math.min(3136, config.hf.maxPixels),
  });
  const grid = computeGrid(geometry, item.width, item.height);
  const W = grid.resizedWidth, H = grid.resizedHeight;
  const decoded = await decodeImage(await Deno.readFile(join(turn.dir, item.image)));
  const canvas = createCanvas(W, H);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(decoded.image, 0, 0, W, H);
  const rgba = ctx.getImageData(0, 0, W, H).data;
  const rgb = new Float32Array(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c]! / 255;
  }
  const visionLabels = config.objective === "dvsft"
    ? buildLabelSet({
      image: { sha256: "", width: item.width, height: item.height },
      words: item.words as WordBox[],
      source: item.source,
      tokenizer,
      geometry,
      policy: { split: "span", minCellOverlap: 0.1, minWordOverlap: 0.5 },
      minConfidence: 0,
    }).tokens.label
    : new Array(grid.tokens).fill(-100);
  const qa = turn.turn >= 0 ? item.qa[turn.turn]! : { question: "", answer: "" };
  const seq = buildQwenSequence(model.config, tokenizer, {
    height: H,
    width: W,
    question: qa.question,
    answer: qa.answer,
    visionLabels,
    length: undefined,
  });
  if (!seq || seq.inputIds.length > config.hf.maxSequence) return null;
  return {
    pixels: tf.tensor4d(rgb, [1, H, W, 3]),
    inputIds: tf.tensor2d(seq.inputIds, [1, seq.inputIds.length], "int32"),
    labels: tf.tensor2d(seq.labels, [1, seq.labels.length], "int32"),
    vision: seq.vision,
  };
}

/** Train (or resume) a run whose model is a Hugging Face checkpoint. */
export async function trainHf(
  runDir: string,
  config: TrainConfig,
  options: TrainOptions,
  onFirstStep: () => void,
): Promise<TrainResult> {
  const paths = runPaths(runDir);
  const backend = await useBackend(config.backend);
  const source = hfModelPath(config.model)!;
  if (config.data.task !== "dataset") {
    throw new RangeError(
      `Cannot train ${config.model}: a Hugging Face model trains on a dataset (data.task "dataset"), not '${config.data.task}'`,
    );
  }
  const turns = await readDatasetTurns(config.data.path!);
  if (turns.length === 0) throw new RangeError(`Dataset '${config.data.path}' has no items`);
  const tokenizer = await getTokenizer("qwen2");
  const { model, configJson } = await loadQwenVL(source);
  let optimizer: AdamW | null = null;
  try {
    if (config.hf.lora) addLora(model, config.hf.lora);
    setTrainable(model, {
      vision: !config.hf.freeze.vision && !config.hf.lora,
      merger: !config.hf.freeze.merger && !config.hf.lora,
      lm: !config.hf.freeze.lm && !config.hf.lora,
    });
    const weights = trainableWeights(model);
    if (weights.size === 0) {
      throw new RangeError(`Cannot train ${config.model}: everything is frozen`);
    }
    optimizer = new AdamW(config.optimizer, weights);
    let step = 0;
    let dataPosition = 0;
    const resumed = await resumeTraining(
      paths.checkpoints,
      options.resume ?? false,
      weights,
      optimizer,
    );
    const latest = resumed.latest;
    step = resumed.step;
    dataPosition = resumed.dataPosition;
    await writeRunConfig(runDir, { ...config, backend, hfSource: source });
    const checkpoint = () =>
      saveCheckpoint(paths.checkpoints, {
        step,
        dataPosition,
        adamT: optimizer!.t,
        config: { train: config },
        weights,
        m: optimizer!.m,
        v: optimizer!.v,
      }, config.keepCheckpoints);
    const vars = [...weights.values()];
    // f32 weights, and a gradient and two AdamW moments for each trainable one
    const sizeOf = (xs: Iterable<tf.Variable>) => [...xs].reduce((n, x) => n + x.size, 0);
    const stateBytes = 4 * sizeOf(new Set([...model.weights.values(), ...vars])) +
      12 * sizeOf(vars);
    const metrics: StepMetrics[] = [];
    const log = await openMetricsLog(runDir, !latest);
    try {
      while (step < config.steps) {
        if (options.signal?.aborted) {
          if (metrics.length > 0) await checkpoint();
          break;
        }
        const t0 = performance.now();
        let sums: tf.NamedTensorMap | null = null;
        let text = 0, vision = 0, total = 0, tokens = 0;
        for (let k = 0; k < config.hf.gradAccum; k++) {
          // the next turn that fits, cycling over the dataset
          let s: QwenSample | null = null;
          for (let tries = 0; !s && tries < turns.length; tries++) {
            s = await qwenSample(
              turns[(config.data.start + dataPosition++) % turns.length]!,
              model,
              tokenizer,
              config,
            );
          }
          if (!s) throw new RangeError(`No item of '${config.data.path}' fits hf.maxSequence`);
          try {
            let parts: tf.Scalar[] = [];
            const { value, grads } = tf.variableGrads(() => {
              const l = jointNextTokenLoss(
                model.apply(s!.pixels, s!.inputIds),
                s!.labels,
                s!.vision,
                config.loss,
              );
              parts = [tf.keep(l.text), tf.keep(l.vision)];
              return l.total;
            }, vars);
            const [tv, vv, lv] = await Promise.all(
              [...parts, value].map(async (t) => (await t.data())[0]!),
            );
            text += tv! / config.hf.gradAccum;
            vision += vv! / config.hf.gradAccum;
            total += lv! / config.hf.gradAccum;
            tokens += s.inputIds.size;
            tf.dispose([...parts, value]);
            if (sums === null) sums = grads;
            else {
              const prev: tf.NamedTensorMap = sums;
              sums = Object.fromEntries(
                Object.keys(grads).map((n) => [n, tf.add(prev[n]!, grads[n]!)]),
              );
              tf.dispose([...Object.values(prev), ...Object.values(grads)]);
            }
          } catch (e) {
            throw stepError(e, backend, stateBytes, step, paths.checkpoints);
          } finally {
            tf.dispose([s.pixels, s.inputIds, s.labels]);
          }
        }
        const averaged: tf.NamedTensorMap = Object.fromEntries(
          Object.entries(sums!).map(([n, g]) => [n, tf.div(g, config.hf.gradAccum)]),
        );
        tf.dispose(Object.values(sums!));
        const lr = learningRate(config.optimizer, step, config.steps);
        let normT: tf.Scalar;
        try {
          normT = optimizer.apply(averaged, lr);
        } catch (e) {
          throw stepError(e, backend, stateBytes, step, paths.checkpoints);
        }
        tf.dispose(Object.values(averaged));
        const norm = (await normT.data())[0]!;
        normT.dispose();
        if (!Number.isFinite(total) || !Number.isFinite(norm)) {
          throw new Error(`Training stopped at step ${step}: loss is ${total} (grad norm ${norm})`);
        }
        step++;
        await recordStep({
          step,
          lr,
          loss: total,
          textLoss: text,
          visionLoss: vision,
          gradNorm: norm,
          tokens,
          stepMs: performance.now() - t0,
        }, { config, log, metrics, onStep: options.onStep, onFirstStep, checkpoint });
      }
    } finally {
      log.close();
    }
    // what transformers loads: a PEFT adapter, or the full weights
    if (config.hf.lora) {
      await saveLoraAdapter(model, join(runDir, "adapter"), { baseModel: source });
    } else await saveQwenVL(model, configJson, join(runDir, "hf"));
    return {
      runDir,
      backend,
      finalStep: step,
      metrics,
      parameterCount: [...weights.values()].reduce((a, w) => a + w.size, 0),
    };
  } finally {
    optimizer?.dispose();
    model.dispose();
  }
}
