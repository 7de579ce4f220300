export * from "./evaluate.ts";
export * from "./compare.ts";
