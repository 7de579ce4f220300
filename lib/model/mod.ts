export * from "./config.ts";
export * from "./model.ts";
