export * from "./evaluate.ts";
export * from "./compare.ts";
export * from "./experiment.ts";
export * from "./suite_file.ts";
export * from "./suites.ts";
