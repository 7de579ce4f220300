import { assert, assertEquals, assertGreater } from "@std/assert";
import { fileURLToPath } from "node:url";
import { createCanvas, loadImage } from "@napi-rs/canvas";
import {
  createOcrEngine,
  finishOcrWords,
  keepOcrWord,
  type LineWord,
  ocrScale,
  parseTesseractTsv,
  type ReadSettings,
  textScale,
} from "./mod.ts";
import { labelAgreement, labelImage, LabelOptionsSchema } from "../labels/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { readPdf } from "../pdf/mod.ts";

const settings: ReadSettings = {
  upscaleToDpi: 300,
  smallTextHeight: 15,
  maxUpscale: 3,
  maxUpscaledPixels: 40_000_000,
  boxes: "line",
  minConfidence: 30,
  minLineConfidence: 70,
  minSymbolConfidence: 90,
};
const options = LabelOptionsSchema.parse({});

Deno.test("ocrScale: upscale to 300 dpi by the hint, at most 3x and under the pixel cap", () => {
  assertEquals(ocrScale(undefined, 1e6, settings), 1);
  assertEquals(ocrScale(300, 1e6, settings), 1);
  assertEquals(ocrScale(150, 1e6, settings), 2);
  assertEquals(ocrScale(72, 1e6, settings), 3);
  assertEquals(ocrScale(100, 10e6, settings), 2); // sqrt(40e6 / 10e6)
});

Deno.test("textScale: images of unknown dpi are read again larger only when their text is small", () => {
  const words = (h: number, n = 7, confidence = 90): LineWord[] =>
    Array.from(
      { length: n },
      (_, i) => ({ text: "w", box: [i * 20, 0, i * 20 + 15, h], confidence, line: 0 }),
    );
  assertEquals(textScale(words(20), 1e6, settings), 1); // big enough
  assertEquals(textScale(words(10), 1e6, settings), 3); // 30 / 10
  assertEquals(textScale(words(5), 1e6, settings), 3); // capped at maxUpscale
  assertEquals(textScale(words(14), 1e6, settings), 30 / 14);
  assertEquals(textScale(words(10, 4), 1e6, settings), 1); // too few words to tell
  assertEquals(textScale(words(10, 7, 40), 1e6, settings), 1); // only noise
  assertEquals(textScale(words(10), 20e6, settings), Math.sqrt(2)); // pixel cap
});

Deno.test("finishOcrWords: boxes mapped back by the scale; line mode spans the line; noise dropped", () => {
  const words: LineWord[] = [
    { text: "Type", box: [20, 10, 80, 40], confidence: 95, line: 1 }, // T and y: full height
    { text: "ace", box: [100, 20, 160, 34], confidence: 92, line: 1 }, // x-height only
    { text: "|", box: [170, 5, 174, 45], confidence: 80, line: 1 }, // an edge read as a bar
    { text: "REE", box: [10, 100, 60, 120], confidence: 23, line: 2 },
  ];
  assertEquals(finishOcrWords(words, 2, settings), [
    { text: "Type", box: [10, 5, 40, 20], confidence: 95 },
    { text: "ace", box: [50, 5, 80, 20], confidence: 92 },
  ]);
  assertEquals(finishOcrWords(words, 2, { ...settings, boxes: "ink" })[1]!.box, [50, 10, 80, 17]);
  assertEquals(keepOcrWord({ text: "“", confidence: 89 }, settings), false);
  assertEquals(keepOcrWord({ text: "—", confidence: 95 }, settings), true);
  assertEquals(keepOcrWord({ text: "中文", confidence: 75 }, settings), true);
});

Deno.test("parseTesseractTsv: words numbered by their block/paragraph/line", () => {
  const head =
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext";
  const row = (b: number, l: number, w: number, x: number, text: string) =>
    `5\t1\t${b}\t1\t${l}\t${w}\t${x}\t10\t20\t12\t91.5\t${text}`;
  const words = parseTesseractTsv(
    [head, row(1, 1, 1, 0, "a"), row(1, 1, 2, 30, "b"), row(1, 2, 1, 0, "c"), row(2, 1, 1, 0, "d")]
      .join("\n"),
  );
  assertEquals(words.map((w) => [w.text, w.line]), [["a", 0], ["b", 0], ["c", 1], ["d", 2]]);
  assertEquals(words[1]!.box, [30, 10, 50, 22]);
});

Deno.test("a photo without text gets no words and no labels; the engine is recorded", async () => {
  // a film still shipped as a test image in the npm package autocannon (MIT), nobody here made it
  const photo = fileURLToPath(
    new URL("./test/j5.jpeg", import.meta.resolve("autocannon").replace(/\/[^/]*$/, "/")),
  );
  const bytes = await Deno.readFile(photo);
  const tokenizer = await getTokenizer("qwen2");
  const ocr = await createOcrEngine("tesseract.js", { concurrency: 1 });
  const raw = await createOcrEngine("tesseract.js", {
    concurrency: 1,
    minConfidence: 0,
    minLineConfidence: 0,
    minSymbolConfidence: 0,
  });
  try {
    const r = await labelImage({ bytes, source: "ocr", tokenizer, options, ocr });
    assertEquals(r.labelSet.words.map((w) => w.text), []);
    assertEquals(r.labelSet.stats.labeled, 0);
    assertEquals(r.labelSet.source, { kind: "ocr", engine: ocr.name });
    assert(ocr.name.startsWith("tesseract.js@7.0.0 (eng, upscale to 300 dpi"), ocr.name);
    assert(ocr.name.includes("line mean >= 70"), ocr.name);
    // without the floors the same photo reads as a dozen "words"
    const noise = await labelImage({ bytes, source: "ocr", tokenizer, options, ocr: raw });
    assertGreater(noise.labelSet.words.length, 10);
  } finally {
    await ocr.close();
    await raw.close();
  }
});

Deno.test("OCR labels of a real born-digital page at 100 dpi agree with its text layer's", async () => {
  // the top half of page 2 of a Debian manual, drawn at 100 dpi; the PDF's words are the truth
  const [page] = await readPdf(
    new URL("../../tests/fixtures/pdf/shared-mime-info-spec.pdf", import.meta.url).pathname,
    { dpi: 100, firstPage: 2, lastPage: 2 },
  );
  const img = await loadImage(page!.png);
  const h = Math.round(img.height / 2);
  const c = createCanvas(img.width, h);
  c.getContext("2d").drawImage(img, 0, 0);
  const png = new Uint8Array(c.toBuffer("image/png"));
  const words = page!.words.filter((w) => w.box[3] <= h);
  const tokenizer = await getTokenizer("qwen2");
  const truth = await labelImage({ bytes: png, source: "pdf", words, tokenizer, options });
  const ocr = await createOcrEngine("tesseract.js", { concurrency: 1 });
  try {
    const read = await labelImage({ bytes: png, source: "ocr", tokenizer, options, ocr, dpi: 100 });
    const a = labelAgreement(truth.labelSet, read.labelSet);
    console.log(
      `real page, 100 dpi: OCR/text-layer label agreement ${a.rate.toFixed(4)} (${a.total} cells)`,
    );
    // 0.80 with the former settings (no upscale, ink boxes); bench:label prints both
    assertGreater(a.rate, 0.85);
  } finally {
    await ocr.close();
  }
});
