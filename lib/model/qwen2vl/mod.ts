export * from "./config.ts";
export * from "./positions.ts";
export * from "./pixels.ts";
export * from "./model.ts";
export * from "./load.ts";
export * from "./lora.ts";
export * from "./sequence.ts";
