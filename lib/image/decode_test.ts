import { assertEquals, assertRejects } from "@std/assert";
import { createCanvas } from "@napi-rs/canvas";
import { decodeImage, ImageError } from "./mod.ts";

const canvas = createCanvas(120, 80);
canvas.getContext("2d").fillRect(10, 10, 50, 30);
const png = new Uint8Array(canvas.toBuffer("image/png"));
const jpg = new Uint8Array(canvas.toBuffer("image/jpeg"));
const webp = new Uint8Array(canvas.toBuffer("image/webp"));

/** A valid-looking PNG header that claims `w × h` pixels, with no pixel data. */
function pngBomb(w: number, h: number): Uint8Array {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  const dv = new DataView(b.buffer);
  dv.setUint32(16, w);
  dv.setUint32(20, h);
  b.set([8, 2, 0, 0, 0], 24);
  return b;
}

Deno.test("decodeImage: PNG, JPEG and WebP decode with size and hash", async () => {
  for (const bytes of [png, jpg, webp]) {
    const img = await decodeImage(bytes);
    assertEquals([img.width, img.height], [120, 80]);
    assertEquals(img.sha256.length, 64);
  }
});

Deno.test("decodeImage: bad input is refused with a code and a status", async () => {
  const cases: Array<[Uint8Array, string, number]> = [
    [new Uint8Array(), "empty_image", 400],
    [new TextEncoder().encode("just some text, not an image"), "unsupported_image", 415],
    [png.subarray(0, Math.floor(png.length / 2)), "corrupt_image", 422],
    [jpg.subarray(0, Math.floor(jpg.length / 2)), "corrupt_image", 422],
    [pngBomb(60_000, 60_000), "image_too_large", 413],
  ];
  for (const [bytes, code, status] of cases) {
    const err = await assertRejects(() => decodeImage(bytes), ImageError);
    assertEquals([err.code, err.status], [code, status], err.message);
  }
  // the limit is configurable
  const err = await assertRejects(() => decodeImage(png, { maxPixels: 1000 }), ImageError);
  assertEquals(err.code, "image_too_large");
});
