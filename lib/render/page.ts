/**
 * Rendered documents: a page of words drawn with @napi-rs/canvas, and each word's exact
 * ink box (from the font's glyph metrics), so labels need no OCR.
 */
import { createCanvas, GlobalFonts } from "@napi-rs/canvas";
import { z } from "zod";
import { Rng } from "../util/rng.ts";
import type { WordBox } from "../labels/word_box.ts";
import { randomToken } from "./words.ts";
import { ensureFonts } from "./fonts.ts";

export const RenderOptionsSchema = z.strictObject({
  width: z.number().int().min(16).max(8192).default(896),
  height: z.number().int().min(16).max(8192).default(672),
  /** A font family registered with the canvas (system fonts are found by fontconfig). */
  font: z.string().default("DejaVu Sans"),
  fontSize: z.number().min(4).max(400).default(22),
  /** Line pitch as a multiple of the font size. */
  lineHeight: z.number().min(1).max(5).default(1.6),
  margin: z.number().int().min(0).max(2000).default(40),
  /** Words to draw in order; when absent, seeded random words fill the page. */
  text: z.string().max(100_000).optional(),
  seed: z.number().int().default(0),
  background: z.string().default("#ffffff"),
  color: z.string().default("#111111"),
});
export type RenderOptions = z.input<typeof RenderOptionsSchema>;

export interface RenderedPage {
  png: Uint8Array;
  width: number;
  height: number;
  words: WordBox[];
  /** Line index of each word (0-based, top to bottom). */
  lines: number[];
}

/** A rendered page before encoding: RGBA pixels instead of PNG bytes. */
export interface RawPage extends Omit<RenderedPage, "png"> {
  rgba: Uint8ClampedArray;
}

/** The families the canvas can draw with (fontconfig's system fonts plus registered ones). */
export function fontFamilies(): string[] {
  ensureFonts();
  return GlobalFonts.families.map((f) => f.family).sort();
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/** The exact ink box of text drawn at (x, baseline) from its metrics, to 0.01 px. */
export function inkBox(
  m: {
    actualBoundingBoxLeft: number;
    actualBoundingBoxRight: number;
    actualBoundingBoxAscent: number;
    actualBoundingBoxDescent: number;
  },
  x: number,
  baseline: number,
): [number, number, number, number] {
  return [
    r2(x - m.actualBoundingBoxLeft),
    r2(baseline - m.actualBoundingBoxAscent),
    r2(x + m.actualBoundingBoxRight),
    r2(baseline + m.actualBoundingBoxDescent),
  ];
}

/**
 * Draw a page of words and return it with exact word boxes.
 *
 * @example
 * ```ts
 * const page = renderPage({ text: "Invoice total 42.00", width: 400, height: 100 });
 * page.words[0]; // { text: "Invoice", box: [x0, y0, x1, y1], confidence: 100 }
 * ```
 */
export function renderPage(options: RenderOptions = {}): RenderedPage {
  const { canvas, words, lines, width, height } = draw(options);
  return { png: new Uint8Array(canvas.toBuffer("image/png")), width, height, words, lines };
}

/** Like {@linkcode renderPage}, without the PNG encoding (for training data made in memory). */
export function renderPageRaw(options: RenderOptions = {}): RawPage {
  const { canvas, words, lines, width, height } = draw(options);
  const rgba = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  return { rgba, width, height, words, lines };
}

function draw(options: RenderOptions) {
  const o = RenderOptionsSchema.parse(options);
  ensureFonts();
  if (!GlobalFonts.has(o.font)) {
    throw new RangeError(
      `Cannot render page: font '${o.font}' is not installed (have: ${
        fontFamilies().slice(0, 8).join(", ")
      }, …)`,
    );
  }
  const canvas = createCanvas(o.width, o.height);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = o.background;
  ctx.fillRect(0, 0, o.width, o.height);
  ctx.fillStyle = o.color;
  ctx.font = `${o.fontSize}px "${o.font}"`;
  ctx.textBaseline = "alphabetic";
  const rng = new Rng(o.seed);
  // explicit text: words split on spaces; "\n" starts a new line
  const given = o.text?.split(/[ \t\r]+|(\n)/).filter((t): t is string => Boolean(t));
  const space = ctx.measureText(" ").width;
  const pitch = o.fontSize * o.lineHeight;
  const words: WordBox[] = [];
  const lines: number[] = [];
  let line = 0;
  let x = o.margin;
  let baseline = o.margin + o.fontSize;
  let i = 0;
  while (baseline + o.fontSize * 0.3 <= o.height - o.margin) {
    const text = given ? given[i] : randomToken(rng);
    if (text === undefined) break;
    if (text === "\n") {
      if (x !== o.margin) {
        x = o.margin;
        baseline += pitch;
        line++;
      }
      i++;
      continue;
    }
    const m = ctx.measureText(text);
    if (x + m.width > o.width - o.margin) {
      if (x === o.margin) break; // a single word wider than the line: stop rather than overflow
      x = o.margin;
      baseline += pitch;
      line++;
      continue;
    }
    ctx.fillText(text, x, baseline);
    const box = inkBox(m, x, baseline);
    if (box[2] > box[0] && box[3] > box[1]) {
      words.push({ text, box, confidence: 100 });
      lines.push(line);
    }
    x += m.width + space;
    i++;
  }
  return { canvas, words, lines, width: o.width, height: o.height };
}
