/**
 * Evaluation suites, whatever they are made of: a synthetic generator suite (`text-reading`), a
 * benchmark file in the layouts people have (`file:bench/textvqa.parquet`, read by
 * `readSuiteFile`), or a dataset with questions (`dataset:out/data/mine#anls`). Each becomes a
 * list of samples for the built-in model plus the reference answers, with an id that names its
 * exact content (the cache key of its scores).
 */
import { z } from "zod";
import {
  buildSequence,
  datasetSample,
  fitToSquare,
  readDatasetTurns,
  type Sample,
  SUITES,
  suiteSamples,
} from "../data/mod.ts";
import { decodeImage } from "../image/mod.ts";
import { METRIC_NAMES, type MetricName } from "../metrics/mod.ts";
import type { ModelConfig } from "../model/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import { IGNORE_INDEX } from "../labels/mod.ts";
import { numVisualTokens } from "../model/mod.ts";
import { sha256Hex } from "../util/hash.ts";
import { readSuiteFile, type SUITE_LAYOUTS } from "./suite_file.ts";

/** A sample to evaluate, with every accepted answer. */
export interface EvalSample extends Sample {
  answers: string[];
  /** The item's id in its suite. */
  itemId: string;
}

/** Where a suite comes from. */
export type SuiteRef =
  | { kind: "synthetic"; name: string }
  | { kind: "file"; path: string; metric?: MetricName; layout?: (typeof SUITE_LAYOUTS)[number] }
  | { kind: "dataset"; path: string; metric: MetricName };

/** A suite ready to evaluate. */
export interface EvalSuite {
  /** What results are reported under (`text-reading`, `file:…`, `dataset:…`). */
  name: string;
  /** Names the content exactly: generator version, or the file's / dataset's hash. */
  id: string;
  domain: string;
  metric: MetricName;
  /** Where the items came from, for the results file. */
  source: { kind: SuiteRef["kind"]; path?: string; sha256?: string; layout?: string };
  /** The first `n` items as samples for the model. */
  samples(n: number, config: ModelConfig, tokenizer: WordTokenizer): Promise<EvalSample[]>;
}

const MetricSchema = z.enum(METRIC_NAMES);

/** Raised for a suite name that names nothing usable (maps to HTTP 400). */
export class SuiteRefError extends Error {
  override name = "SuiteRefError";
}

/**
 * Parse a suite name: a generator suite (`charts`), `file:PATH[#metric]` or `dataset:PATH#metric`.
 *
 * @example
 * ```ts
 * parseSuiteRef("file:bench/docvqa_val.parquet"); // { kind: "file", path: "bench/docvqa_val.parquet" }
 * ```
 */
export function parseSuiteRef(s: string): SuiteRef {
  const m = /^(file|dataset):(.+?)(?:#(\w+))?$/.exec(s);
  if (!m) {
    if (!Object.hasOwn(SUITES, s) || s === "train") {
      throw new SuiteRefError(
        `Unknown suite '${s}': one of ${
          Object.keys(SUITES).filter((k) => k !== "train").join(", ")
        }, file:PATH[#metric] or dataset:PATH#metric`,
      );
    }
    return { kind: "synthetic", name: s };
  }
  const [, kind, path, metric] = m as unknown as [string, "file" | "dataset", string, string?];
  const parsedMetric = metric === undefined ? undefined : MetricSchema.safeParse(metric);
  if (parsedMetric && !parsedMetric.success) {
    throw new SuiteRefError(
      `Unknown metric '${metric}' in suite '${s}': one of ${METRIC_NAMES.join(", ")}`,
    );
  }
  if (kind === "dataset") {
    if (!parsedMetric) {
      throw new SuiteRefError(
        `Suite '${s}': a dataset needs its metric (dataset:PATH#anls, one of ${
          METRIC_NAMES.join(", ")
        })`,
      );
    }
    return { kind, path, metric: parsedMetric.data };
  }
  return { kind, path, ...(parsedMetric ? { metric: parsedMetric.data } : {}) };
}

/** A suite name as requests and configs give it, checked by {@linkcode parseSuiteRef}. */
export const SuiteNameSchema = z.string().max(4096).superRefine((s, ctx) => {
  try {
    parseSuiteRef(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
  }
});

/** A suite name for `SuiteRef`, as `parseSuiteRef` reads it. */
export function suiteRefName(r: SuiteRef): string {
  if (r.kind === "synthetic") return r.name;
  return `${r.kind}:${r.path}${"metric" in r && r.metric ? `#${r.metric}` : ""}`;
}

/**
 * A sample from an image of any size and a question: the image fitted into the model's input,
 * no vision labels (a benchmark file has no words). A prompt longer than the model's text
 * length keeps its end (as trainers truncate on the left); the answer is cut to what fits.
 */
async function fileSample(
  image: Uint8Array,
  question: string,
  answers: string[],
  itemId: string,
  config: ModelConfig,
  tokenizer: WordTokenizer,
): Promise<EvalSample> {
  const decoded = await decodeImage(image);
  const { pixels } = fitToSquare(decoded.image, config.imageSize);
  const labels = new Array(numVisualTokens(config)).fill(IGNORE_INDEX);
  const s = buildSequence(config, tokenizer, pixels, question, answers[0]!, labels, {
    words: [],
  }, { truncate: true })!;
  return { ...s, answers, itemId };
}

/** Open a suite: read a file's items (checked) or a dataset's turns. */
export async function openSuite(ref: SuiteRef): Promise<EvalSuite> {
  if (ref.kind === "synthetic") {
    const spec = SUITES[ref.name]!;
    return {
      name: ref.name,
      id: spec.id,
      domain: spec.domain,
      metric: spec.metric,
      source: { kind: "synthetic" },
      samples: async (n, config, tokenizer) => {
        const out: EvalSample[] = [];
        // each item's first question that fits the model's text length
        for (let k = 0; out.length < n && k < n * 3; k++) {
          const s = (await suiteSamples(ref.name, k, config, tokenizer))[0];
          if (s) out.push({ ...s, answers: [s.answer], itemId: String(k) });
        }
        return out;
      },
    };
  }
  if (ref.kind === "file") {
    const file = await readSuiteFile(ref.path, {
      ...(ref.metric ? { metric: ref.metric } : {}),
      ...(ref.layout ? { layout: ref.layout } : {}),
    });
    const metrics = [...new Set(file.items.map((i) => i.metric))];
    if (metrics.length !== 1) {
      throw new SuiteRefError(
        `Suite file '${ref.path}' mixes metrics (${
          metrics.join(", ")
        }); give one with file:PATH#metric`,
      );
    }
    return {
      name: suiteRefName(ref),
      id: file.id,
      domain: "file",
      metric: metrics[0]!,
      source: { kind: "file", path: ref.path, sha256: file.sha256, layout: file.layout },
      samples: async (n, config, tokenizer) => {
        const out: EvalSample[] = [];
        for (const it of file.items.slice(0, n)) {
          out.push(await fileSample(it.image, it.question, it.answers, it.id, config, tokenizer));
        }
        return out;
      },
    };
  }
  const turns = (await readDatasetTurns(ref.path)).filter((t) => t.turn >= 0);
  if (turns.length === 0) {
    throw new SuiteRefError(`Dataset '${ref.path}' has no questions to evaluate`);
  }
  // the dataset's records and image hashes name its content
  const sha = await sha256Hex(
    new TextEncoder().encode(JSON.stringify(turns.map((t) => [t.item.id, t.item.image, t.turn]))),
  );
  return {
    name: suiteRefName(ref),
    id: `dataset@${sha.slice(0, 12)}`,
    domain: "dataset",
    metric: ref.metric,
    source: { kind: "dataset", path: ref.path, sha256: sha },
    samples: async (n, config, tokenizer) => {
      const out: EvalSample[] = [];
      for (const t of turns.slice(0, n)) {
        const qa = t.item.qa[t.turn]!;
        const answers = qa.answers ?? [qa.answer];
        const s = await datasetSample(t, config, tokenizer, { truncate: true });
        out.push({ ...s!, answers, itemId: `${t.item.id}#${t.turn}` });
      }
      return out;
    },
  };
}
