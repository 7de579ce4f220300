export * from "./errors.ts";
export * from "./metrics.ts";
