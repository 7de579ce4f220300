/**
 * Evaluation of a checkpoint on benchmark suites: batched greedy decoding with a length limit,
 * the suite's metric per item, and the visual-token probe (how often the LM head at a
 * supervised visual position names the word's token). Results are cached by
 * (checkpoint hash, suite id, item count, decoding options).
 */
import { z } from "zod";
import { type BackendName, tf, tokenCrossEntropy, useBackend } from "../backend/mod.ts";
import type { Sample } from "../data/mod.ts";
import {
  type ModelConfig,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../model/mod.ts";
import { getTokenizer, type WordTokenizer } from "../tokenizer/mod.ts";
import { EOS_ID, PAD_ID, SMALL_TOKENIZER_NAME } from "../tokenizer/small.ts";
import {
  DEFAULT_EVAL_CACHE,
  type EvalResult,
  type ItemResult,
  loadCheckpoint,
  type PeriodicEval,
  readCachedSuite,
  resolveCheckpoint,
  restoreVariables,
  type SuiteResult,
  writeCachedSuite,
  writeEvaluation,
} from "../runs/mod.ts";
import type { PeriodicEvalHook } from "../train/mod.ts";
import { IGNORE_INDEX } from "../labels/mod.ts";
import { METRIC_VERSIONS, METRICS } from "../metrics/mod.ts";
import { greedyDecodeCached } from "../model/mod.ts";
import { type EvalSuite, openSuite, parseSuiteRef, SuiteNameSchema } from "./suites.ts";
import { sha256Hex } from "../util/hash.ts";

export const EvalOptionsSchema = z.strictObject({
  /** Generator suites by name, `file:PATH[#metric]` benchmark files, `dataset:PATH#metric`. */
  suites: z.array(SuiteNameSchema).min(1).max(64),
  /** Items per suite (the suite's first n). */
  n: z.number().int().min(1).max(100_000).default(100),
  batchSize: z.number().int().min(1).max(1024).default(16),
  maxNewTokens: z.number().int().min(1).max(256).default(16),
  backend: z.enum(["auto", "tensorflow", "webgpu", "wasm", "cpu"]).default("auto"),
  /** Folder for cached results. */
  cacheDir: z.string().default(DEFAULT_EVAL_CACHE),
});
export type EvalOptions = z.infer<typeof EvalOptionsSchema>;

export type { EvalResult, ItemResult, SuiteResult };

/** A model with a checkpoint's weights, and its training config. */
export async function modelFromCheckpoint(
  path: string,
): Promise<
  {
    model: SmallVLM;
    config: ModelConfig;
    train: Record<string, unknown>;
    step: number;
    weightsSha256: string;
  }
> {
  const ck = await loadCheckpoint(path);
  const cfg = ck.manifest.config as { model: unknown; train: Record<string, unknown> };
  const config = ModelConfigSchema.parse(cfg.model);
  const model = new SmallVLM(config, undefined, 0);
  try {
    restoreVariables(model.weights, ck.weights, path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return {
    model,
    config,
    train: cfg.train,
    step: ck.manifest.step,
    weightsSha256: ck.manifest.files["weights.bin"]!,
  };
}

/** Greedy decoding from each sample's prompt; returns the generated ids (EOS excluded). */
export async function greedyDecode(
  model: SmallVLM,
  samples: Sample[],
  maxNewTokens: number,
): Promise<number[][]> {
  const c = model.config;
  const B = samples.length, T = sequenceLength(c), S = c.imageSize;
  const ids = new Int32Array(B * T);
  const pos = samples.map((s) => s.promptEnd);
  samples.forEach((s, b) => {
    ids.set(s.inputIds.subarray(0, s.promptEnd), b * T);
    ids.fill(PAD_ID, b * T + s.promptEnd, (b + 1) * T);
  });
  const px = new Float32Array(B * S * S * 3);
  samples.forEach((s, b) => px.set(s.pixels, b * S * S * 3));
  const pixels = tf.tensor4d(px, [B, S, S, 3]);
  const out: number[][] = samples.map(() => []);
  const done = samples.map(() => false);
  try {
    for (let t = 0; t < maxNewTokens && done.some((d) => !d); t++) {
      // causal model: the logits at p − 1 do not depend on what is after p
      const next = tf.tidy(() => {
        const logits = model.apply(pixels, tf.tensor2d(ids, [B, T], "int32")); // [B, T, V]
        const idx = tf.tensor1d(pos.map((p, b) => b * T + Math.min(p, T) - 1), "int32");
        return tf.argMax(tf.gather(tf.reshape(logits, [B * T, c.vocabSize]), idx), -1);
      });
      const tok = Array.from(await next.data());
      next.dispose();
      tok.forEach((id, b) => {
        if (done[b]) return;
        if (id === EOS_ID || pos[b]! >= T) {
          done[b] = true;
          return;
        }
        out[b]!.push(id);
        ids[b * T + pos[b]!] = id;
        pos[b]!++;
      });
    }
  } finally {
    pixels.dispose();
  }
  return out;
}

/** Probe: over labeled visual tokens, is the label the top-1 / in the top-5 of the head's logits? */
export async function visualProbe(
  model: SmallVLM,
  samples: Sample[],
  align: "next" | "self",
): Promise<{ top1: number; top5: number; n: number; answerNll: number[] }> {
  const c = model.config;
  const B = samples.length, T = sequenceLength(c), S = c.imageSize, N = numVisualTokens(c);
  const px = new Float32Array(B * S * S * 3), ids = new Int32Array(B * T);
  samples.forEach((s, b) => {
    px.set(s.pixels, b * S * S * 3);
    ids.set(s.inputIds, b * T);
  });
  const off = align === "next" ? 1 : 0; // logits at p − 1 predict the label at p
  // the answer's tokens (and EOS), teacher-forced: logits at p − 1 predict the label at p
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  samples.forEach((s, b) => {
    for (let p = N + 2; p < T; p++) targets[b * T + p - 1] = s.labels[p]!;
  });
  const [top, nll] = tf.tidy(() => {
    const logits = model.apply(tf.tensor4d(px, [B, S, S, 3]), tf.tensor2d(ids, [B, T], "int32"));
    return [
      tf.topk(tf.slice(logits, [0, 1 - off, 0], [B, N, c.vocabSize]), 5).indices, // [B, N, 5]
      tokenCrossEntropy(logits, tf.tensor2d(targets, [B, T], "int32")), // [B, T]
    ];
  });
  const idx = await top!.data(), nv = await nll!.data();
  tf.dispose([top!, nll!]);
  const answerNll = samples.map((_, b) => {
    let sum = 0, count = 0;
    for (let p = 0; p < T; p++) {
      if (targets[b * T + p] !== IGNORE_INDEX) {
        sum += nv[b * T + p]!;
        count++;
      }
    }
    return count ? sum / count : NaN;
  });
  let n = 0, t1 = 0, t5 = 0;
  samples.forEach((s, b) => {
    for (let v = 0; v < N; v++) {
      const label = s.labels[1 + v]!;
      if (label === IGNORE_INDEX) continue;
      n++;
      const k = (b * N + v) * 5;
      if (idx[k] === label) t1++;
      for (let j = 0; j < 5; j++) if (idx[k + j] === label) t5++;
    }
  });
  return { top1: n ? t1 / n : 0, top5: n ? t5 / n : 0, n, answerNll };
}

/** Evaluate a model (in memory) on a suite's first `n` items (a name, or an opened suite). */
export async function evaluateSuite(
  model: SmallVLM,
  tokenizer: WordTokenizer,
  suiteOrName: string | EvalSuite,
  o: { n: number; batchSize: number; maxNewTokens: number; align: "next" | "self" },
  onProgress?: (done: number) => void,
): Promise<SuiteResult> {
  const suite = typeof suiteOrName === "string"
    ? await openSuite(parseSuiteRef(suiteOrName))
    : suiteOrName;
  const samples = await suite.samples(o.n, model.config, tokenizer);
  const metric = METRICS[suite.metric];
  // the model writes decoded text: compare with the references as the tokenizer decodes them
  const asDecoded = (x: string) => tokenizer.decode(tokenizer.encode(x));
  const items: ItemResult[] = [];
  let p1 = 0, p5 = 0, pn = 0;
  for (let i = 0; i < samples.length; i += o.batchSize) {
    const batch = samples.slice(i, i + o.batchSize);
    // each image encoded once, the prompt prefilled once, then one token a step (KV cache)
    const gen = await greedyDecodeCached(model, batch, o.maxNewTokens);
    const probe = await visualProbe(model, batch, o.align);
    batch.forEach((s, b) => {
      const prediction = tokenizer.decode(gen[b]!);
      items.push({
        index: i + b,
        id: s.itemId,
        question: s.prompt,
        answer: s.answer,
        ...(s.answers.length > 1 ? { answers: s.answers } : {}),
        prediction,
        score: metric(prediction, s.answers.map(asDecoded)),
        nll: probe.answerNll[b]!,
      });
    });
    p1 += probe.top1 * probe.n;
    p5 += probe.top5 * probe.n;
    pn += probe.n;
    onProgress?.(i + batch.length);
  }
  return {
    suite: suite.name,
    id: suite.id,
    domain: suite.domain,
    metric: suite.metric,
    metricVersion: METRIC_VERSIONS[suite.metric],
    source: suite.source,
    n: items.length,
    score: items.reduce((s, x) => s + x.score, 0) / Math.max(1, items.length),
    probeTop1: pn ? p1 / pn : null,
    probeTop5: pn ? p5 / pn : null,
    answerNll: items.reduce((acc, x) => acc + x.nll!, 0) / Math.max(1, items.length),
    items,
  };
}

/**
 * Evaluate a checkpoint folder (or a run folder: its latest checkpoint) on suites.
 *
 * @example
 * ```ts
 * const r = await evaluateCheckpoint("out/runs/small-dvsft", { suites: ["text-reading"] });
 * r.suites[0].score;
 * ```
 */
export async function evaluateCheckpoint(
  path: string,
  input: z.input<typeof EvalOptionsSchema>,
  onProgress?: (done: number, total: number) => void,
): Promise<EvalResult> {
  const o = EvalOptionsSchema.parse(input);
  const ckpt = await resolveCheckpoint(path);
  await useBackend(o.backend as BackendName);
  const { model, train, step, weightsSha256 } = await modelFromCheckpoint(ckpt);
  const tokenizer = await getTokenizer(SMALL_TOKENIZER_NAME);
  const align = ((train.loss as { align?: "next" | "self" } | undefined)?.align) ?? "next";
  const { cacheDir, backend: _b, ...options } = o;
  const result: EvalResult = {
    checkpoint: { path: ckpt, step, weightsSha256 },
    options,
    suites: [],
  };
  try {
    let done = 0;
    const total = o.suites.length * o.n;
    for (const name of o.suites) {
      const suite = await openSuite(parseSuiteRef(name));
      const key = await sha256Hex(
        // "v3": KV-cache decoding, the reference metrics and their versions (a metric change
        // bumps its version, so stale scores are never mixed with new ones)
        JSON.stringify([
          "v3",
          weightsSha256,
          suite.id,
          suite.metric,
          METRIC_VERSIONS[suite.metric],
          o.n,
          o.maxNewTokens,
          align,
        ]),
      );
      const cached = await readCachedSuite(cacheDir, key);
      if (cached) {
        result.suites.push(cached);
        done += o.n;
        onProgress?.(done, total);
        continue;
      }
      const r = await evaluateSuite(model, tokenizer, suite, {
        n: o.n,
        batchSize: o.batchSize,
        maxNewTokens: o.maxNewTokens,
        align,
      }, (k) => {
        onProgress?.(done + k, total);
      });
      done += o.n;
      await writeCachedSuite(cacheDir, key, r);
      result.suites.push(r);
    }
    return result;
  } finally {
    model.dispose();
  }
}

/**
 * The hook `train()` calls every `evalEvery` steps: each of the config's `evalSuites` on its
 * first `evalN` items, with the model as it is.
 */
export function periodicEvaluation(): PeriodicEvalHook {
  return async function evaluateDuringTraining({ model, tokenizer, step, config }) {
    const out: PeriodicEval[] = [];
    for (const suite of config.evalSuites) {
      const r = await evaluateSuite(model, tokenizer, suite, {
        n: config.evalN,
        batchSize: config.batchSize,
        maxNewTokens: 16,
        align: config.loss.align,
      });
      out.push({
        step,
        suite,
        metric: r.metric,
        score: r.score,
        probeTop1: r.probeTop1,
        probeTop5: r.probeTop5,
        n: r.n,
      });
    }
    return out;
  };
}

/**
 * Evaluate one checkpoint of a run (default: its latest) and store the result with the run
 * (`writeEvaluation`): the CLI, the experiment and HTTP evaluation jobs all end here.
 */
export async function evaluateAndStore(
  runDir: string,
  input: z.input<typeof EvalOptionsSchema>,
  o: { checkpoint?: string; onProgress?: (done: number, total: number) => void } = {},
): Promise<EvalResult> {
  const r = await evaluateCheckpoint(o.checkpoint ?? runDir, input, o.onProgress);
  await writeEvaluation(runDir, r);
  return r;
}
