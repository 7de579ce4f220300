/**
 * Fonts that ship with the project (npm `dejavu-fonts-ttf`), registered with the canvas under
 * one family name per file, so rendering is the same on a bare machine as on one with system
 * fonts. The catalogue is split into fonts for training and fonts held out for evaluation.
 */
import { GlobalFonts } from "@napi-rs/canvas";
import { fileURLToPath } from "node:url";

/** Family name → TTF file of the npm package. */
export const EMBEDDED_FONTS: Record<string, string> = {
  "DejaVu Sans": "DejaVuSans.ttf",
  "DejaVu Sans Bold": "DejaVuSans-Bold.ttf",
  "DejaVu Sans Oblique": "DejaVuSans-Oblique.ttf",
  "DejaVu Sans Condensed": "DejaVuSansCondensed.ttf",
  "DejaVu Serif": "DejaVuSerif.ttf",
  "DejaVu Serif Bold": "DejaVuSerif-Bold.ttf",
  "DejaVu Sans Mono": "DejaVuSansMono.ttf",
  "DejaVu Serif Condensed": "DejaVuSerifCondensed.ttf",
  "DejaVu Sans ExtraLight": "DejaVuSans-ExtraLight.ttf",
  "DejaVu Serif Italic": "DejaVuSerif-Italic.ttf",
};

/** Fonts training data is drawn with. */
export const TRAIN_FONTS = [
  "DejaVu Sans",
  "DejaVu Sans Bold",
  "DejaVu Sans Oblique",
  "DejaVu Sans Condensed",
  "DejaVu Serif",
  "DejaVu Serif Bold",
] as const;

/** Fonts only the held-out evaluation suite uses (never in training data). */
export const HELD_OUT_FONTS = [
  "DejaVu Sans Mono",
  "DejaVu Serif Condensed",
  "DejaVu Sans ExtraLight",
  "DejaVu Serif Italic",
] as const;

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
