/**
 * The label set: everything needed to train visual tokens on their words, and to audit
 * where each label came from. Same inputs → byte-identical JSON (no clocks, fixed key order).
 */
import { z } from "zod";
import { computeGrid, type GeometrySpec, GeometrySpecSchema } from "../geometry/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import {
  type AssignOptions,
  AssignOptionsSchema,
  assignWordsToCells,
  type Box,
  IGNORE_INDEX,
} from "./assign.ts";

export const LABEL_SET_VERSION = 1;

export const SOURCES = ["render", "ocr", "pdf", "boxes"] as const;
export type Source = typeof SOURCES[number];

export { type WordBox, WordBoxSchema } from "./word_box.ts";
import type { WordBox } from "./word_box.ts";

const TileSchema = z.strictObject({
  kind: z.enum(["image", "tile", "thumbnail", "base", "global"]),
  x0: z.number(),
  y0: z.number(),
  width: z.number(),
  height: z.number(),
  rows: z.number().int(),
  cols: z.number().int(),
  offset: z.number().int(),
  newline: z.boolean().optional(),
});

export const LabelSetSchema = z.strictObject({
  version: z.literal(LABEL_SET_VERSION),
  image: z.strictObject({ sha256: z.string(), width: z.number().int(), height: z.number().int() }),
  geometry: z.strictObject({
    spec: GeometrySpecSchema,
    resizedWidth: z.number().int(),
    resizedHeight: z.number().int(),
    tiles: z.array(TileSchema),
    tokens: z.number().int(),
  }),
  tokenizer: z.strictObject({ name: z.string(), sha256: z.string() }),
  source: z.strictObject({ kind: z.enum(SOURCES), engine: z.string().optional() }),
  policy: AssignOptionsSchema.extend({ minConfidence: z.number() }),
  words: z.array(z.strictObject({
    text: z.string(),
    box: z.tuple([z.number(), z.number(), z.number(), z.number()]),
    confidence: z.number(),
    pieces: z.array(z.strictObject({ id: z.number().int(), text: z.string() })),
    tokens: z.number().int(),
  })),
  tokens: z.strictObject({
    label: z.array(z.number().int()),
    text: z.array(z.string().nullable()),
    word: z.array(z.number().int()),
    overlap: z.array(z.number()),
  }),
  stats: z.strictObject({
    tokens: z.number().int(),
    labeled: z.number().int(),
    labeledFraction: z.number(),
    words: z.number().int(),
    wordsLabeled: z.number().int(),
    meanConfidence: z.number().nullable(),
  }),
});
export type LabelSet = z.infer<typeof LabelSetSchema>;

export const LabelOptionsSchema = z.strictObject({
  geometry: GeometrySpecSchema.default(GeometrySpecSchema.parse({ name: "qwen2-vl" })),
  policy: AssignOptionsSchema.default(AssignOptionsSchema.parse({})),
  /** Words below this OCR confidence (0–100) are dropped before assignment. */
  minConfidence: z.number().min(0).max(100).default(0).describe(
    "drop OCR words below this confidence (0-100)",
  ),
});
export type LabelOptions = z.infer<typeof LabelOptionsSchema>;

export interface BuildLabelSetInput {
  image: { sha256: string; width: number; height: number };
  words: readonly WordBox[];
  source: { kind: Source; engine?: string };
  tokenizer: WordTokenizer;
  geometry: GeometrySpec;
  policy: AssignOptions;
  minConfidence: number;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/** Build a label set from words with boxes (any source). */
export function buildLabelSet(input: BuildLabelSetInput): LabelSet {
  const { image, tokenizer, geometry, policy, minConfidence } = input;
  const grid = computeGrid(geometry, image.width, image.height);
  const kept = input.words.filter((w) => w.confidence >= minConfidence && w.text.trim() !== "");
  const words = kept.map((w) => ({
    text: w.text,
    box: w.box.map(r2) as Box,
    confidence: r2(w.confidence),
    pieces: tokenizer.pieces(w.text),
  }));
  const a = assignWordsToCells(grid, words, policy);
  const perWord = new Array(words.length).fill(0);
  for (const wi of a.word) if (wi >= 0) perWord[wi]++;
  const labeled = a.label.filter((l) => l !== IGNORE_INDEX).length;
  const meanConfidence = words.length
    ? r2(words.reduce((s, w) => s + w.confidence, 0) / words.length)
    : null;
  return {
    version: LABEL_SET_VERSION,
    image: { sha256: image.sha256, width: image.width, height: image.height },
    geometry: {
      spec: geometry,
      resizedWidth: grid.resizedWidth,
      resizedHeight: grid.resizedHeight,
      tiles: grid.tiles,
      tokens: grid.tokens,
    },
    tokenizer: { name: tokenizer.name, sha256: tokenizer.sha256 },
    source: input.source.engine
      ? { kind: input.source.kind, engine: input.source.engine }
      : { kind: input.source.kind },
    policy: { ...policy, minConfidence },
    words: words.map((w, i) => ({ ...w, tokens: perWord[i] })),
    tokens: a,
    stats: {
      tokens: grid.tokens,
      labeled,
      labeledFraction: Math.round((labeled / grid.tokens) * 1e4) / 1e4,
      words: words.length,
      wordsLabeled: perWord.filter((n) => n > 0).length,
      meanConfidence,
    },
  };
}

/**
 * Vision labels (one id or -100 per token) of an image from its exact word boxes — what the
 * data generator and the trainer use; `policy` and `geometry` default to the label defaults.
 */
export function exactVisionLabels(
  image: { width: number; height: number },
  words: readonly WordBox[],
  tokenizer: WordTokenizer,
  options: { geometry?: GeometrySpec; policy?: AssignOptions } = {},
): number[] {
  const d = LabelOptionsSchema.parse({});
  return buildLabelSet({
    image: { sha256: "", ...image },
    words,
    source: { kind: "render" },
    tokenizer,
    geometry: options.geometry ?? d.geometry,
    policy: options.policy ?? d.policy,
    minConfidence: 0,
  }).tokens.label;
}
