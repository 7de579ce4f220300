export * from "../runs/job_store.ts";
export * from "./runner.ts";
export * from "./limits.ts";
