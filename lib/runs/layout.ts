/**
 * Where things live on disk. A run folder holds one training run; the data root holds the
 * server's runs, job store and evaluation cache. Every other module asks these functions for
 * a path instead of spelling file names.
 *
 * ```
 * <run>/config.json            resolved training config (+ model, backend)
 * <run>/tokenizer.json         the run's tokenizer
 * <run>/metrics.jsonl          one StepMetrics per line (a resumed step may repeat: last wins)
 * <run>/loss.svg               loss curves drawn from metrics.jsonl
 * <run>/evals.jsonl            periodic evaluations during training (evalEvery)
 * <run>/checkpoints/step-NNNNNN/{manifest.json,weights.bin,optimizer.bin}
 * <run>/checkpoints/latest.json
 * <run>/eval/step-NNNNNN.json              evaluation of that checkpoint (CLI and HTTP jobs)
 * <run>/eval/step-NNNNNN.predictions.jsonl one line per evaluated item
 *
 * <root>/runs/<job id>/        runs of training jobs
 * <root>/jobs.kv               job records (Deno KV)
 * <root>/eval-cache/<key>.json cached suite results
 * ```
 */
import { join } from "node:path";

export const CHECKPOINT_DIR_PATTERN = /^step-\d+$/;

/** `step-000042`: the name of step 42's checkpoint and evaluation. */
export const stepName = (step: number) => `step-${String(step).padStart(6, "0")}`;

/** The files of a run folder. */
export function runPaths(runDir: string) {
  return {
    dir: runDir,
    config: join(runDir, "config.json"),
    tokenizer: join(runDir, "tokenizer.json"),
    metrics: join(runDir, "metrics.jsonl"),
    lossPlot: join(runDir, "loss.svg"),
    periodicEvals: join(runDir, "evals.jsonl"),
    checkpoints: join(runDir, "checkpoints"),
    evaluations: join(runDir, "eval"),
    evaluation: (step: number) => join(runDir, "eval", `${stepName(step)}.json`),
    predictions: (step: number) => join(runDir, "eval", `${stepName(step)}.predictions.jsonl`),
  };
}
export type RunPaths = ReturnType<typeof runPaths>;

/** The folders and files of the server's data root (`DVSFT_DATA_DIR`). */
export function dataRootPaths(root: string) {
  return {
    root,
    runs: join(root, "runs"),
    /** A training job's run folder, relative to the root (as job records store it). */
    runRel: (id: string) => join("runs", id),
    jobStore: join(root, "jobs.kv"),
    evalCache: join(root, "eval-cache"),
  };
}

/** The default evaluation cache of local runs. */
export const DEFAULT_EVAL_CACHE = "out/eval-cache";
