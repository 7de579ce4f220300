import { assert, assertEquals, assertGreater } from "@std/assert";
import { PDFDocument } from "@napi-rs/canvas";
import { createServerApp } from "../server.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { LabelSetSchema } from "../../lib/labels/mod.ts";
import { decodeBase64, encodeBase64 } from "../../lib/util/base64.ts";

const page = renderPage({ seed: 11, width: 560, height: 336, fontSize: 24 });

function form(bytes: Uint8Array, options?: unknown, name = "page.png"): FormData {
  const fd = new FormData();
  fd.append("image", new File([bytes as Uint8Array<ArrayBuffer>], name));
  if (options !== undefined) {
    fd.append("options", typeof options === "string" ? options : JSON.stringify(options));
  }
  return fd;
}
const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

/** A PNG header claiming a huge size with no pixel data behind it. */
function pngBomb(w: number, h: number): Uint8Array {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  new DataView(b.buffer).setUint32(16, w);
  new DataView(b.buffer).setUint32(20, h);
  b.set([8, 2, 0, 0, 0], 24);
  return b;
}

Deno.test("POST /v1/label: multipart image with OCR → a valid label set", async () => {
  const { app, close } = createServerApp({ functions: ["label"], ocrConcurrency: 1 });
  try {
    const res = await app.request("/v1/label", {
      method: "POST",
      body: form(page.png, { source: "ocr" }),
    });
    assertEquals(res.status, 200);
    const body = await res.json();
    const ls = LabelSetSchema.parse(body.items[0].labelSet);
    assertEquals(ls.geometry.spec.name, "qwen2-vl");
    assertEquals(ls.source.kind, "ocr");
    assertGreater(ls.stats.labeledFraction, 0.5);
    assertGreater(body.timing.ocrMs, 0);
  } finally {
    await close();
  }
});

Deno.test("POST /v1/label: JSON with boxes, another geometry, overlay PNG", async () => {
  const { app, close } = createServerApp({ functions: ["label"] });
  try {
    const res = await app.request(
      "/v1/label",
      json({
        image: encodeBase64(page.png),
        source: "boxes",
        words: page.words,
        geometry: { name: "llava-1.5" },
        policy: { split: "first" },
        overlay: true,
      }),
    );
    assertEquals(res.status, 200);
    const body = await res.json();
    const ls = LabelSetSchema.parse(body.items[0].labelSet);
    assertEquals(ls.geometry.tokens, 576);
    assertEquals(ls.policy.split, "first");
    assertEquals(ls.stats.wordsLabeled, page.words.length);
    const overlay = decodeBase64(body.items[0].overlay);
    assertEquals([...overlay.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
  } finally {
    await close();
  }
});

Deno.test("POST /v1/label: a PDF gives one label set per page", async () => {
  const doc = new PDFDocument();
  for (const text of ["first page words", "second page here"]) {
    const ctx = doc.beginPage(300, 150);
    ctx.font = "18px DejaVu Sans";
    ctx.fillText(text, 20, 60);
    doc.endPage();
  }
  const { app, close } = createServerApp({ functions: ["label"] });
  try {
    const res = await app.request("/v1/label", {
      method: "POST",
      body: form(new Uint8Array(doc.close()), { source: "pdf", dpi: 100 }, "d.pdf"),
    });
    assertEquals(res.status, 200);
    const body = await res.json();
    assertEquals(body.items.map((i: { page: number }) => i.page), [1, 2]);
    assertEquals(body.items[1].labelSet.words.map((w: { text: string }) => w.text), [
      "second",
      "page",
      "here",
    ]);
  } finally {
    await close();
  }
});

Deno.test("GET /v1/geometries, /v1/tokenizers, /healthz, /readyz, /openapi.json", async () => {
  const { app, close } = createServerApp({ functions: ["label"] });
  try {
    const g = await (await app.request("/v1/geometries")).json();
    assertEquals(g.geometries.map((x: { name: string }) => x.name), [
      "qwen2-vl",
      "qwen2.5-vl",
      "qwen3-vl",
      "llava-1.5",
      "llava-next",
      "llava-onevision",
      "idefics3",
      "smolvlm",
      "gemma3",
      "internvl",
      "internvl2.5",
      "internvl3",
      "custom",
    ]);
    assertEquals(g.geometries[0].tokenizer, "qwen2");
    assertEquals((await (await app.request("/v1/tokenizers")).json()).tokenizers, [
      "qwen2",
      "llama2",
      "llama3",
      "gemma3",
      "dvsft-small",
    ]);
    assertEquals((await app.request("/healthz")).status, 200);
    assertEquals((await app.request("/readyz")).status, 200);
    const doc = await (await app.request("/openapi.json")).json();
    assert(doc.paths["/v1/label"].post.requestBody.content["multipart/form-data"]);
    assertEquals((await app.request("/docs")).status, 200);
  } finally {
    await close();
  }
});

Deno.test("bad input: each gets a 4xx JSON error naming the problem, and the server keeps serving", async () => {
  const { app, close } = createServerApp({
    functions: ["label"],
    maxBodyBytes: 2_000_000,
    maxPixels: 20_000_000,
  });
  const cases: Array<[string, RequestInit, number, string]> = [
    [
      "non-image bytes",
      { method: "POST", body: form(new TextEncoder().encode("definitely not an image")) },
      415,
      "unsupported_image",
    ],
    [
      "truncated PNG",
      { method: "POST", body: form(page.png.subarray(0, page.png.length >> 1)) },
      422,
      "corrupt_image",
    ],
    ["empty image", { method: "POST", body: form(new Uint8Array()) }, 400, "empty_image"],
    [
      "empty body",
      { method: "POST", headers: { "content-type": "application/json" } },
      400,
      "bad_request",
    ],
    [
      "over the body limit",
      { method: "POST", body: form(new Uint8Array(3_000_000)) },
      413,
      "body_too_large",
    ],
    [
      "decompression bomb",
      { method: "POST", body: form(pngBomb(50_000, 50_000)) },
      413,
      "image_too_large",
    ],
    [
      "unknown geometry",
      { method: "POST", body: form(page.png, { geometry: { name: "gpt-vision" } }) },
      400,
      "invalid_request",
    ],
    [
      "unknown tokenizer",
      { method: "POST", body: form(page.png, { tokenizer: "llama9" }) },
      400,
      "unknown_tokenizer",
    ],
    [
      "negative confidence",
      { method: "POST", body: form(page.png, { minConfidence: -1 }) },
      400,
      "invalid_request",
    ],
    [
      "unknown option",
      { method: "POST", body: form(page.png, { sauce: true }) },
      400,
      "invalid_request",
    ],
    ["options not JSON", { method: "POST", body: form(page.png, "{nope") }, 400, "invalid_request"],
    [
      "boxes without words",
      json({ image: encodeBase64(page.png), source: "boxes" }),
      400,
      "invalid_request",
    ],
    [
      "box outside image",
      json({
        image: encodeBase64(page.png),
        source: "boxes",
        words: [{ text: "x", box: [900, 1, 950, 9] }],
      }),
      400,
      "invalid_input",
    ],
    [
      "inverted box",
      json({
        image: encodeBase64(page.png),
        source: "boxes",
        words: [{ text: "x", box: [50, 1, 10, 9] }],
      }),
      400,
      "invalid_request",
    ],
    ["bad base64", json({ image: "%%%not-base64%%%" }), 400, "invalid_base64"],
    ["wrong type", json({ image: 42 }), 400, "invalid_request"],
    [
      "malformed JSON",
      { method: "POST", body: '{"image": ', headers: { "content-type": "application/json" } },
      400,
      "bad_request",
    ],
    [
      "wrong content type",
      { method: "POST", body: "x", headers: { "content-type": "text/plain" } },
      415,
      "unsupported_media_type",
    ],
    [
      "aspect ratio 250",
      json({
        image: encodeBase64(renderPage({ width: 5000, height: 20, text: "x" }).png),
        source: "boxes",
        words: [],
      }),
      422,
      "unprocessable",
    ],
    [
      "pdf that is not a PDF",
      { method: "POST", body: form(page.png, { source: "pdf" }) },
      415,
      "unsupported_pdf",
    ],
  ];
  try {
    for (const [what, init, status, code] of cases) {
      const res = await app.request("/v1/label", init);
      const body = await res.json();
      assertEquals(
        [res.status, body.error?.code],
        [status, code],
        `${what}: ${JSON.stringify(body)}`,
      );
      assert(typeof body.error.message === "string" && body.error.message.length > 10, what);
      assertEquals((await app.request("/healthz")).status, 200, `healthz after ${what}`);
    }
  } finally {
    await close();
  }
});

Deno.test("OCR queue full → 503 with Retry-After; the accepted request still succeeds", async () => {
  const { app, close } = createServerApp({
    functions: ["label"],
    ocrConcurrency: 1,
    ocrMaxQueue: 0,
  });
  try {
    const responses = await Promise.all(
      [0, 1, 2].map(() =>
        app.request("/v1/label", { method: "POST", body: form(page.png, { source: "ocr" }) })
      ),
    );
    const statuses = responses.map((r) => r.status).sort();
    assertEquals(statuses[0], 200);
    assertEquals(statuses.includes(503), true, String(statuses));
    const busy = responses.find((r) => r.status === 503)!;
    assertEquals(busy.headers.get("retry-after"), "2");
    assertEquals((await busy.json()).error.code, "busy");
    for (const r of responses) if (!r.bodyUsed) await r.text();
  } finally {
    await close();
  }
});

Deno.test("POST /v1/label: encrypted PDF → 422, over the page cap → 413, a scan → OCR per page", async () => {
  const doc = new PDFDocument();
  for (const text of ["Invoice total", "Second page"]) {
    const ctx = doc.beginPage(300, 120);
    ctx.font = "28px DejaVu Sans";
    ctx.fillText(text, 20, 70);
    doc.endPage();
  }
  const pdf = new Uint8Array(doc.close());
  const mupdf = await import("mupdf");
  const plain = new mupdf.PDFDocument(pdf);
  const encrypted = plain.saveToBuffer("encrypt=aes-256,user-password=pw").asUint8Array().slice();
  plain.destroy();
  const { app, close } = createServerApp({
    functions: ["label"],
    maxPdfPages: 1,
    ocrConcurrency: 1,
  });
  try {
    const enc = await app.request("/v1/label", {
      method: "POST",
      body: form(encrypted, { source: "pdf" }, "e.pdf"),
    });
    assertEquals([enc.status, (await enc.json()).error.code], [422, "encrypted"]);
    const many = await app.request("/v1/label", {
      method: "POST",
      body: form(pdf, { source: "pdf" }, "d.pdf"),
    });
    const manyBody = await many.json();
    assertEquals([many.status, manyBody.error.code], [413, "too_many_pages"]);
    assert(manyBody.error.message.includes("cap of 1"), manyBody.error.message);
    // the same PDF treated as a scan: its first page drawn and read by OCR
    const one = new PDFDocument();
    const ctx = one.beginPage(300, 120);
    ctx.font = "28px DejaVu Sans";
    ctx.fillText("Invoice total", 20, 70);
    one.endPage();
    const res = await app.request("/v1/label", {
      method: "POST",
      body: form(new Uint8Array(one.close()), { source: "ocr", dpi: 150 }, "scan.pdf"),
    });
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    assertEquals(body.items.length, 1);
    assertEquals(body.items[0].page, 1);
    assertEquals(body.items[0].labelSet.source.kind, "ocr");
    assertEquals(body.items[0].labelSet.words.map((w: { text: string }) => w.text), [
      "Invoice",
      "total",
    ]);
  } finally {
    await close();
  }
});
