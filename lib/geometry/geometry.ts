/**
 * Model geometries: how a model's image processor turns an image of W×H pixels into a
 * sequence of visual tokens, and which rectangle of the *original* image each token sees.
 *
 * Every preset is a list of tiles. A tile is an axis-aligned rectangle in original-image
 * coordinates divided into `rows × cols` equal cells; its tokens follow raster order and
 * start at `offset` in the model's visual-token sequence. Qwen2-VL is one tile over the
 * whole image, LLaVA-1.5 one tile over the padded square (which extends past the image),
 * InternVL one tile per crop plus a thumbnail tile.
 */
import { z } from "zod";

/** One block of visual tokens: a rectangle of the original image cut into a grid. */
export interface Tile {
  kind: "image" | "tile" | "thumbnail";
  /** Left edge in original-image pixels (may be negative where the model pads). */
  x0: number;
  y0: number;
  width: number;
  height: number;
  rows: number;
  cols: number;
  /** Index of this tile's first token in the model's visual-token order. */
  offset: number;
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
  tokens: number;
}

/** A token's rectangle in the original image, clipped to the image. Empty when padding. */
export interface CellRect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

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

/** Geometry options accepted at every boundary (HTTP, CLI, dataset configs). */
export const GeometrySpecSchema = z.discriminatedUnion("name", [
  z.strictObject({
    name: z.enum(["qwen2-vl", "qwen2.5-vl"]),
    minPixels: positiveInt.default(3136),
    maxPixels: positiveInt.default(12845056),
  }),
  z.strictObject({ name: z.literal("llava-1.5") }),
  z.strictObject({
    name: z.literal("internvl"),
    minNum: positiveInt.default(1),
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
  "llava-1.5",
  "internvl",
  "custom",
] as const;

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
 * Qwen2-VL's `smart_resize`: sides rounded to multiples of `factor`, area scaled into
 * [minPixels, maxPixels], aspect ratio kept.
 *
 * @example
 * ```ts
 * smartResize(1000, 700); // { width: 1008, height: 700 }
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
  if (minPixels > maxPixels) {
    throw new RangeError(
      `Cannot resize image: 'minPixels' (${minPixels}) exceeds 'maxPixels' (${maxPixels})`,
    );
  }
  let h = Math.max(factor, roundHalfEven(height / factor) * factor);
  let w = Math.max(factor, roundHalfEven(width / factor) * factor);
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
 * InternVL's `find_closest_aspect_ratio` over the (cols, rows) grids with
 * minNum ≤ cols·rows ≤ maxNum, visited by area (ties: by cols, then rows).
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
  if (ratios.length === 0) {
    throw new RangeError(`Cannot tile image: no grid has between ${minNum} and ${maxNum} tiles`);
  }
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
 * Apply a geometry to an image size.
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
  switch (spec.name) {
    case "qwen2-vl":
    case "qwen2.5-vl": {
      const resized = smartResize(width, height, {
        factor: 28,
        minPixels: spec.minPixels,
        maxPixels: spec.maxPixels,
      });
      return singleTile(spec.name, width, height, resized, 28, { x0: 0, y0: 0, width, height });
    }
    case "llava-1.5":
      return singleTile(
        spec.name,
        width,
        height,
        { width: 336, height: 336 },
        14,
        paddedSquare(width, height),
      );
    case "internvl": {
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
        geometry: "internvl",
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

/** Rectangle of token `index` (raster order within its tile), clipped to the image. */
export function cellRect(grid: Grid, tile: Tile, row: number, col: number): CellRect {
  const cw = tile.width / tile.cols;
  const ch = tile.height / tile.rows;
  const x0 = Math.max(0, tile.x0 + col * cw);
  const y0 = Math.max(0, tile.y0 + row * ch);
  const x1 = Math.min(grid.imageWidth, tile.x0 + (col + 1) * cw);
  const y1 = Math.min(grid.imageHeight, tile.y0 + (row + 1) * ch);
  return { x0, y0, x1: Math.max(x0, x1), y1: Math.max(y0, y1) };
}

/** Every token's rectangle in model order (for overlays and tests; O(tokens)). */
export function allCellRects(grid: Grid): CellRect[] {
  const out: CellRect[] = [];
  for (const tile of grid.tiles) {
    for (let r = 0; r < tile.rows; r++) {
      for (let c = 0; c < tile.cols; c++) out.push(cellRect(grid, tile, r, c));
    }
  }
  return out;
}
