/** A run's training log (`metrics.jsonl`) and periodic evaluations (`evals.jsonl`). */
import { z } from "zod";
import { runPaths } from "./layout.ts";
import { readJsonLines } from "./_read.ts";

export { RunFileError } from "./_read.ts";

export const StepMetricsSchema = z.object({
  step: z.number().int(),
  lr: z.number(),
  loss: z.number(),
  textLoss: z.number(),
  visionLoss: z.number(),
  gradNorm: z.number(),
  tokensPerSecond: z.number(),
  stepMs: z.number(),
  numTensors: z.number(),
  heapMB: z.number(),
});
export type StepMetrics = z.infer<typeof StepMetricsSchema>;

export const PeriodicEvalSchema = z.object({
  step: z.number().int(),
  suite: z.string(),
  metric: z.string(),
  score: z.number(),
  probeTop1: z.number().nullable(),
  probeTop5: z.number().nullable(),
  n: z.number().int(),
});
export type PeriodicEval = z.infer<typeof PeriodicEvalSchema>;

/**
 * The run's step metrics, one per step in step order. A step redone after a resume replaces its
 * first record. `null` when the run has no metrics file.
 */
export async function readMetrics(runDir: string): Promise<StepMetrics[] | null> {
  const all = await readJsonLines(runPaths(runDir).metrics, StepMetricsSchema);
  if (!all) return null;
  const byStep = new Map<number, StepMetrics>();
  for (const m of all) byStep.set(m.step, m);
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** An open `metrics.jsonl`, appended one step at a time. */
export interface MetricsLog {
  append(m: StepMetrics): Promise<void>;
  close(): void;
}

/** Open the run's metrics log; `fresh` empties it first (a new run, not a resume). */
export async function openMetricsLog(runDir: string, fresh: boolean): Promise<MetricsLog> {
  const path = runPaths(runDir).metrics;
  if (fresh) await Deno.writeTextFile(path, "");
  const f = await Deno.open(path, { append: true, create: true });
  const enc = new TextEncoder();
  return {
    append: async (m) => {
      await f.write(enc.encode(JSON.stringify(m) + "\n"));
    },
    close: () => f.close(),
  };
}

export async function appendPeriodicEval(runDir: string, e: PeriodicEval): Promise<void> {
  await Deno.writeTextFile(runPaths(runDir).periodicEvals, JSON.stringify(e) + "\n", {
    append: true,
  });
}

/** The evaluations made during training, in the order they were made. */
export async function readPeriodicEvals(runDir: string): Promise<PeriodicEval[]> {
  return (await readJsonLines(runPaths(runDir).periodicEvals, PeriodicEvalSchema)) ?? [];
}
