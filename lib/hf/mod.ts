export * from "./safetensors.ts";
export * from "./checkpoint.ts";
export * from "./peft.ts";
