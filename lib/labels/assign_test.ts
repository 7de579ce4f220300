import { assertEquals } from "@std/assert";
import { computeGrid, GeometrySpecSchema } from "../geometry/mod.ts";
import { AssignOptionsSchema, assignWordsToCells, type Box, IGNORE_INDEX } from "./assign.ts";

// 100x50 image, 10 px cells: 10 columns x 5 rows, token t = row*10 + col
const grid = computeGrid(
  GeometrySpecSchema.parse({
    name: "custom",
    patchSize: 10,
    resize: { mode: "fixed", width: 100, height: 50 },
  }),
  100,
  50,
);
const opts = AssignOptionsSchema.parse({});
const word = (box: Box, ...texts: string[]) => ({
  box,
  pieces: texts.map((text, i) => ({ id: 1000 + i, text })),
});
const labeledTokens = (label: number[]) => label.flatMap((l, t) => (l === IGNORE_INDEX ? [] : [t]));

Deno.test("a word across three cells labels all three; empty cells stay -100", () => {
  const a = assignWordsToCells(grid, [word([10, 10, 40, 20], " cat")], opts);
  assertEquals(labeledTokens(a.label), [11, 12, 13]);
  assertEquals(a.text[12], " cat");
  assertEquals(a.word[12], 0);
  assertEquals(a.overlap[12], 1);
  assertEquals([a.label[0], a.text[0], a.word[0], a.overlap[0]], [IGNORE_INDEX, null, -1, 0]);
});

Deno.test("span: a word in three pieces spreads left to right by character count", () => {
  // six cells (cols 2..7); pieces of 3, 1, 2 characters → cuts at 1/2 and 2/3 of the word
  const a = assignWordsToCells(grid, [word([20, 10, 80, 20], "abc", "d", "ef")], opts);
  assertEquals(a.text.slice(12, 18), ["abc", "abc", "abc", "d", "ef", "ef"]);
  assertEquals(a.label.slice(12, 18), [1000, 1000, 1000, 1001, 1002, 1002]);
  const first = assignWordsToCells(grid, [word([20, 10, 80, 20], "abc", "d", "ef")], {
    ...opts,
    split: "first",
  });
  assertEquals(first.text.slice(12, 18), ["abc", "abc", "abc", "abc", "abc", "abc"]);
});

Deno.test("two words in one cell: the larger overlap wins; the other keeps no cell rather than steal it", () => {
  const a = assignWordsToCells(grid, [word([1, 1, 4, 9], "a"), word([5, 1, 9, 9], "b")], opts);
  assertEquals(labeledTokens(a.label), [0]);
  assertEquals(a.text[0], "b");
  assertEquals(a.word[0], 1);
});

Deno.test("a tiny word below both thresholds still labels the cell holding its centre", () => {
  const strict = { ...opts, minCellOverlap: 0.5, minWordOverlap: 0.9 };
  // 4x2 px word straddling cols 5 and 6 of row 2; centre (60, 23) lies in col 6
  const a = assignWordsToCells(grid, [word([58, 22, 62, 24], "i")], strict);
  assertEquals(labeledTokens(a.label), [26]);
  assertEquals(a.overlap[26], 0.04);
  // the centre rule takes a cell from a word that keeps others, not from one that would lose its last
  const big = word([40, 20, 70, 30], "wide");
  const b = assignWordsToCells(grid, [big, word([61, 21, 63, 23], "i")], strict);
  assertEquals([b.text[24], b.text[25], b.text[26]], ["wide", "wide", "i"]);
});

Deno.test("llava padding cells are never labeled", () => {
  const g = computeGrid(GeometrySpecSchema.parse({ name: "llava-1.5" }), 336, 168);
  // a word over the whole image: rows 0-5 and 18-23 are padding
  const a = assignWordsToCells(g, [word([0, 0, 336, 168], "x")], opts);
  const t = labeledTokens(a.label);
  assertEquals(t.length, 12 * 24);
  assertEquals(t[0], 6 * 24);
});
