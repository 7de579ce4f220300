export * from "./errors.ts";
export * from "./metrics.ts";
export * from "./label_pool.ts";
export * from "./front.ts";
