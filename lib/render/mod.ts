export * from "./page.ts";
export * from "./words.ts";
export * from "./fonts.ts";
