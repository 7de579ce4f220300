/**
 * The one owner of the on-disk layout: run folders (config, metrics, checkpoints, evaluations,
 * predictions) and the data root (runs, job store, evaluation cache), with schemas for every
 * file read back and one atomic-write helper.
 */
export * from "./atomic.ts";
export * from "./layout.ts";
export * from "./metrics.ts";
export * from "./checkpoint.ts";
export * from "./evaluations.ts";
export * from "./run_files.ts";
export * from "./job_store.ts";
