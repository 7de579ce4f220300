import { assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import {
  allCellRects,
  computeGrid,
  GeometrySpecSchema,
  internvlTileGrid,
  newlinePositions,
  roundHalfEven,
  smartResize,
  tileTokenIndex,
  tileTokenPosition,
} from "./mod.ts";
import { assignWordsToCells, IGNORE_INDEX } from "../labels/assign.ts";

const grid = (spec: unknown, w: number, h: number) =>
  computeGrid(GeometrySpecSchema.parse(spec), w, h);

Deno.test("qwen2-vl: 1000x700 → 1008x700, 36x25 = 900 tokens in raster order", () => {
  const g = grid({ name: "qwen2-vl" }, 1000, 700);
  assertEquals([g.resizedWidth, g.resizedHeight, g.tokens], [1008, 700, 900]);
  assertEquals([g.tiles[0]!.cols, g.tiles[0]!.rows], [36, 25]);
  const rects = allCellRects(g);
  // token 1 is the second cell of the first row; each covers 28 resized px = 28·1000/1008 original px
  assertAlmostEquals(rects[1]!.x0, 1000 / 36, 1e-9);
  assertAlmostEquals(rects[36]!.y0, 28, 1e-9);
  assertAlmostEquals(rects[899]!.x1, 1000, 1e-9);
});

Deno.test("smartResize: Python round-half-even and clamping into [min, max] pixels", () => {
  assertEquals(roundHalfEven(2.5), 2);
  assertEquals(roundHalfEven(3.5), 4);
  // 70/28 = 2.5 → rounds to 2 (not 3) as Python does
  assertEquals(smartResize(70, 280, { minPixels: 1, maxPixels: 1e9 }), { width: 56, height: 280 });
  // below min: 20x20 with min 56*56 → scaled up, ceil to 56x56
  assertEquals(smartResize(20, 20), { width: 56, height: 56 });
  // above max: 4000x3000 with max 1003520 (28*28*1280): beta = sqrt(12e6/1003520) = 3.458;
  // floor(3000/3.458/28)*28 = 30*28 = 840, floor(4000/3.458/28)*28 = 41*28 = 1148
  assertEquals(smartResize(4000, 3000, { maxPixels: 1003520 }), { width: 1148, height: 840 });
  const g = grid({ name: "qwen2-vl", maxPixels: 1003520 }, 4000, 3000);
  assertEquals(g.tokens, 41 * 30);
});

Deno.test("smartResize: aspect ratio above 200 is a clear error", () => {
  const err = assertThrows(() => grid({ name: "qwen2-vl" }, 5000, 20), RangeError);
  assertEquals(
    err.message.includes("aspect ratio must not exceed 200, current value is 250.00"),
    true,
  );
});

Deno.test("llava-1.5: pad to square, 24x24 tokens, padding offsets", () => {
  const g = grid({ name: "llava-1.5" }, 1000, 700);
  assertEquals(g.tokens, 576);
  const t = g.tiles[0]!;
  assertEquals([t.x0, t.y0, t.width, t.height], [0, -150, 1000, 1000]);
  const rects = allCellRects(g);
  // first row: square y ∈ [0, 41.67) → original y ∈ [-150, -108.3): all padding, empty
  assertEquals(rects[0]!.y1 - rects[0]!.y0, 0);
  // row 4 covers square y [166.7, 208.3) → original [16.7, 58.3)
  assertAlmostEquals(rects[4 * 24]!.y0, 1000 / 24 * 4 - 150, 1e-9);
  // a tall image pads left and right by floor((700-301)/2) = 199
  assertEquals(grid({ name: "llava-1.5" }, 301, 700).tiles[0]!.x0, -199);
});

Deno.test("internvl: tile grids by closest aspect ratio, thumbnail when more than one tile", () => {
  // 1000x700, aspect 1.43: closest 3/2 (diff .071) beats 4/3 (.095) → 6 tiles + thumbnail
  assertEquals(internvlTileGrid(1000, 700), { cols: 3, rows: 2 });
  assertEquals(grid({ name: "internvl" }, 1000, 700).tokens, 7 * 256);
  // square 448: 1x1 wins the tie with 2x2 since 448² ≤ 0.5·448²·4 → one tile, no thumbnail
  assertEquals(grid({ name: "internvl" }, 448, 448).tokens, 256);
  // square 1792: ties resolved toward larger grids while area > 0.5·448²·n → 3x3 (4x4 = 16 > 12)
  assertEquals(internvlTileGrid(1792, 1792), { cols: 3, rows: 3 });
  // 2000x500: aspect 4 → 4x1
  assertEquals(internvlTileGrid(2000, 500), { cols: 4, rows: 1 });
  // 500x1000: 1x2 (2x4 tie loses: 5e5 ≤ 0.5·448²·8)
  assertEquals(internvlTileGrid(500, 1000), { cols: 1, rows: 2 });
  const g = grid({ name: "internvl" }, 500, 1000);
  assertEquals(g.tiles.map((t) => t.kind), ["tile", "tile", "thumbnail"]);
  assertEquals(g.tiles[1]!.y0, 500);
  assertEquals(g.tiles[2]!.offset, 512);
  // each of a tile's 16x16 tokens covers 1/16 of the tile
  assertAlmostEquals(allCellRects(g)[1]!.x0, 500 / 16, 1e-9);
});

Deno.test("custom geometry and unknown fields", () => {
  const g = grid(
    { name: "custom", patchSize: 16, merge: 2, resize: { mode: "fixed", width: 320, height: 64 } },
    1000,
    200,
  );
  assertEquals(g.tokens, 10 * 2);
  assertThrows(() => GeometrySpecSchema.parse({ name: "qwen2-vl", patch: 3 }));
  assertThrows(() => GeometrySpecSchema.parse({ name: "nope" }));
  assertThrows(
    () =>
      grid(
        { name: "custom", patchSize: 14, resize: { mode: "fixed", width: 100, height: 100 } },
        10,
        10,
      ),
    RangeError,
  );
});

Deno.test("bounds: pixel bounds, fixed sizes and grid tokens refused with the limit and value, fast", () => {
  const t0 = performance.now();
  const cases: Array<[unknown, string]> = [
    [
      { name: "qwen2-vl", maxPixels: 2e10 },
      "'maxPixels' must be at most 67108864 pixels, current value is 20000000000",
    ],
    [{ name: "qwen2.5-vl", minPixels: 1e12 }, "'minPixels' must be at most 67108864"],
    [
      { name: "custom", patchSize: 14, resize: { mode: "fixed", width: 1e6, height: 14 } },
      "'resize.width' must be at most 32768 px",
    ],
    [
      { name: "custom", patchSize: 2, resize: { mode: "fixed", width: 8192, height: 8192 } },
      "more than the limit of 262144",
    ],
    [
      { name: "custom", patchSize: 1, resize: { mode: "smart", maxPixels: 2e10 } },
      "'resize.maxPixels'",
    ],
    [{ name: "llava-next", pinpoints: [[336, 1e6]] }, "'pinpoints width' must be at most"],
  ];
  for (const [spec, msg] of cases) assertThrows(() => grid(spec, 1000, 700), RangeError, msg);
  assertThrows(() => grid({ name: "qwen2-vl" }, 2e6, 1000), RangeError, "at most 1048576 px");
  // a 2^26-pixel smart resize of a huge image is computed, not allocated: refused by token count
  assertThrows(
    () =>
      grid(
        { name: "custom", patchSize: 1, resize: { mode: "smart", maxPixels: 1 << 26 } },
        90000,
        90000,
      ),
    RangeError,
    "visual tokens",
  );
  // Idefics3 with 1 px sub-images: 4096² tiles would be built; refused from the counts alone
  assertThrows(
    () => grid({ name: "idefics3", tileSize: 1, tokensPerSide: 1 }, 4000, 4000),
    RangeError,
    "more than the limit of 262144",
  );
  assertEquals(performance.now() - t0 < 100, true);
});

Deno.test("llava-next: newline tokens shift indices, see nothing and are never labeled", () => {
  const g = grid({ name: "llava-next" }, 1000, 700);
  const t = g.tiles[1]!;
  assertEquals(t.newline, true);
  assertEquals(tileTokenIndex(t, 1, 0), 576 + t.cols + 1);
  assertEquals(tileTokenPosition(t, tileTokenIndex(t, 3, 5)), { row: 3, col: 5 });
  const rects = allCellRects(g);
  const newlines = new Set(newlinePositions(g));
  assertEquals(newlines.size, t.rows);
  for (const p of newlines) assertEquals(rects[p]!.x1 - rects[p]!.x0, 0);
  // a word over the whole image labels base and grid cells, never a newline position
  const a = assignWordsToCells(g, [{ box: [0, 0, 1000, 700], pieces: [{ id: 7, text: "x" }] }], {
    split: "first",
    minCellOverlap: 0.1,
    minWordOverlap: 0.5,
  });
  assertEquals(a.label.length, g.tokens);
  for (const [i, l] of a.label.entries()) assertEquals(l === IGNORE_INDEX, newlines.has(i), `${i}`);
});
