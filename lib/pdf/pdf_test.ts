import { assert, assertEquals, assertGreater, assertRejects } from "@std/assert";
import { PDFDocument } from "@napi-rs/canvas";
import {
  parsePdftotextBbox,
  PdfError,
  pdfPageCount,
  popplerVersion,
  rasterizePdf,
  readPdf,
  runCapped,
  wordBoxAgreement,
} from "./mod.ts";
import { MupdfDoc } from "./mupdf.ts";

const FIXTURE = new URL("../../tests/fixtures/pdf/shared-mime-info-spec.pdf", import.meta.url);
const POPPLER = new URL(
  "../../tests/fixtures/pdf/shared-mime-info-spec.p1-3.bbox.html",
  import.meta.url,
);
const fixtureBytes = () => Deno.readFile(FIXTURE);

Deno.test("mupdf word boxes agree with poppler's pdftotext -bbox on a Debian manual (pages 1-3)", async () => {
  const reference = parsePdftotextBbox(await Deno.readTextFile(POPPLER));
  assertEquals(reference.length, 3);
  // 72 dpi: one pixel per point, the unit of pdftotext's boxes
  const pages = await readPdf(await fixtureBytes(), { dpi: 72, lastPage: 3 });
  assertEquals(pages.map((p) => p.page), [1, 2, 3]);
  for (const [i, p] of pages.entries()) {
    const ref = reference[i]!;
    assertEquals([p.width, p.height], [Math.ceil(ref.width), Math.ceil(ref.height)]);
    const a = wordBoxAgreement(ref.words, p.words);
    // measured 0.99 over the 17 pages (bench:pdf); a box off by a word or a line fails this
    assertGreater(a.rate, 0.97, `page ${p.page}: ${a.matched}/${a.reference} words matched`);
    assertGreater(a.meanIoU, 0.85, `page ${p.page}: mean IoU ${a.meanIoU}`);
    assert(Math.abs(a.got - a.reference) <= 0.03 * a.reference, `page ${p.page}: ${a.got} words`);
  }
});

Deno.test("readPdf: boxes follow the dpi, images are PNGs of the page size", async () => {
  const bytes = await fixtureBytes();
  const [p72] = await readPdf(bytes, { dpi: 72, firstPage: 2, lastPage: 2 });
  const [p144] = await readPdf(bytes, { dpi: 144, firstPage: 2, lastPage: 2 });
  assertEquals([p144!.page, p144!.dpi, p144!.engine], [2, 144, "mupdf@1.28.1"]);
  assertEquals(Array.from(p144!.png.subarray(1, 4)), [0x50, 0x4e, 0x47]);
  assert(
    Math.abs(p144!.width - 2 * p72!.width) <= 1 && Math.abs(p144!.height - 2 * p72!.height) <= 1,
  );
  assertEquals(p144!.words.map((w) => w.text), p72!.words.map((w) => w.text));
  for (const [k, w] of p144!.words.entries()) {
    const v = p72!.words[k]!.box;
    for (let c = 0; c < 4; c++) assert(Math.abs(w.box[c]! - 2 * v[c]!) < 0.05, `${w.text}`);
  }
});

Deno.test("rasterizePdf: page images without text; a page cap that names the pages", async () => {
  const bytes = await fixtureBytes();
  assertEquals(await pdfPageCount(bytes), 17);
  const imgs = await rasterizePdf(bytes, { dpi: 50, firstPage: 16, maxPages: 2 });
  assertEquals(imgs.map((p) => p.page), [16, 17]);
  assertEquals("words" in imgs[0]!, false);
  const e = await assertRejects(() => rasterizePdf(bytes, { dpi: 50, maxPages: 5 }), PdfError);
  assertEquals([e.code, e.status], ["too_many_pages", 413]);
  assert(e.message.includes("17 pages") && e.message.includes("cap of 5"), e.message);
  const far = await assertRejects(() => rasterizePdf(bytes, { firstPage: 18 }), PdfError);
  assertEquals([far.code, far.status], ["page_out_of_range", 422]);
  const big = await assertRejects(() => readPdf(bytes, { dpi: 600, maxPixels: 1e6 }), PdfError);
  assertEquals([big.code, big.status], ["page_too_large", 413]);
});

Deno.test("readPdf: encrypted, corrupt and non-PDF inputs are PdfErrors with 4xx statuses", async () => {
  // an encrypted copy of a one-page PDF, written by MuPDF itself
  const doc = new PDFDocument();
  doc.beginPage(200, 100).fillText("secret", 20, 50);
  doc.endPage();
  const mupdf = await import("mupdf");
  const plain = new mupdf.PDFDocument(new Uint8Array(doc.close()));
  const encrypted = plain.saveToBuffer("encrypt=aes-256,user-password=pw,owner-password=pw")
    .asUint8Array().slice();
  plain.destroy();
  const enc = await assertRejects(() => readPdf(encrypted), PdfError);
  assertEquals([enc.code, enc.status], ["encrypted", 422]);

  const garbage = new TextEncoder().encode("%PDF-1.7\n" + "\u0001garbage ".repeat(200));
  const bad = await assertRejects(() => readPdf(garbage), PdfError);
  assertEquals(bad.status >= 400 && bad.status < 500, true, `${bad.code} ${bad.status}`);

  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const notPdf = await assertRejects(() => readPdf(png), PdfError);
  assertEquals([notPdf.code, notPdf.status], ["not_pdf", 415]);
});

Deno.test("runCapped: a child printing a million stderr lines keeps 8 KiB of them", async () => {
  const script =
    "const l = new TextEncoder().encode('Syntax Error: bad object\\n'.repeat(10000));" +
    "for (let i = 0; i < 100; i++) Deno.stderr.writeSync(l); console.log('done');";
  const out = await runCapped(Deno.execPath(), ["eval", script]);
  assertEquals(out.success, true);
  assertEquals(out.stderrLines, 1_000_000);
  assertEquals(out.stderrBytes, 25_000_000);
  assertEquals(out.stderr.length, 8192);
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "done");
  // stdout past its cap kills the child instead of growing
  const big = await runCapped(Deno.execPath(), [
    "eval",
    "const b = new Uint8Array(1 << 20); for (;;) Deno.stdout.writeSync(b);",
  ], { maxStdout: 4 << 20 });
  assertEquals([big.success, big.stdoutOverflow, big.stdout.length], [false, true, 0]);
});

Deno.test({
  name: "engine poppler (when installed) reads the same words as its committed output",
  ignore: !(await popplerVersion()),
  fn: async () => {
    const reference = parsePdftotextBbox(await Deno.readTextFile(POPPLER));
    const pages = await readPdf(FIXTURE.pathname, { dpi: 72, lastPage: 3, engine: "poppler" });
    // the engine rounds pixel boxes to 0.01
    const round = (r: (typeof reference)[number]) =>
      r.words.map((w) => ({ ...w, box: w.box.map((v) => Math.round(v * 100) / 100) }));
    assertEquals(pages.map((p) => p.words), reference.map(round));
    assert(pages[0]!.engine.startsWith("poppler@"));
  },
});

/** A one-page PDF whose content stream has `n` unknown operators (one error line each in poppler). */
function floodPdf(n: number): Uint8Array {
  const content = "BT /F1 12 Tf 10 10 Td " + "(x) Tj zz ".repeat(n) + "ET";
  const objs = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R " +
    "/Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  ];
  let pdf = "%PDF-1.4\n";
  const offsets: number[] = [];
  objs.forEach((o, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n` +
    offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("") +
    `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return new TextEncoder().encode(pdf);
}

Deno.test("a content stream of 100 000 errors: MuPDF reads it, its warnings counted not kept", async () => {
  const bytes = floodPdf(100_000);
  const [page] = await readPdf(bytes, { dpi: 72 });
  // MuPDF draws the operators before it gives up on the stream: a run of "x" at one place
  assert(page!.words.length >= 1 && page!.words.every((w) => /^x+$/.test(w.text)));
  const doc = await MupdfDoc.open(bytes);
  try {
    doc.words(1, 72);
    assertGreater(doc.warnings.count, 0);
    assert(doc.warnings.first.length <= 5);
    assert(doc.warnings.first[0]!.includes("unknown keyword"), doc.warnings.first[0]);
  } finally {
    doc.close();
  }
});

Deno.test({
  name: "engine poppler (when installed): 100 000 error lines on stderr do not fail or pile up",
  ignore: !(await popplerVersion()),
  fn: async () => {
    const [page] = await readPdf(floodPdf(100_000), { dpi: 72, engine: "poppler" });
    assertEquals(page!.page, 1);
    assertGreater(page!.words.length, 0);
  },
});
