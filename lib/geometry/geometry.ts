/**
 * Model geometries: how a model's image processor turns an image of W×H pixels into a
 * sequence of visual tokens, and which rectangle of the *original* image each token sees.
 *
 * Every preset is a list of tiles. A tile is an axis-aligned rectangle in original-image
 * coordinates divided into `rows × cols` equal cells; its tokens follow raster order and
 * start at `offset` in the model's visual-token sequence (the positions the processor fills
 * with image tokens). A tile with `newline` has one more token after each row (LLaVA-NeXT's
 * `image_newline`): it sees no part of the image and is never labeled, but it shifts every
 * later index. Qwen2-VL is one tile over the whole image, LLaVA-1.5 one tile over the padded
 * square (which extends past the image), InternVL one tile per crop plus a thumbnail,
 * LLaVA-NeXT / OneVision a base tile plus the unpadded crop grid, Idefics3 / SmolVLM their
 * sub-images plus a global image, Gemma 3 the whole image (plus pan-and-scan crops).
 */
import { z } from "zod";

/** What a tile is in its model (for overlays, and for the sequence layout's markers). */
export type TileKind = "image" | "tile" | "thumbnail" | "base" | "global";

/** One block of visual tokens: a rectangle of the original image cut into a grid. */
export interface Tile {
  kind: TileKind;
  /** Left edge in original-image pixels (may be negative where the model pads). */
  x0: number;
  y0: number;
  width: number;
  height: number;
  rows: number;
  cols: number;
  /** Index of this tile's first token in the model's visual-token order. */
  offset: number;
  /** One unlabeled token after each row (LLaVA-NeXT's `image_newline`). */
  newline?: boolean;
}

/** The result of applying a geometry to one image size. */
export interface Grid {
  geometry: string;
  imageWidth: number;
  imageHeight: number;
  /** Size of the image the vision encoder actually sees (one tile's size for tiled models). */
  resizedWidth: number;
  resizedHeight: number;
  tiles: Tile[];
  /** Visual positions in the model's input ids (newline tokens included). */
  tokens: number;
}

/** A token's rectangle in the original image, clipped to the image. Empty when padding. */
export interface CellRect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * Bounds every geometry is checked against before any work: what the resize may produce and
 * how many visual tokens a grid may have (the label arrays are that long).
 */
export const GEOMETRY_LIMITS = Object.freeze({
  /** Pixels of a resized image (and `minPixels` / `maxPixels`): 2^26, 5× Qwen3-VL's default. */
  maxResizedPixels: 1 << 26,
  /** Side of a resized image or tile, in pixels. */
  maxResizedSide: 1 << 15,
  /** Visual tokens of one image. */
  maxGridTokens: 1 << 18,
  /** Side of an input image, in pixels. */
  maxImageSide: 1 << 20,
});

const positiveInt = z.number().int().positive();

export const SmartResizeSchema = z.strictObject({
  mode: z.literal("smart"),
  /** Sides become multiples of this (patch × merge). */
  factor: positiveInt.optional(),
  minPixels: positiveInt.default(56 * 56),
  maxPixels: positiveInt.default(28 * 28 * 16384),
  maxAspectRatio: z.number().positive().default(200),
});
export const FixedResizeSchema = z.strictObject({
  mode: z.literal("fixed"),
  width: positiveInt,
  height: positiveInt,
});
export const PadSquareResizeSchema = z.strictObject({
  mode: z.literal("pad-square"),
  size: positiveInt,
});

const PinpointsSchema = z.array(z.tuple([positiveInt, positiveInt])).min(1).max(64)
  .describe("[height, width] canvases in pixels, multiples of the tile size");

/** LLaVA-v1.6's `image_grid_pinpoints` (llava-hf/llava-v1.6-*). */
export const LLAVA_NEXT_PINPOINTS: Array<[number, number]> = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/** LLaVA-OneVision's pinpoints: every (h, w) in {1..6}² × 384. */
export const LLAVA_ONEVISION_PINPOINTS: Array<[number, number]> = Array.from(
  { length: 36 },
  (_, i) => [384 * (Math.floor(i / 6) + 1), 384 * ((i % 6) + 1)] as [number, number],
);

/** Geometry options accepted at every boundary (HTTP, CLI, dataset configs). */
export const GeometrySpecSchema = z.discriminatedUnion("name", [
  z.strictObject({
    // Qwen2-VL / Qwen2.5-VL checkpoints' preprocessor_config: patch 14, merge 2
    name: z.enum(["qwen2-vl", "qwen2.5-vl"]),
    minPixels: positiveInt.default(3136),
    maxPixels: positiveInt.default(12845056),
  }),
  z.strictObject({
    // Qwen3-VL: patch 16, merge 2 (32 px per token), its own pixel bounds
    name: z.literal("qwen3-vl"),
    minPixels: positiveInt.default(65536),
    maxPixels: positiveInt.default(16777216),
  }),
  z.strictObject({
    name: z.literal("llava-1.5"),
    // pad-square: LLaVA's expand2square (HF LlavaImageProcessor do_pad); center-crop: the
    // CLIP processor of llava-hf checkpoints (shortest edge to 336, centre 336×336 kept)
    resize: z.enum(["pad-square", "center-crop"]).default("pad-square"),
  }),
  z.strictObject({
    // llava-hf/llava-v1.6-*: CLIP-L/336 (24×24 per crop, CLS dropped), anyres
    name: z.literal("llava-next"),
    pinpoints: PinpointsSchema.default(LLAVA_NEXT_PINPOINTS),
  }),
  z.strictObject({
    // llava-hf/llava-onevision-*: SigLIP 384 (27×27 per crop), anyres_max_9
    name: z.literal("llava-onevision"),
    pinpoints: PinpointsSchema.default(LLAVA_ONEVISION_PINPOINTS),
    maxNumPatches: positiveInt.max(64).default(9),
  }),
  z.strictObject({
    // HuggingFaceM4/Idefics3-8B-Llama3: 364 px sub-images, patch 14, pixel shuffle 2 → 13×13
    name: z.literal("idefics3"),
    longestEdge: positiveInt.max(4096).default(1456),
    tileSize: positiveInt.max(2048).default(364),
    tokensPerSide: positiveInt.max(64).default(13),
    splitImage: z.boolean().default(true),
  }),
  z.strictObject({
    // HuggingFaceTB/SmolVLM-Instruct, SmolVLM2-2.2B: 384 px sub-images, patch 14, shuffle 3 → 9×9
    name: z.literal("smolvlm"),
    longestEdge: positiveInt.max(4096).default(1536),
    tileSize: positiveInt.max(2048).default(384),
    tokensPerSide: positiveInt.max(64).default(9),
    splitImage: z.boolean().default(true),
  }),
  z.strictObject({
    // google/gemma-3-*: SigLIP 896, 4×4 average pooling → 16×16 = 256 tokens per image
    name: z.literal("gemma3"),
    panAndScan: z.boolean().default(false),
    panAndScanMinCropSize: positiveInt.max(8192).default(256),
    panAndScanMaxNumCrops: positiveInt.max(16).default(4),
    panAndScanMinRatio: z.number().positive().max(100).default(1.2),
  }),
  z.strictObject({
    // InternVL2.5 / InternVL3 (OpenGVLab/InternVL3-*-hf): 448 tiles, 1–12 of them + thumbnail
    name: z.enum(["internvl", "internvl2.5", "internvl3"]),
    minNum: positiveInt.max(64).default(1),
    maxNum: positiveInt.max(64).default(12),
    useThumbnail: z.boolean().default(true),
  }),
  z.strictObject({
    name: z.literal("custom"),
    patchSize: positiveInt.max(1024),
    merge: positiveInt.max(16).default(1),
    resize: z.discriminatedUnion("mode", [
      SmartResizeSchema,
      FixedResizeSchema,
      PadSquareResizeSchema,
    ]),
  }),
]);
export type GeometrySpec = z.infer<typeof GeometrySpecSchema>;
export type GeometrySpecInput = z.input<typeof GeometrySpecSchema>;

/** Names of the presets, for listings. */
export const GEOMETRY_NAMES = [
  "qwen2-vl",
  "qwen2.5-vl",
  "qwen3-vl",
  "llava-1.5",
  "llava-next",
  "llava-onevision",
  "idefics3",
  "smolvlm",
  "gemma3",
  "internvl",
  "internvl2.5",
  "internvl3",
  "custom",
] as const;
export type GeometryName = typeof GEOMETRY_NAMES[number];

/**
 * The built-in tokenizer each preset's usual checkpoint uses (`null`: none ships here, give a
 * `tokenizer.json` path). A Map, so a user-given name like `constructor` finds nothing.
 */
export const PRESET_TOKENIZERS: ReadonlyMap<string, string | null> = new Map<
  GeometryName,
  string | null
>([
  ["qwen2-vl", "qwen2"],
  ["qwen2.5-vl", "qwen2"],
  ["qwen3-vl", "qwen2"],
  ["llava-1.5", "llama2"], // Vicuna-7B
  ["llava-next", "llama2"], // llava-v1.6-vicuna
  ["llava-onevision", "qwen2"], // Qwen2-0.5B/7B
  ["idefics3", "llama3"], // Llama-3.1-8B
  ["smolvlm", null], // SmolLM2's vocabulary: not shipped
  ["gemma3", "gemma3"],
  ["internvl", "qwen2"], // InternVL3 / InternVL2.5 (Qwen2.5 LLMs)
  ["internvl2.5", "qwen2"],
  ["internvl3", "qwen2"],
  ["custom", "qwen2"], // the HTTP default before presets named their own
]);

/** The default tokenizer of a preset name (`null` when it has none; RangeError when unknown). */
export function presetTokenizer(name: string): string | null {
  const t = PRESET_TOKENIZERS.get(name);
  if (t === undefined) {
    throw new RangeError(
      `Cannot find geometry: unknown preset '${name}', expected one of ${
        GEOMETRY_NAMES.join(", ")
      }`,
    );
  }
  return t;
}

/** Python's `round` (half to even), which `smart_resize` uses. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Options of {@linkcode smartResize}. */
export interface SmartResizeOptions {
  /** @default 28 */
  factor?: number;
  /** @default 3136 */
  minPixels?: number;
  /** @default 12845056 */
  maxPixels?: number;
  /** @default 200 */
  maxAspectRatio?: number;
}

/**
 * Qwen2-VL's `smart_resize` as transformers 5.x runs it: sides rounded to multiples of
 * `factor` (a side under factor/2 rounds to 0, and the area check then scales the image up
 * into minPixels), area scaled into [minPixels, maxPixels] — the max check first, so with
 * minPixels > maxPixels the result is whatever that order gives, as in the HF processor.
 *
 * @example
 * ```ts
 * smartResize(1000, 700); // { width: 1008, height: 700 }
 * smartResize(1000, 10); // { width: 560, height: 28 }: 20 tokens
 * ```
 */
export function smartResize(
  width: number,
  height: number,
  options: SmartResizeOptions = {},
): { width: number; height: number } {
  const { factor = 28, minPixels = 3136, maxPixels = 12845056, maxAspectRatio = 200 } = options;
  if (!(width > 0 && height > 0)) {
    throw new RangeError(
      `Cannot resize image: size must be positive, current value is ${width}x${height}`,
    );
  }
  const ratio = Math.max(width, height) / Math.min(width, height);
  if (ratio > maxAspectRatio) {
    throw new RangeError(
      `Cannot resize image: aspect ratio must not exceed ${maxAspectRatio}, current value is ${
        ratio.toFixed(2)
      } (${width}x${height})`,
    );
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { width: w, height: h };
}

/**
 * InternVL's `find_closest_aspect_ratio` (transformers' `get_optimal_tiled_canvas`) over the
 * (cols, rows) grids with minNum ≤ cols·rows ≤ maxNum, visited by area (ties: by cols, then
 * rows). With no such grid (minNum > maxNum) it is 1×1, as in the reference.
 */
export function internvlTileGrid(
  width: number,
  height: number,
  { minNum = 1, maxNum = 12, imageSize = 448 }: {
    minNum?: number;
    maxNum?: number;
    imageSize?: number;
  } = {},
): { cols: number; rows: number } {
  const ratios: Array<[number, number]> = [];
  for (let i = 1; i <= maxNum; i++) {
    for (let j = 1; j <= maxNum; j++) if (i * j >= minNum && i * j <= maxNum) ratios.push([i, j]);
  }
  ratios.sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[0] - b[0] || a[1] - b[1]);
  const aspect = width / height;
  const area = width * height;
  let best: [number, number] = [1, 1];
  let bestDiff = Infinity;
  for (const r of ratios) {
    const diff = Math.abs(aspect - r[0] / r[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = r;
    } else if (diff === bestDiff && area > 0.5 * imageSize * imageSize * r[0] * r[1]) {
      best = r;
    }
  }
  return { cols: best[0], rows: best[1] };
}

/** transformers' `select_best_resolution`: the [h, w] canvas that keeps most pixels, then wastes least. */
export function selectBestResolution(
  width: number,
  height: number,
  pinpoints: ReadonlyArray<readonly [number, number]>,
): [number, number] {
  let best: [number, number] = [pinpoints[0]![0], pinpoints[0]![1]];
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [ph, pw] of pinpoints) {
    const scale = Math.min(pw / width, ph / height);
    const effective = Math.min(
      Math.trunc(width * scale) * Math.trunc(height * scale),
      width * height,
    );
    const wasted = pw * ph - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [ph, pw];
    }
  }
  return best;
}

/**
 * Python's float `a // b` (CPython's float_floor_div): `(a - fmod(a, b)) / b`, which is not
 * always `Math.floor(a / b)` (135 // 1.6666666666666667 is 80, Math.floor(135 / …) is 81).
 */
export function pyFloorDiv(a: number, b: number): number {
  let mod = a % b;
  let div = (a - mod) / b;
  if (mod && (b < 0) !== (mod < 0)) {
    mod += b;
    div -= 1;
  }
  if (!div) return 0;
  let floordiv = Math.floor(div);
  if (div - floordiv > 0.5) floordiv += 1;
  return floordiv;
}

/** Python's `round(x, 7)` then `int()`, as LLaVA-NeXT's unpadding computes a side. */
const round7Int = (x: number) => Math.trunc(Math.round(x * 1e7) / 1e7);

/**
 * LLaVA-NeXT / OneVision anyres: the base tile (the whole image squashed to one crop) and the
 * unpadded feature grid over the best canvas, in original-image pixels.
 */
function anyresGrid(
  name: string,
  width: number,
  height: number,
  o: { pinpoints: ReadonlyArray<readonly [number, number]>; crop: number; perSide: number },
  maxNumPatches?: number,
): Grid {
  const [bh, bw] = selectBestResolution(width, height, o.pinpoints);
  if (bh % o.crop !== 0 || bw % o.crop !== 0) {
    throw new RangeError(
      `Cannot build grid: pinpoint ${bh}x${bw} (h×w) is not a multiple of the ${o.crop}px crop`,
    );
  }
  // the image resized into the canvas keeping its aspect ratio, then centred (get_patch_output_size)
  const sw = bw / width;
  const sh = bh / height;
  const nw = sw < sh ? bw : Math.min(Math.ceil(width * sh), bw);
  const nh = sw < sh ? Math.min(Math.ceil(height * sw), bh) : bh;
  const pasteX = Math.floor((bw - nw) / 2);
  const pasteY = Math.floor((bh - nh) / 2);
  // feature grid over the canvas, then unpad_image
  const R = (bh / o.crop) * o.perSide;
  const C = (bw / o.crop) * o.perSide;
  let r0 = 0, nR = R, c0 = 0, nC = C;
  if (width / height > C / R) {
    const newH = round7Int(height * (C / width));
    const pad = Math.floor((R - newH) / 2);
    r0 = pad;
    nR = R - 2 * pad;
  } else {
    const newW = round7Int(width * (R / height));
    const pad = Math.floor((C - newW) / 2);
    c0 = pad;
    nC = C - 2 * pad;
  }
  const cell = o.crop / o.perSide; // canvas px per feature
  const x0 = (c0 * cell - pasteX) * (width / nw);
  const y0 = (r0 * cell - pasteY) * (height / nh);
  const gw = nC * cell * (width / nw);
  const gh = nR * cell * (height / nh);
  let rows = nR, cols = nC;
  if (maxNumPatches !== undefined) {
    // anyres_max_N: a grid above N crops' worth of features is bilinearly resized down
    const ratio = Math.sqrt((nR * nC) / (maxNumPatches * o.perSide * o.perSide));
    if (ratio > 1.1) {
      rows = pyFloorDiv(nR, ratio);
      cols = pyFloorDiv(nC, ratio);
    }
  }
  const base = o.perSide * o.perSide;
  const tiles: Tile[] = [
    { kind: "base", x0: 0, y0: 0, width, height, rows: o.perSide, cols: o.perSide, offset: 0 },
    { kind: "tile", x0, y0, width: gw, height: gh, rows, cols, offset: base, newline: true },
  ];
  return {
    geometry: name,
    imageWidth: width,
    imageHeight: height,
    resizedWidth: bw,
    resizedHeight: bh,
    tiles,
    tokens: base + rows * (cols + 1),
  };
}

/** Idefics3's two resizes: longest edge to `longestEdge` (even other side), capped at 4096. */
export function idefics3ResizeSize(
  width: number,
  height: number,
  longestEdge: number,
): { width: number; height: number } {
  const ar = width / height;
  let w: number, h: number;
  if (width >= height) {
    w = longestEdge;
    h = Math.trunc(w / ar);
    if (h % 2 !== 0) h += 1;
  } else {
    h = longestEdge;
    w = Math.trunc(h * ar);
    if (w % 2 !== 0) w += 1;
  }
  h = Math.max(h, 1);
  w = Math.max(w, 1);
  const ar2 = w / h;
  if (w >= h && w > 4096) {
    w = 4096;
    h = Math.trunc(w / ar2);
  } else if (h > w && h > 4096) {
    h = 4096;
    w = Math.trunc(h * ar2);
  }
  return { width: Math.max(w, 1), height: Math.max(h, 1) };
}

/** Idefics3's `resize_for_vision_encoder`: both sides up to multiples of the tile size. */
export function idefics3TileCanvas(
  width: number,
  height: number,
  tile: number,
): { width: number; height: number } {
  const ar = width / height;
  let w: number, h: number;
  if (width >= height) {
    w = Math.ceil(width / tile) * tile;
    h = Math.ceil(Math.trunc(w / ar) / tile) * tile;
  } else {
    h = Math.ceil(height / tile) * tile;
    w = Math.ceil(Math.trunc(h * ar) / tile) * tile;
  }
  return { width: w, height: h };
}

function idefics3Grid(
  name: string,
  width: number,
  height: number,
  o: { longestEdge: number; tileSize: number; tokensPerSide: number; splitImage: boolean },
): Grid {
  const n = o.tokensPerSide;
  const whole = (kind: TileKind, offset: number): Tile => ({
    kind,
    x0: 0,
    y0: 0,
    width,
    height,
    rows: n,
    cols: n,
    offset,
  });
  const grid = (tiles: Tile[]): Grid => ({
    geometry: name,
    imageWidth: width,
    imageHeight: height,
    resizedWidth: o.tileSize,
    resizedHeight: o.tileSize,
    tiles,
    tokens: tiles.length * n * n,
  });
  if (!o.splitImage) return grid([whole("global", 0)]);
  const r = idefics3ResizeSize(width, height, o.longestEdge);
  const canvas = idefics3TileCanvas(r.width, r.height, o.tileSize);
  if (canvas.width === 0 || canvas.height === 0) {
    throw new RangeError(
      `Cannot build grid: ${width}x${height} resizes to an empty ${canvas.width}x${canvas.height} canvas`,
    );
  }
  if (canvas.width <= o.tileSize && canvas.height <= o.tileSize) {
    return grid([whole("global", 0)]);
  }
  const rows = Math.floor((canvas.height - o.tileSize) / o.tileSize) + 1;
  const cols = Math.floor((canvas.width - o.tileSize) / o.tileSize) + 1;
  // bounded before the tiles exist: a 1 px tile size would otherwise make millions of them
  const tokens = (rows * cols + 1) * n * n;
  if (tokens > GEOMETRY_LIMITS.maxGridTokens) {
    throw new RangeError(
      `Cannot build grid: ${name} gives ${tokens} visual tokens (${rows}x${cols} sub-images) for a ${width}x${height} image, more than the limit of ${GEOMETRY_LIMITS.maxGridTokens}`,
    );
  }
  const tiles: Tile[] = [];
  // sub-images are exact tile-size crops of the canvas, the whole image scaled into it
  const tw = (o.tileSize * width) / canvas.width;
  const th = (o.tileSize * height) / canvas.height;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      tiles.push({
        kind: "tile",
        x0: j * tw,
        y0: i * th,
        width: tw,
        height: th,
        rows: n,
        cols: n,
        offset: tiles.length * n * n,
      });
    }
  }
  tiles.push(whole("global", tiles.length * n * n));
  const g = grid(tiles);
  return { ...g, resizedWidth: canvas.width, resizedHeight: canvas.height };
}

/** Gemma 3's `pan_and_scan` crops as [x, y, w, h] in original pixels (none when not activated). */
export function gemma3PanAndScanCrops(
  width: number,
  height: number,
  o: { minCropSize: number; maxNumCrops: number; minRatio: number },
): Array<[number, number, number, number]> {
  let nw: number, nh: number;
  if (width >= height) {
    if (width / height < o.minRatio) return [];
    nw = Math.floor(width / height + 0.5);
    nw = Math.min(Math.floor(width / o.minCropSize), nw);
    nw = Math.min(o.maxNumCrops, Math.max(2, nw));
    nh = 1;
  } else {
    if (height / width < o.minRatio) return [];
    nh = Math.floor(height / width + 0.5);
    nh = Math.min(Math.floor(height / o.minCropSize), nh);
    nh = Math.min(o.maxNumCrops, Math.max(2, nh));
    nw = 1;
  }
  const cw = Math.ceil(width / nw);
  const ch = Math.ceil(height / nh);
  if (Math.min(cw, ch) < o.minCropSize) return [];
  const out: Array<[number, number, number, number]> = [];
  for (let i = 0; i < nh; i++) {
    for (let j = 0; j < nw; j++) {
      // numpy slicing clips the last crop at the image edge
      const x = j * cw;
      const y = i * ch;
      out.push([x, y, Math.min(cw, width - x), Math.min(ch, height - y)]);
    }
  }
  return out;
}

function singleTile(
  geometry: string,
  width: number,
  height: number,
  resized: { width: number; height: number },
  cellPx: number,
  frame: { x0: number; y0: number; width: number; height: number },
): Grid {
  const rows = resized.height / cellPx;
  const cols = resized.width / cellPx;
  if (!Number.isInteger(rows) || !Number.isInteger(cols)) {
    throw new RangeError(
      `Cannot build grid: resized size ${resized.width}x${resized.height} is not a multiple of the ${cellPx}px token cell`,
    );
  }
  return {
    geometry,
    imageWidth: width,
    imageHeight: height,
    resizedWidth: resized.width,
    resizedHeight: resized.height,
    tiles: [{ kind: "image", ...frame, rows, cols, offset: 0 }],
    tokens: rows * cols,
  };
}

/** The padded square that LLaVA's `expand2square` builds, in original-image coordinates. */
function paddedSquare(width: number, height: number) {
  const side = Math.max(width, height);
  return {
    x0: -Math.floor((side - width) / 2),
    y0: -Math.floor((side - height) / 2),
    width: side,
    height: side,
  };
}

/**
 * The part of the image a CLIP processor keeps (shortest edge resized to `size` as
 * transformers' `get_resize_output_image_size`, then a centred size×size crop), in
 * original-image coordinates.
 */
function centerCropFrame(width: number, height: number, size: number) {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((size * long) / short);
  const rw = width <= height ? size : newLong;
  const rh = width <= height ? newLong : size;
  const top = Math.floor((rh - size) / 2);
  const left = Math.floor((rw - size) / 2);
  return {
    x0: left * (width / rw),
    y0: top * (height / rh),
    width: size * (width / rw),
    height: size * (height / rh),
  };
}

function checkPixels(what: string, value: number): void {
  const limit = GEOMETRY_LIMITS.maxResizedPixels;
  if (!(value <= limit)) {
    throw new RangeError(
      `Cannot build grid: '${what}' must be at most ${limit} pixels, current value is ${value}`,
    );
  }
}

function checkSide(what: string, value: number): void {
  const limit = GEOMETRY_LIMITS.maxResizedSide;
  if (!(value <= limit)) {
    throw new RangeError(
      `Cannot build grid: '${what}' must be at most ${limit} px, current value is ${value}`,
    );
  }
}

/**
 * Check a spec's own numbers against {@linkcode GEOMETRY_LIMITS} (O(1)); `computeGrid` calls
 * it, and an edge may call it before decoding an upload. RangeError names the limit and value.
 */
export function checkGeometrySpec(spec: GeometrySpec): void {
  switch (spec.name) {
    case "qwen2-vl":
    case "qwen2.5-vl":
    case "qwen3-vl":
      checkPixels("minPixels", spec.minPixels);
      checkPixels("maxPixels", spec.maxPixels);
      return;
    case "llava-next":
    case "llava-onevision":
      for (const [h, w] of spec.pinpoints) {
        checkSide("pinpoints height", h);
        checkSide("pinpoints width", w);
        checkPixels("pinpoints", h * w);
      }
      return;
    case "custom": {
      const rs = spec.resize;
      if (rs.mode === "smart") {
        checkPixels("resize.minPixels", rs.minPixels);
        checkPixels("resize.maxPixels", rs.maxPixels);
        if (rs.factor !== undefined) checkSide("resize.factor", rs.factor);
      } else if (rs.mode === "fixed") {
        checkSide("resize.width", rs.width);
        checkSide("resize.height", rs.height);
        checkPixels("resize", rs.width * rs.height);
      } else {
        checkSide("resize.size", rs.size);
        checkPixels("resize", rs.size * rs.size);
      }
      return;
    }
    default:
      return;
  }
}

function checkGrid(grid: Grid): Grid {
  const limit = GEOMETRY_LIMITS.maxGridTokens;
  if (!(grid.tokens <= limit)) {
    throw new RangeError(
      `Cannot build grid: ${grid.geometry} gives ${grid.tokens} visual tokens for a ${grid.imageWidth}x${grid.imageHeight} image, more than the limit of ${limit}`,
    );
  }
  checkPixels("resized size", grid.resizedWidth * grid.resizedHeight);
  return grid;
}

/**
 * Apply a geometry to an image size. Every bound (spec numbers, the resized size, the token
 * count) is checked in O(tiles) before anything is allocated.
 *
 * @example
 * ```ts
 * const grid = computeGrid(GeometrySpecSchema.parse({ name: "qwen2-vl" }), 1000, 700);
 * grid.tokens; // 900
 * ```
 */
export function computeGrid(spec: GeometrySpec, width: number, height: number): Grid {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new RangeError(
      `Cannot build grid: image size must be positive integers, current value is ${width}x${height}`,
    );
  }
  const maxSide = GEOMETRY_LIMITS.maxImageSide;
  if (width > maxSide || height > maxSide) {
    throw new RangeError(
      `Cannot build grid: image sides must be at most ${maxSide} px, current value is ${width}x${height}`,
    );
  }
  checkGeometrySpec(spec);
  return checkGrid(computeGridUnchecked(spec, width, height));
}

function computeGridUnchecked(spec: GeometrySpec, width: number, height: number): Grid {
  switch (spec.name) {
    case "qwen2-vl":
    case "qwen2.5-vl":
    case "qwen3-vl": {
      const cell = spec.name === "qwen3-vl" ? 32 : 28;
      const resized = smartResize(width, height, {
        factor: cell,
        minPixels: spec.minPixels,
        maxPixels: spec.maxPixels,
      });
      return singleTile(spec.name, width, height, resized, cell, { x0: 0, y0: 0, width, height });
    }
    case "llava-1.5":
      return singleTile(
        spec.name,
        width,
        height,
        { width: 336, height: 336 },
        14,
        spec.resize === "center-crop"
          ? centerCropFrame(width, height, 336)
          : paddedSquare(width, height),
      );
    case "llava-next":
      return anyresGrid(spec.name, width, height, {
        pinpoints: spec.pinpoints,
        crop: 336,
        perSide: 24,
      });
    case "llava-onevision":
      return anyresGrid(
        spec.name,
        width,
        height,
        { pinpoints: spec.pinpoints, crop: 384, perSide: 27 },
        spec.maxNumPatches,
      );
    case "idefics3":
    case "smolvlm":
      return idefics3Grid(spec.name, width, height, spec);
    case "gemma3": {
      const tiles: Tile[] = [{
        kind: "image",
        x0: 0,
        y0: 0,
        width,
        height,
        rows: 16,
        cols: 16,
        offset: 0,
      }];
      if (spec.panAndScan) {
        for (
          const [x0, y0, w, h] of gemma3PanAndScanCrops(width, height, {
            minCropSize: spec.panAndScanMinCropSize,
            maxNumCrops: spec.panAndScanMaxNumCrops,
            minRatio: spec.panAndScanMinRatio,
          })
        ) {
          tiles.push({
            kind: "tile",
            x0,
            y0,
            width: w,
            height: h,
            rows: 16,
            cols: 16,
            offset: tiles.length * 256,
          });
        }
      }
      return {
        geometry: spec.name,
        imageWidth: width,
        imageHeight: height,
        resizedWidth: 896,
        resizedHeight: 896,
        tiles,
        tokens: tiles.length * 256,
      };
    }
    case "internvl":
    case "internvl2.5":
    case "internvl3": {
      const { cols, rows } = internvlTileGrid(width, height, {
        minNum: spec.minNum,
        maxNum: spec.maxNum,
      });
      const tiles: Tile[] = [];
      const tw = width / cols;
      const th = height / rows;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          tiles.push({
            kind: "tile",
            x0: c * tw,
            y0: r * th,
            width: tw,
            height: th,
            rows: 16,
            cols: 16,
            offset: tiles.length * 256,
          });
        }
      }
      if (spec.useThumbnail && tiles.length > 1) {
        tiles.push({
          kind: "thumbnail",
          x0: 0,
          y0: 0,
          width,
          height,
          rows: 16,
          cols: 16,
          offset: tiles.length * 256,
        });
      }
      return {
        geometry: spec.name,
        imageWidth: width,
        imageHeight: height,
        resizedWidth: 448,
        resizedHeight: 448,
        tiles,
        tokens: tiles.length * 256,
      };
    }
    case "custom": {
      const cell = spec.patchSize * spec.merge;
      const rs = spec.resize;
      if (rs.mode === "smart") {
        const resized = smartResize(width, height, { ...rs, factor: rs.factor ?? cell });
        return singleTile("custom", width, height, resized, cell, { x0: 0, y0: 0, width, height });
      }
      if (rs.mode === "fixed") {
        return singleTile("custom", width, height, rs, cell, { x0: 0, y0: 0, width, height });
      }
      return singleTile(
        "custom",
        width,
        height,
        { width: rs.size, height: rs.size },
        cell,
        paddedSquare(width, height),
      );
    }
  }
}

/** Tokens a tile occupies in the visual sequence (its newline tokens included). */
export function tileTokenCount(tile: Tile): number {
  return tile.rows * (tile.cols + (tile.newline ? 1 : 0));
}

/** Index in the visual sequence of the token at (row, col) of a tile. */
export function tileTokenIndex(tile: Tile, row: number, col: number): number {
  return tile.offset + row * (tile.cols + (tile.newline ? 1 : 0)) + col;
}

/** (row, col) of a visual token inside its tile; `col === tile.cols` is a newline token. */
export function tileTokenPosition(tile: Tile, index: number): { row: number; col: number } {
  const stride = tile.cols + (tile.newline ? 1 : 0);
  const local = index - tile.offset;
  return { row: Math.floor(local / stride), col: local % stride };
}

/** Rectangle of the token at (row, col) of a tile, clipped to the image. */
export function cellRect(grid: Grid, tile: Tile, row: number, col: number): CellRect {
  const cw = tile.width / tile.cols;
  const ch = tile.height / tile.rows;
  const x0 = Math.max(0, tile.x0 + col * cw);
  const y0 = Math.max(0, tile.y0 + row * ch);
  const x1 = Math.min(grid.imageWidth, tile.x0 + (col + 1) * cw);
  const y1 = Math.min(grid.imageHeight, tile.y0 + (row + 1) * ch);
  return { x0, y0, x1: Math.max(x0, x1), y1: Math.max(y0, y1) };
}

/**
 * Every visual token's rectangle in model order (for overlays and tests; O(tokens)). A
 * newline token sees nothing: its rectangle is empty, at the right end of its row.
 */
export function allCellRects(grid: Grid): CellRect[] {
  const out: CellRect[] = [];
  for (const tile of grid.tiles) {
    for (let r = 0; r < tile.rows; r++) {
      for (let c = 0; c < tile.cols; c++) out.push(cellRect(grid, tile, r, c));
      if (tile.newline) {
        const end = cellRect(grid, tile, r, tile.cols - 1);
        out.push({ x0: end.x1, y0: end.y0, x1: end.x1, y1: end.y0 });
      }
    }
  }
  return out;
}

/** Indices of the newline tokens in the visual sequence (LLaVA-NeXT / OneVision). */
export function newlinePositions(grid: Grid): number[] {
  const out: number[] = [];
  for (const tile of grid.tiles) {
    if (!tile.newline) continue;
    for (let r = 0; r < tile.rows; r++) out.push(tileTokenIndex(tile, r, tile.cols));
  }
  return out;
}
