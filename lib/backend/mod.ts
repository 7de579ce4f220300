export * from "./tf.ts";
export * from "./backend.ts";
export * from "./fused.ts";
