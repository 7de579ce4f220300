export * from "./reading.ts";
export * from "./generate.ts";
export * from "./dataset.ts";
