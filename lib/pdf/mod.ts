export * from "./pdf.ts";
export * from "./errors.ts";
export { parsePdftotextBbox, popplerVersion } from "./poppler.ts";
export { runCapped } from "./subprocess.ts";
export type { CappedOutput, RunCappedOptions } from "./subprocess.ts";
export { boxIoU, wordBoxAgreement } from "./compare.ts";
