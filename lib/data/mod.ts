export * from "./reading.ts";
export * from "./generate.ts";
export * from "./dataset.ts";
export * from "./sequence.ts";
export * from "./interchange.ts";
