import { assert, assertEquals } from "@std/assert";
import { loadImage } from "@napi-rs/canvas";
import { createCanvas } from "@napi-rs/canvas";
import { renderPage } from "../render/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { drawOverlay, isSecondaryTile, labelImage, LabelOptionsSchema } from "./mod.ts";
import { gridOf } from "./overlay.ts";

const page = renderPage({ seed: 3, width: 900, height: 500, fontSize: 22 });

/** Fraction of non-white pixels in a rectangle of a decoded PNG. */
async function inkIn(png: Uint8Array, x: number, y: number, w: number, h: number) {
  const img = await loadImage(png);
  const c = createCanvas(img.width, img.height);
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(x, y, w, h).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i]! < 200 || d[i + 1]! < 200 || d[i + 2]! < 200) ink++;
  }
  return { ink: ink / (w * h), width: img.width, height: img.height };
}

Deno.test("overlay: legend panel beside the image, InternVL's thumbnail drawn as its own view", async () => {
  const tokenizer = await getTokenizer("qwen2");
  const { labelSet, image } = await labelImage({
    bytes: page.png,
    source: "render",
    words: page.words,
    tokenizer,
    options: LabelOptionsSchema.parse({ geometry: { name: "internvl" } }),
  });
  const grid = gridOf(labelSet);
  assertEquals(grid.tiles.filter((t) => isSecondaryTile(t, grid)).map((t) => t.kind), [
    "thumbnail",
  ]);
  const png = drawOverlay(image.image, labelSet, { fontSize: 16 });
  const legendX = 900 + 10;
  const whole = await inkIn(png, 0, 0, 1, 1);
  // the canvas is wider than the image (legend) and taller (the thumbnail view below)
  assert(whole.width >= 900 + 384, `${whole.width}`);
  assert(whole.height >= 500 + 250, `${whole.height}`);
  // legend text is there, in 16 px lines
  const legend = await inkIn(png, legendX, 20, 300, 16 * 1.45 * 5);
  assert(legend.ink > 0.02, `legend ink ${legend.ink}`);
  // the thumbnail view is drawn (tinted / dimmed cells, not blank)
  const thumb = await inkIn(png, 10, 500 + 40, 400, 200);
  assert(thumb.ink > 0.2, `thumbnail ink ${thumb.ink}`);
});

Deno.test("overlay: one-tile geometry has no extra views; the legend lists labeled words", async () => {
  const tokenizer = await getTokenizer("qwen2");
  const { labelSet, image } = await labelImage({
    bytes: page.png,
    source: "render",
    words: page.words,
    tokenizer,
    options: LabelOptionsSchema.parse({}),
  });
  const png = drawOverlay(image.image, labelSet);
  const { width, height } = await inkIn(png, 0, 0, 1, 1);
  assertEquals(height, 500);
  assert(width > 900);
});
