/**
 * The training stream: sample i as a pure function of (config, i), from the built-in reading
 * task, a generator suite, a dataset folder or a weighted mix. No backend here: the data worker
 * (`prefetch_worker.ts`) builds the same sampler as the loop.
 */
import {
  datasetSample,
  makeReadingSample,
  readDatasetTurns,
  type Sample,
  suiteSamples,
} from "../data/mod.ts";
import type { ModelConfig } from "../model/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import type { TrainConfig } from "./config.ts";

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
  if (d.task === "dataset") return await datasetSampler(d.path!, modelConfig, tokenizer);
  // mix: sample i comes from one source, picked by a hash of i with the sources' weights
  const sources = await Promise.all(
    d.mix.map(async (m) =>
      m.path !== undefined
        ? await datasetSampler(m.path, modelConfig, tokenizer)
        : await makeSampler(
          {
            ...config,
            data: m.task === "reading"
              ? { ...d, task: "reading", mix: [] }
              : { ...d, task: "suite", suite: m.suite!, mix: [] },
          },
          modelConfig,
          tokenizer,
        )
    ),
  );
  const total = d.mix.reduce((s, m) => s + m.weight, 0);
  return (i) => {
    let u = (mixHash(d.seed, i) / 2 ** 32) * total;
    for (let k = 0; k < sources.length; k++) {
      u -= d.mix[k]!.weight;
      if (u < 0 || k === sources.length - 1) return sources[k]!(i);
    }
    throw new Error("unreachable");
  };
}

/** A well-spread 32-bit hash of (seed, i). */
function mixHash(seed: number, i: number): number {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x85ebca6b) ^ Math.imul(i + 0x27d4eb2f, 0xc2b2ae35);
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 0;
}

/** Turn i of a dataset (any producer), cycling; turns whose text does not fit are skipped. */
async function datasetSampler(
  path: string,
  modelConfig: ModelConfig,
  tokenizer: WordTokenizer,
): Promise<(i: number) => Promise<Sample>> {
  const turns = await readDatasetTurns(path);
  if (turns.length === 0) throw new RangeError(`Dataset '${path}' has no items`);
  return async (i) => {
    for (let k = 0; k < turns.length; k++) {
      const s = await datasetSample(turns[(i + k) % turns.length]!, modelConfig, tokenizer);
      if (s) return s;
    }
    throw new RangeError(`No item of '${path}' fits the model's text length`);
  };
}
