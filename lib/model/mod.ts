export * from "./config.ts";
export * from "./model.ts";
export * from "./flops.ts";
export * from "./decode.ts";
