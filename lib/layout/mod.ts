export * from "./sequence.ts";
