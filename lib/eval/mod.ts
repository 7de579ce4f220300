export * from "./evaluate.ts";
export * from "./compare.ts";
export * from "./experiment.ts";
