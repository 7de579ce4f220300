/**
 * Fonts that ship with the project (npm `dejavu-fonts-ttf`), registered with the canvas so
 * rendering works the same on a bare machine as on one with system fonts.
 */
import { GlobalFonts } from "@napi-rs/canvas";
import { fileURLToPath } from "node:url";

/** Families registered from the npm package, with their regular TTF files. */
export const EMBEDDED_FONTS: Record<string, string> = {
  "DejaVu Sans": "DejaVuSans.ttf",
  "DejaVu Serif": "DejaVuSerif.ttf",
  "DejaVu Sans Mono": "DejaVuSansMono.ttf",
  "DejaVu Sans Condensed": "DejaVuSansCondensed.ttf",
};

let done = false;

/** Register the embedded fonts once (idempotent). */
export function ensureFonts(): void {
  if (done) return;
  const dir = new URL("./ttf/", import.meta.resolve("dejavu-fonts-ttf/package.json"));
  for (const [family, file] of Object.entries(EMBEDDED_FONTS)) {
    GlobalFonts.registerFromPath(fileURLToPath(new URL(file, dir)), family);
  }
  done = true;
}
