export * from "./tf.ts";
export * from "./backend.ts";
