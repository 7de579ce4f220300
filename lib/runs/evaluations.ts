/**
 * Evaluations of a run's checkpoints (`<run>/eval/step-N.json` + per-item predictions) and the
 * cache of suite results. The CLI and the HTTP evaluation jobs both write here, so `compare`
 * reads either.
 */
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "./atomic.ts";
import { runPaths } from "./layout.ts";
import { readJsonFile as readJson } from "./_read.ts";

export const ItemResultSchema = z.object({
  index: z.number().int(),
  /** The item's id in its suite (a benchmark file's question id). */
  id: z.string().optional(),
  question: z.string(),
  answer: z.string(),
  /** Every accepted answer, when there are several (`answer` is the first). */
  answers: z.array(z.string()).optional(),
  prediction: z.string(),
  score: z.number(),
  /** Teacher-forced NLL of the answer's tokens (and EOS), nats per token (absent in results from before it was measured). */
  nll: z.number().optional(),
});
export type ItemResult = z.infer<typeof ItemResultSchema>;

export const SuiteResultSchema = z.object({
  suite: z.string(),
  id: z.string(),
  domain: z.string(),
  metric: z.string(),
  /** The metric's implementation version (`METRIC_VERSIONS`): scores of different versions never mix. */
  metricVersion: z.string().optional(),
  /** Where the items came from: a generator suite, a benchmark file (path, hash, layout), a dataset. */
  source: z.object({
    kind: z.string(),
    path: z.string().optional(),
    sha256: z.string().optional(),
    layout: z.string().optional(),
  }).optional(),
  n: z.number().int(),
  score: z.number(),
  probeTop1: z.number().nullable(),
  probeTop5: z.number().nullable(),
  /** Mean over items of the teacher-forced answer NLL (nats per token; lower is better). */
  answerNll: z.number().optional(),
  items: z.array(ItemResultSchema),
});
export type SuiteResult = z.infer<typeof SuiteResultSchema>;

export const EvalResultSchema = z.object({
  checkpoint: z.object({ path: z.string(), step: z.number().int(), weightsSha256: z.string() }),
  options: z.record(z.string(), z.unknown()),
  suites: z.array(SuiteResultSchema),
});
export type EvalResult = z.infer<typeof EvalResultSchema>;

/**
 * Store an evaluation of one of the run's checkpoints. Suites already evaluated on the same
 * weights are kept unless this evaluation has them too; an evaluation of other weights (a run
 * trained again under the same name) replaces the file. Returns the stored evaluation.
 */
export async function writeEvaluation(runDir: string, r: EvalResult): Promise<EvalResult> {
  const paths = runPaths(runDir);
  await Deno.mkdir(paths.evaluations, { recursive: true });
  const before = await readJson(paths.evaluation(r.checkpoint.step), EvalResultSchema);
  const fresh = new Set(r.suites.map((s) => s.suite));
  const kept = before?.checkpoint.weightsSha256 === r.checkpoint.weightsSha256
    ? before.suites.filter((s) => !fresh.has(s.suite))
    : [];
  const merged: EvalResult = { ...r, suites: [...kept, ...r.suites] };
  await writeFileAtomic(paths.evaluation(r.checkpoint.step), JSON.stringify(merged));
  await writeFileAtomic(
    paths.predictions(r.checkpoint.step),
    merged.suites.flatMap((s) => s.items.map((i) => JSON.stringify({ suite: s.suite, ...i })))
      .join("\n") + "\n",
  );
  return merged;
}

/** The evaluation of the checkpoint at `step`, or null. */
export function readEvaluation(runDir: string, step: number): Promise<EvalResult | null> {
  return readJson(runPaths(runDir).evaluation(step), EvalResultSchema);
}

/** All evaluations of a run's checkpoints, by step. */
export async function readEvaluations(runDir: string): Promise<EvalResult[]> {
  const dir = runPaths(runDir).evaluations;
  const out: EvalResult[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (/^step-\d+\.json$/.test(e.name)) {
        const r = await readJson(join(dir, e.name), EvalResultSchema);
        if (r) out.push(r);
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.checkpoint.step - b.checkpoint.step);
}

/** A cached suite result under `cacheDir` by its key, or null. */
export function readCachedSuite(cacheDir: string, key: string): Promise<SuiteResult | null> {
  return readJson(join(cacheDir, `${key}.json`), SuiteResultSchema).catch(() => null);
}

export async function writeCachedSuite(cacheDir: string, key: string, r: SuiteResult) {
  await Deno.mkdir(cacheDir, { recursive: true });
  await writeFileAtomic(join(cacheDir, `${key}.json`), JSON.stringify(r));
}
