export * from "./decode.ts";
