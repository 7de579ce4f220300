export * from "./config.ts";
export * from "./optimizer.ts";
export * from "./train.ts";
export * from "./loop.ts";
export { hfModelPath } from "./hf.ts";
