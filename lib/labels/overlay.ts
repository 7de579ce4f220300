/**
 * Overlay PNG for auditing a label set: the image, the token grid, each labeled cell tinted
 * by its word and captioned with its piece, unlabeled cells dimmed.
 */
import { createCanvas, type Image } from "@napi-rs/canvas";
import { cellRect, type Grid, tileTokenIndex } from "../geometry/mod.ts";
import { IGNORE_INDEX } from "./assign.ts";
import type { LabelSet } from "./label_set.ts";
import { ensureFonts } from "../render/fonts.ts";

/** The grid a label set was made on. */
export function gridOf(ls: LabelSet): Grid {
  return {
    geometry: ls.geometry.spec.name,
    imageWidth: ls.image.width,
    imageHeight: ls.image.height,
    resizedWidth: ls.geometry.resizedWidth,
    resizedHeight: ls.geometry.resizedHeight,
    tiles: ls.geometry.tiles,
    tokens: ls.geometry.tokens,
  };
}

/**
 * Draw the overlay. Whole-image tiles beside crops (InternVL's thumbnail, LLaVA-NeXT's base,
 * Idefics3's global image) are left out: they cover the whole image again.
 */
export function drawOverlay(image: Image, ls: LabelSet): Uint8Array {
  ensureFonts();
  const { width, height } = ls.image;
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(image, 0, 0, width, height);
  const grid = gridOf(ls);
  for (const tile of grid.tiles) {
    if (tile.kind !== "image" && tile.kind !== "tile" && grid.tiles.length > 1) continue;
    const cellH = tile.height / tile.rows;
    ctx.font = `${Math.max(6, Math.min(14, cellH * 0.32))}px "DejaVu Sans"`;
    for (let r = 0; r < tile.rows; r++) {
      for (let c = 0; c < tile.cols; c++) {
        const t = tileTokenIndex(tile, r, c);
        const rect = cellRect(grid, tile, r, c);
        const w = rect.x1 - rect.x0;
        const h = rect.y1 - rect.y0;
        if (w <= 0 || h <= 0) continue;
        const wi = ls.tokens.word[t]!;
        if (ls.tokens.label[t] === IGNORE_INDEX || wi < 0) {
          ctx.fillStyle = "rgba(0,0,0,0.35)";
          ctx.fillRect(rect.x0, rect.y0, w, h);
        } else {
          const hue = (wi * 137.508) % 360; // golden-angle hues: neighbours differ
          ctx.fillStyle = `hsla(${hue.toFixed(1)},85%,55%,0.30)`;
          ctx.fillRect(rect.x0, rect.y0, w, h);
          ctx.fillStyle = `hsl(${hue.toFixed(1)},90%,25%)`;
          ctx.fillText(ls.tokens.text[t] ?? "", rect.x0 + 1, rect.y1 - 2, Math.max(1, w - 2));
        }
        ctx.strokeStyle = "rgba(40,90,200,0.45)";
        ctx.lineWidth = 0.5;
        ctx.strokeRect(rect.x0, rect.y0, w, h);
      }
    }
  }
  return new Uint8Array(canvas.toBuffer("image/png"));
}
