export * from "./geometry.ts";
