/**
 * Overlay PNG for auditing a label set: the image with the token grid, each labeled cell
 * tinted by its word, unlabeled cells dimmed; a legend panel beside it names every labeled
 * word, its pieces and ids in text readable at page size; every tile is drawn — whole-image
 * tiles beside crops (InternVL's thumbnail, LLaVA-NeXT's base, Idefics3's global image) as
 * smaller views of their own under the image. Piece text goes inside cells only where a cell is
 * tall enough to read it.
 */
import { createCanvas, type Image, type SKRSContext2D } from "@napi-rs/canvas";
import { cellRect, type Grid, type Tile, tileTokenCount, tileTokenIndex } from "../geometry/mod.ts";
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

/** Options of {@linkcode drawOverlay}. */
export interface OverlayOptions {
  /** Legend and caption text size in px. @default 16 */
  fontSize?: number;
  /** Piece text (≥ 12 px) is drawn inside cells at least this tall on the drawn view. @default 28 */
  minCellTextPx?: number;
  /** Legend columns at most (more words are summarised as "+N more"). @default 3 */
  maxLegendColumns?: number;
}

/** Tiles that cover the whole image again beside crops: drawn as separate views. */
export function isSecondaryTile(tile: Tile, grid: Grid): boolean {
  return grid.tiles.length > 1 && tile.kind !== "image" && tile.kind !== "tile";
}

const hueOf = (wi: number) => (wi * 137.508) % 360; // golden-angle hues: neighbours differ

interface View {
  ox: number;
  oy: number;
  scale: number;
}

function drawTile(
  ctx: SKRSContext2D,
  grid: Grid,
  tile: Tile,
  ls: LabelSet,
  view: View,
  minCellTextPx: number,
): void {
  const cellH = (tile.height / tile.rows) * view.scale;
  const textPx = Math.min(16, cellH * 0.45);
  const withText = cellH >= minCellTextPx;
  ctx.font = `${textPx.toFixed(1)}px "DejaVu Sans"`;
  for (let r = 0; r < tile.rows; r++) {
    for (let c = 0; c < tile.cols; c++) {
      const t = tileTokenIndex(tile, r, c);
      const rect = cellRect(grid, tile, r, c);
      const x = view.ox + rect.x0 * view.scale;
      const y = view.oy + rect.y0 * view.scale;
      const w = (rect.x1 - rect.x0) * view.scale;
      const h = (rect.y1 - rect.y0) * view.scale;
      if (w <= 0 || h <= 0) continue;
      const wi = ls.tokens.word[t]!;
      if (ls.tokens.label[t] === IGNORE_INDEX || wi < 0) {
        ctx.fillStyle = "rgba(0,0,0,0.35)";
        ctx.fillRect(x, y, w, h);
      } else {
        const hue = hueOf(wi).toFixed(1);
        ctx.fillStyle = `hsla(${hue},85%,55%,0.30)`;
        ctx.fillRect(x, y, w, h);
        if (withText) {
          ctx.fillStyle = `hsl(${hue},90%,25%)`;
          ctx.fillText(ls.tokens.text[t] ?? "", x + 1, y + h - 2, Math.max(1, w - 2));
        }
      }
      ctx.strokeStyle = "rgba(40,90,200,0.45)";
      ctx.lineWidth = 0.5;
      ctx.strokeRect(x, y, w, h);
    }
  }
}

/** Draw the overlay (PNG bytes). */
export function drawOverlay(image: Image, ls: LabelSet, options: OverlayOptions = {}): Uint8Array {
  const { fontSize = 16, minCellTextPx = 28, maxLegendColumns = 3 } = options;
  ensureFonts();
  const { width, height } = ls.image;
  const grid = gridOf(ls);
  const primary = grid.tiles.filter((t) => !isSecondaryTile(t, grid));
  const secondary = grid.tiles.filter((t) => isSecondaryTile(t, grid));
  const lineH = Math.round(fontSize * 1.45);

  // whole-image tiles under the image, each at half size with a caption
  const sScale = 0.5;
  const sW = Math.max(1, Math.round(width * sScale));
  const sH = Math.max(1, Math.round(height * sScale));
  const stripH = secondary.length ? sH + lineH + 8 : 0;
  const stripW = secondary.length * (sW + 8);

  // legend: one line per labeled word, in columns beside the image
  const entries = ls.words.flatMap((w, i) =>
    w.tokens > 0
      ? [{
        i,
        text: `${w.text} → ${
          w.pieces.map((p) => `${JSON.stringify(p.text)}:${p.id}`).join(" ")
        } ×${w.tokens}`,
      }]
      : []
  );
  const colW = Math.max(260, fontSize * 24);
  const bodyH = Math.max(height + stripH, lineH * 4);
  const perCol = Math.max(1, Math.floor((bodyH - lineH * 2) / lineH));
  const cols = Math.min(maxLegendColumns, Math.max(1, Math.ceil(entries.length / perCol)));
  const shown = Math.min(entries.length, perCol * cols);
  const canvasW = Math.max(width, stripW) + colW * cols;
  const canvas = createCanvas(canvasW, bodyH);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvasW, bodyH);

  ctx.drawImage(image, 0, 0, width, height);
  for (const tile of primary) {
    drawTile(ctx, grid, tile, ls, { ox: 0, oy: 0, scale: 1 }, minCellTextPx);
  }

  secondary.forEach((tile, k) => {
    const ox = k * (sW + 8);
    const oy = height + lineH + 8;
    ctx.fillStyle = "#222222";
    ctx.font = `${fontSize}px "DejaVu Sans"`;
    const end = tile.offset + tileTokenCount(tile) - 1;
    ctx.fillText(`${tile.kind} · tokens ${tile.offset}–${end}`, ox + 2, height + lineH);
    ctx.drawImage(image, ox, oy, sW, sH);
    drawTile(ctx, grid, tile, ls, { ox, oy, scale: sScale }, minCellTextPx);
  });

  const lx = Math.max(width, stripW) + 10;
  ctx.font = `bold ${fontSize}px "DejaVu Sans"`;
  ctx.fillStyle = "#111111";
  ctx.fillText(
    `${ls.geometry.spec.name} · ${ls.stats.tokens} tokens · ${ls.stats.labeled} labeled · ${ls.tokenizer.name}`,
    lx,
    lineH,
    colW * cols - 20,
  );
  ctx.font = `${fontSize}px "DejaVu Sans"`;
  for (let k = 0; k < shown; k++) {
    const e = entries[k]!;
    const x = lx + Math.floor(k / perCol) * colW;
    const y = lineH * (2 + (k % perCol));
    const hue = hueOf(e.i).toFixed(1);
    ctx.fillStyle = `hsla(${hue},85%,55%,0.6)`;
    ctx.fillRect(x, y - fontSize + 2, fontSize, fontSize);
    ctx.fillStyle = `hsl(${hue},90%,22%)`;
    ctx.fillText(e.text, x + fontSize + 6, y, colW - fontSize - 16);
  }
  if (shown < entries.length) {
    ctx.fillStyle = "#111111";
    ctx.fillText(`+${entries.length - shown} more words`, lx, bodyH - lineH / 2);
  }
  return new Uint8Array(canvas.toBuffer("image/png"));
}
