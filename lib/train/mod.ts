export * from "./config.ts";
export * from "./optimizer.ts";
export * from "./train.ts";
export { hfModelPath } from "./hf.ts";
