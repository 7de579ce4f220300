/**
 * Word → visual-token assignment (docs/ARCHITECTURE.md "Assignment").
 *
 * A cell takes the word whose box overlaps it most, when that overlap is at least
 * `minCellOverlap` of the cell or `minWordOverlap` of the word. A word that won no cell
 * takes the cell holding its centre (unless that would leave another word with none).
 * Words the tokenizer splits spread their pieces over their cells left to right in
 * proportion to the pieces' character counts (`span`), or repeat the first piece (`first`).
 */
import { z } from "zod";
import {
  cellRect,
  type Grid,
  tileTokenCount,
  tileTokenIndex,
  tileTokenPosition,
} from "../geometry/mod.ts";
import type { Piece } from "../tokenizer/mod.ts";

export const AssignOptionsSchema = z.strictObject({
  /** `span`: pieces spread left to right by character count; `first`: every cell gets piece 0. */
  split: z.enum(["span", "first"]).default("span"),
  /** A cell is labeled when the word covers at least this fraction of the cell… */
  minCellOverlap: z.number().min(0).max(1).default(0.1),
  /** …or at least this fraction of the word. */
  minWordOverlap: z.number().min(0).max(1).default(0.5),
});
export type AssignOptions = z.infer<typeof AssignOptionsSchema>;

/** A word box in original-image pixels: [x0, y0, x1, y1], x1 > x0, y1 > y0. */
export type Box = [number, number, number, number];

export interface WordInput {
  box: Box;
  pieces: Piece[];
}

/** Per-token results in model order (parallel arrays: compact, stable JSON). */
export interface Assignment {
  label: number[];
  text: (string | null)[];
  word: number[];
  overlap: number[];
}

export const IGNORE_INDEX = -100;

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** Assign words to the tokens of a grid. O(Σ cells each word touches). */
export function assignWordsToCells(
  grid: Grid,
  words: readonly WordInput[],
  options: AssignOptions,
): Assignment {
  const n = grid.tokens;
  const bestArea = new Float64Array(n);
  const bestWord = new Int32Array(n).fill(-1);
  const bestFrac = new Float64Array(n);
  const label: number[] = new Array(n).fill(IGNORE_INDEX);
  const text: (string | null)[] = new Array(n).fill(null);

  for (const tile of grid.tiles) {
    const cw = tile.width / tile.cols;
    const ch = tile.height / tile.rows;
    const cellsOf = new Map<number, number[]>(); // word → token indices won in this tile

    words.forEach((w, wi) => {
      const [bx0, by0, bx1, by1] = w.box;
      const wordArea = (bx1 - bx0) * (by1 - by0);
      if (!(wordArea > 0)) return;
      const c0 = Math.max(0, Math.floor((bx0 - tile.x0) / cw));
      const c1 = Math.min(tile.cols - 1, Math.ceil((bx1 - tile.x0) / cw) - 1);
      const r0 = Math.max(0, Math.floor((by0 - tile.y0) / ch));
      const r1 = Math.min(tile.rows - 1, Math.ceil((by1 - tile.y0) / ch) - 1);
      for (let r = r0; r <= r1; r++) {
        for (let c = c0; c <= c1; c++) {
          const rect = cellRect(grid, tile, r, c);
          const cellArea = (rect.x1 - rect.x0) * (rect.y1 - rect.y0);
          if (!(cellArea > 0)) continue;
          const ix = Math.min(bx1, rect.x1) - Math.max(bx0, rect.x0);
          const iy = Math.min(by1, rect.y1) - Math.max(by0, rect.y0);
          if (ix <= 0 || iy <= 0) continue;
          const inter = ix * iy;
          const ok = inter / cellArea >= options.minCellOverlap ||
            inter / wordArea >= options.minWordOverlap;
          const t = tileTokenIndex(tile, r, c);
          if (ok && inter > bestArea[t]!) {
            bestArea[t] = inter;
            bestWord[t] = wi;
            bestFrac[t] = inter / cellArea;
          }
        }
      }
    });
    for (let t = tile.offset; t < tile.offset + tileTokenCount(tile); t++) {
      const wi = bestWord[t]!;
      if (wi >= 0) (cellsOf.get(wi) ?? cellsOf.set(wi, []).get(wi)!).push(t);
    }
    // centre rule: a word with no cell in this tile takes the cell holding its centre
    words.forEach((w, wi) => {
      if (cellsOf.has(wi)) return;
      const [bx0, by0, bx1, by1] = w.box;
      if (!((bx1 - bx0) * (by1 - by0) > 0)) return;
      const cx = (bx0 + bx1) / 2;
      const cy = (by0 + by1) / 2;
      const c = Math.floor((cx - tile.x0) / cw);
      const r = Math.floor((cy - tile.y0) / ch);
      if (c < 0 || r < 0 || c >= tile.cols || r >= tile.rows) return;
      const t = tileTokenIndex(tile, r, c);
      const rect = cellRect(grid, tile, r, c);
      const cellArea = (rect.x1 - rect.x0) * (rect.y1 - rect.y0);
      if (!(cellArea > 0)) return;
      const owner = bestWord[t]!;
      if (owner >= 0) {
        const owned = cellsOf.get(owner)!;
        if (owned.length <= 1) return; // taking it would leave the owner with nothing
        owned.splice(owned.indexOf(t), 1);
      }
      const ix = Math.min(bx1, rect.x1) - Math.max(bx0, rect.x0);
      const iy = Math.min(by1, rect.y1) - Math.max(by0, rect.y0);
      bestWord[t] = wi;
      bestFrac[t] = Math.max(0, ix) * Math.max(0, iy) / cellArea;
      cellsOf.set(wi, [t]);
    });
    // pieces over each word's cells
    for (const [wi, cells] of cellsOf) {
      const w = words[wi]!;
      if (w.pieces.length === 0) continue;
      const [bx0, , bx1] = w.box;
      const chars = w.pieces.map((p) => Math.max(1, p.text.trim().length));
      const total = chars.reduce((a, b) => a + b, 0);
      for (const t of cells) {
        let k = 0;
        if (options.split === "span" && w.pieces.length > 1) {
          const { row, col } = tileTokenPosition(tile, t);
          const rect = cellRect(grid, tile, row, col);
          // where the cell's visible part of the word sits along the word, in [0, 1)
          const mid = (Math.max(bx0, rect.x0) + Math.min(bx1, rect.x1)) / 2;
          const f = Math.min(0.999999, Math.max(0, (mid - bx0) / (bx1 - bx0)));
          let acc = 0;
          while (k < chars.length - 1 && (acc + chars[k]!) / total <= f) acc += chars[k++]!;
        }
        label[t] = w.pieces[k]!.id;
        text[t] = w.pieces[k]!.text;
      }
    }
  }
  const word = Array.from(bestWord, (wi, t) => (label[t] === IGNORE_INDEX ? -1 : wi));
  const overlap = Array.from(bestFrac, (f, t) => (word[t]! >= 0 ? round4(f) : 0));
  return { label, text, word, overlap };
}
