export * from "./store.ts";
export * from "./runner.ts";
