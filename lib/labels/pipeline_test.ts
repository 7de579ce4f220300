import { assertEquals, assertGreater, assertRejects } from "@std/assert";
import { PDFDocument } from "@napi-rs/canvas";
import { renderPage } from "../render/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { createOcrEngine, nativeTesseractVersion } from "../ocr/mod.ts";
import { readPdf } from "../pdf/mod.ts";
import {
  labelAgreement,
  labelImage,
  LabelInputError,
  LabelOptionsSchema,
  LabelSetSchema,
  serializeLabelSet,
} from "./mod.ts";

const options = LabelOptionsSchema.parse({});
const page = renderPage({ seed: 7, width: 700, height: 400, fontSize: 26 });

Deno.test("render source: a valid, byte-identical label set with real Qwen token ids", async () => {
  const tokenizer = await getTokenizer("qwen2");
  const a = await labelImage({
    bytes: page.png,
    source: "render",
    words: page.words,
    tokenizer,
    options,
  });
  const again = renderPage({ seed: 7, width: 700, height: 400, fontSize: 26 });
  const b = await labelImage({
    bytes: again.png,
    source: "render",
    words: again.words,
    tokenizer,
    options,
  });
  assertEquals(serializeLabelSet(a.labelSet), serializeLabelSet(b.labelSet));
  LabelSetSchema.parse(JSON.parse(serializeLabelSet(a.labelSet)));
  const ls = a.labelSet;
  // 700x400 → smart_resize 700x392 → 25 x 14 tokens
  assertEquals(ls.geometry.tokens, 25 * 14);
  assertEquals(ls.stats.wordsLabeled, ls.stats.words);
  // every label is the id of a piece of the word the token points to
  for (let t = 0; t < ls.geometry.tokens; t++) {
    const wi = ls.tokens.word[t]!;
    if (wi < 0) continue;
    assertEquals(ls.words[wi]!.pieces.some((p) => p.id === ls.tokens.label[t]), true);
  }
});

Deno.test("boxes source: words outside the image are refused; low-confidence words are filtered", async () => {
  const tokenizer = await getTokenizer("qwen2");
  await assertRejects(
    () =>
      labelImage({
        bytes: page.png,
        source: "boxes",
        words: [{ text: "x", box: [900, 10, 950, 30], confidence: 100 }],
        tokenizer,
        options,
      }),
    LabelInputError,
    "outside the 700x400 image",
  );
  const words = [{ text: "kept", box: [10, 10, 80, 40], confidence: 90 }, {
    text: "gone",
    box: [100, 10, 180, 40],
    confidence: 20,
  }] as const;
  const r = await labelImage({
    bytes: page.png,
    source: "boxes",
    words: words.map((w) => ({ ...w, box: [...w.box] as [number, number, number, number] })),
    tokenizer,
    options: { ...options, minConfidence: 50 },
  });
  assertEquals(r.labelSet.words.map((w) => w.text), ["kept"]);
});

for (const engine of ["tesseract.js", "native"] as const) {
  Deno.test({
    name: `ocr source (${engine}): labels agree with the exact ones on a clean page`,
    ignore: engine === "native" && !(await nativeTesseractVersion()),
    fn: async () => {
      const tokenizer = await getTokenizer("qwen2");
      const ocr = await createOcrEngine(engine, { concurrency: 1 });
      try {
        const exact = await labelImage({
          bytes: page.png,
          source: "render",
          words: page.words,
          tokenizer,
          options,
        });
        const read = await labelImage({ bytes: page.png, source: "ocr", tokenizer, options, ocr });
        assertEquals(
          read.labelSet.source.engine?.startsWith(
            engine === "native" ? "tesseract-cli" : "tesseract.js",
          ),
          true,
        );
        assertGreater(read.labelSet.stats.meanConfidence ?? 0, 80);
        assertGreater(labelAgreement(exact.labelSet, read.labelSet).rate, 0.9);
      } finally {
        await ocr.close();
      }
    },
  });
}

Deno.test("pdf source: a born-digital PDF gives word boxes on the page image's pixels", async () => {
  // a one-page 400x200 pt PDF with three words at known places
  const doc = new PDFDocument();
  const ctx = doc.beginPage(400, 200);
  ctx.font = "20px DejaVu Sans";
  ctx.fillStyle = "#000";
  ctx.fillText("Invoice", 20, 50);
  ctx.fillText("total", 200, 50);
  ctx.fillText("42.00", 20, 150);
  doc.endPage();
  const path = await Deno.makeTempFile({ suffix: ".pdf" });
  await Deno.writeFile(path, doc.close());
  try {
    const pages = await readPdf(path, { dpi: 144 });
    assertEquals(pages.length, 1);
    const p = pages[0]!;
    assertEquals(p.words.map((w) => w.text).sort(), ["42.00", "Invoice", "total"]);
    // 144 dpi = 2 px per point: "total" starts at x = 200 pt → 400 px; baseline 50 pt → 100 px
    const total = p.words.find((w) => w.text === "total")!.box;
    assertEquals(Math.abs(total[0] - 400) < 6, true);
    assertEquals(total[1] < 100 && total[3] > 95, true);
    const tokenizer = await getTokenizer("qwen2");
    const r = await labelImage({ bytes: p.png, source: "pdf", words: p.words, tokenizer, options });
    assertEquals([r.labelSet.image.width, r.labelSet.image.height], [800, 400]);
    assertEquals(r.labelSet.stats.wordsLabeled, 3);
  } finally {
    await Deno.remove(path);
  }
});
