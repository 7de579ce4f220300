/**
 * Every preset against the Hugging Face processors' own numbers
 * (tests/fixtures/geometry/make_geometry.py, transformers 5.18): sizes, grids, token counts,
 * newline positions, crop rectangles.
 */
import { assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import {
  allCellRects,
  computeGrid,
  GeometrySpecSchema,
  type Grid,
  newlinePositions,
  tileTokenCount,
} from "./mod.ts";

interface Case {
  width: number;
  height: number;
  error?: string;
  [k: string]: unknown;
}
interface Fixture {
  transformers: string;
  presets: Record<string, { spec: Record<string, unknown>; cases: Case[]; shuffle?: Shuffle }>;
  "qwen2.5-vl-window-order": { rows: number; cols: number; changedByGroup: number[][] };
}
interface Shuffle {
  scale: number;
  patchesPerSide: number;
  firstPatchOfToken: number[];
  blockOfToken0: number[];
}

const fixture: Fixture = JSON.parse(
  await Deno.readTextFile(
    new URL("../../tests/fixtures/geometry/geometry.json", import.meta.url),
  ),
);
const preset = (key: string) => fixture.presets[key]!;
const grid = (spec: unknown, c: Case) =>
  computeGrid(GeometrySpecSchema.parse(spec), c.width, c.height);

/** Token sums, offsets and rectangles agree with each other for any grid. */
function assertConsistent(g: Grid) {
  let offset = 0;
  for (const t of g.tiles) {
    assertEquals(t.offset, offset);
    offset += tileTokenCount(t);
  }
  assertEquals(offset, g.tokens);
  assertEquals(allCellRects(g).length, g.tokens);
}

Deno.test("fixture comes from transformers 5.18 with ≥ 10 sizes per preset", () => {
  assertEquals(fixture.transformers, "5.18.0");
  for (const [k, p] of Object.entries(fixture.presets)) {
    assertEquals(p.cases.filter((c) => !c.error).length >= 10, true, k);
  }
});

for (
  const key of ["qwen2-vl", "qwen2-vl-small", "qwen2-vl-min-above-max", "qwen2.5-vl", "qwen3-vl"]
) {
  Deno.test(`${key}: resized size, grid and tokens equal the HF processor's`, () => {
    const p = preset(key);
    for (const c of p.cases) {
      if (c.error) {
        // the processor refuses aspect ratios above 200; so do we
        assertThrows(() => grid(p.spec, c), RangeError, "aspect ratio");
        continue;
      }
      const g = grid(p.spec, c);
      const t = g.tiles[0]!;
      assertEquals(
        [g.resizedWidth, g.resizedHeight, t.rows, t.cols, g.tokens],
        [c.resizedWidth, c.resizedHeight, c.rows, c.cols, c.tokens],
        `${c.width}x${c.height}`,
      );
      assertConsistent(g);
    }
  });
}

Deno.test("qwen2-vl: 1000x10 gives the processor's 20 tokens, min > max a size", () => {
  assertEquals(grid({ name: "qwen2-vl" }, { width: 1000, height: 10 }).tokens, 20);
  const g = grid({ name: "qwen2-vl", minPixels: 500000, maxPixels: 100000 }, {
    width: 1000,
    height: 700,
  });
  assertEquals([g.resizedWidth, g.resizedHeight], [364, 252]);
});

Deno.test("qwen2.5-vl: window attention keeps the processor's token order", () => {
  // perturbing merged group k of the input changes output token k and nothing else
  const w = fixture["qwen2.5-vl-window-order"];
  assertEquals(w.changedByGroup.length, w.rows * w.cols);
  w.changedByGroup.forEach((changed, k) => assertEquals(changed, [k]));
  // so qwen2.5-vl is qwen2-vl's grid
  for (const c of preset("qwen2.5-vl").cases.filter((c) => !c.error)) {
    const a = grid({ name: "qwen2.5-vl" }, c);
    const b = grid({ name: "qwen2-vl" }, c);
    assertEquals(a.tiles, b.tiles);
  }
});

Deno.test("llava-1.5 center-crop: the window the CLIP processor keeps, in original pixels", () => {
  const p = preset("llava-1.5-center-crop");
  for (const c of p.cases) {
    const g = grid(p.spec, c);
    const t = g.tiles[0]!;
    const sx = c.width / (c.resizedWidth as number);
    const sy = c.height / (c.resizedHeight as number);
    assertEquals(g.tokens, c.tokens);
    assertAlmostEquals(t.x0, (c.left as number) * sx, 1e-9);
    assertAlmostEquals(t.y0, (c.top as number) * sy, 1e-9);
    assertAlmostEquals(t.width, 336 * sx, 1e-9);
    assertAlmostEquals(t.height, 336 * sy, 1e-9);
  }
});

for (const key of ["llava-next", "llava-onevision"]) {
  Deno.test(`${key}: canvas, unpadded grid, newline positions equal the model's packing`, () => {
    const p = preset(key);
    const crop = key === "llava-next" ? 336 : 384;
    const perSide = key === "llava-next" ? 24 : 27;
    for (const c of p.cases) {
      const at = `${c.width}x${c.height}`;
      const g = grid(p.spec, c);
      assertEquals([g.resizedWidth, g.resizedHeight], [c.bestWidth, c.bestHeight], at);
      assertEquals(g.tokens, c.tokens, at);
      assertEquals(newlinePositions(g), c.newlines, at);
      const [base, t] = g.tiles as [Grid["tiles"][0], Grid["tiles"][0]];
      assertEquals([base.kind, base.rows, base.cols, base.x0, base.width], [
        "base",
        perSide,
        perSide,
        0,
        c.width,
      ]);
      assertEquals(t.rows, c.rows, at);
      if (c.rows !== 0) assertEquals(t.cols, c.cols, at);
      if (c.firstRow !== undefined) {
        // the first kept feature of the canvas grid, mapped from canvas to original pixels
        const cell = crop / perSide;
        const sx = c.width / (c.innerWidth as number);
        const sy = c.height / (c.innerHeight as number);
        assertAlmostEquals(t.x0, ((c.firstCol as number) * cell - (c.pasteX as number)) * sx, 1e-6);
        assertAlmostEquals(t.y0, ((c.firstRow as number) * cell - (c.pasteY as number)) * sy, 1e-6);
      }
      assertConsistent(g);
    }
  });
}

for (const key of ["idefics3", "smolvlm"]) {
  Deno.test(`${key}: sub-image rows × cols + global image, tokens per image`, () => {
    const p = preset(key);
    const n = p.spec.tokensPerSide as number;
    for (const c of p.cases) {
      const at = `${c.width}x${c.height}`;
      const g = grid({ name: key }, c);
      assertEquals(g.tiles.length, c.images, at);
      assertEquals(g.tokens, c.tokens, at);
      const subs = g.tiles.filter((t) => t.kind === "tile");
      assertEquals(subs.length, (c.rows as number) * (c.cols as number), at);
      assertEquals(g.tiles.at(-1)!.kind, "global");
      if (subs.length > 0) {
        assertAlmostEquals(subs[0]!.width * (c.cols as number), c.width, 1e-6);
        assertAlmostEquals(subs.at(-1)!.y0 + subs.at(-1)!.height, c.height, 1e-6);
      }
      for (const t of g.tiles) assertEquals([t.rows, t.cols], [n, n]);
      assertConsistent(g);
    }
    // pixel shuffle: token (i, j) is the scale×scale block at patch (i·s, j·s), raster order
    const s = p.shuffle!;
    const side = s.patchesPerSide / s.scale;
    s.firstPatchOfToken.forEach((first, k) => {
      const i = Math.floor(k / side);
      const j = k % side;
      assertEquals(first, i * s.scale * s.patchesPerSide + j * s.scale);
    });
    assertEquals(s.blockOfToken0.length, s.scale * s.scale);
  });
}

for (const key of ["gemma3", "gemma3-pan-and-scan"]) {
  Deno.test(`${key}: 256 tokens per image, pan-and-scan crops at the processor's rectangles`, () => {
    const p = preset(key);
    for (const c of p.cases) {
      const at = `${c.width}x${c.height}`;
      const g = grid(p.spec, c);
      assertEquals(g.tokens, c.tokens, at);
      assertEquals(g.tiles.length, c.images, at);
      const crops = g.tiles.slice(1).map((t) => [t.x0, t.y0, t.width, t.height]);
      assertEquals(crops, c.cropRects, at);
      for (const t of g.tiles) assertEquals([t.rows, t.cols], [16, 16]);
      assertConsistent(g);
    }
  });
}

for (const key of ["internvl", "internvl-min-above-max"]) {
  Deno.test(`${key}: tile grid and patch count equal GotOcr2's crop_to_patches`, () => {
    const p = preset(key);
    for (const name of ["internvl", "internvl2.5", "internvl3"]) {
      for (const c of p.cases) {
        const at = `${c.width}x${c.height}`;
        const g = grid({ ...p.spec, name }, c);
        assertEquals(g.tiles.length, c.images, at);
        assertEquals(g.tokens, c.tokens, at);
        const tiles = g.tiles.filter((t) => t.kind === "tile");
        assertEquals(tiles.length, (c.cols as number) * (c.rows as number), at);
        assertConsistent(g);
      }
    }
  });
}
