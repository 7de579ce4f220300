export * from "./assign.ts";
export * from "./label_set.ts";
export * from "./overlay.ts";
export * from "./pipeline.ts";
export * from "./compare.ts";
export * from "./label_input.ts";
