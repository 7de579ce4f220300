/**
 * `POST /v1/label` with `layout: "sequence"`, and user-given names and sizes that must be
 * refused with a 4xx before any work (prototype names, huge pixel bounds and grids).
 */
import { assert, assertEquals, assertLess } from "@std/assert";
import { createServerApp } from "../server.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { encodeBase64 } from "../../lib/util/base64.ts";
import { IGNORE_INDEX } from "../../lib/layout/mod.ts";

const page = renderPage({ seed: 5, width: 448, height: 280, fontSize: 24 });
const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

/** The label function as the server mounts it (with the project's error mapping). */
const labelApp = () => createServerApp({ functions: ["label"] });

Deno.test("layout 'sequence': input ids and labels of equal length, vision labels at the image", async () => {
  const { app, close } = labelApp();
  try {
    const res = await app.request(
      "/v1/label",
      json({
        image: encodeBase64(page.png),
        source: "boxes",
        words: page.words,
        geometry: { name: "internvl3" },
        layout: "sequence",
        messages: [
          { role: "user", content: "<image>\nRead the page." },
          { role: "assistant", content: page.words.map((w) => w.text).join(" ") },
        ],
      }),
    );
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body).slice(0, 300));
    const item = body.items[0];
    const s = item.sequence as {
      family: string;
      inputIds: number[];
      labels: number[];
      visualPositions: number[];
    };
    assertEquals(s.family, "internvl");
    assertEquals(s.inputIds.length, s.labels.length);
    assertEquals(s.visualPositions.length, item.labelSet.geometry.tokens);
    assertEquals(s.visualPositions.map((p) => s.labels[p]), item.labelSet.tokens.label);
    assertEquals(item.labelSet.tokenizer.name, "qwen2"); // the preset's default tokenizer
    // the prompt before the image is unsupervised, the answer ends supervised
    assertEquals(s.labels[0], IGNORE_INDEX);
    assertEquals(s.labels.at(-2), s.inputIds.at(-2));
  } finally {
    await close();
  }
});

Deno.test("layout 'sequence': missing messages, mismatched markers and no chat format are 400s", async () => {
  const { app, close } = labelApp();
  const base = { image: encodeBase64(page.png), source: "boxes", words: page.words };
  const cases: Array<[string, unknown, string]> = [
    ["no messages", { ...base, layout: "sequence" }, "needs 'messages'"],
    [
      "messages without layout",
      { ...base, messages: [{ role: "user", content: "<image>" }] },
      "only for layout 'sequence'",
    ],
    [
      "two markers, one image",
      {
        ...base,
        layout: "sequence",
        messages: [{ role: "user", content: "<image><image>" }, {
          role: "assistant",
          content: "x",
        }],
      },
      "2 '<image>' markers but 1 images",
    ],
    [
      "custom geometry",
      {
        ...base,
        tokenizer: "qwen2",
        geometry: {
          name: "custom",
          patchSize: 14,
          resize: { mode: "fixed", width: 28, height: 28 },
        },
        layout: "sequence",
        messages: [{ role: "user", content: "<image>" }, { role: "assistant", content: "x" }],
      },
      "no model chat format",
    ],
  ];
  try {
    for (const [what, body, msg] of cases) {
      const res = await app.request("/v1/label", json(body));
      const b = await res.json();
      assertEquals(res.status, 400, `${what}: ${JSON.stringify(b)}`);
      assert(b.error.message.includes(msg), `${what}: ${b.error.message}`);
    }
  } finally {
    await close();
  }
});

Deno.test("names like hasOwnProperty or __proto__ are 400s naming the value, never 500s", async () => {
  const { app, close } = labelApp();
  try {
    for (const name of ["hasOwnProperty", "valueOf", "constructor", "__proto__", "toString"]) {
      const t = await app.request(
        "/v1/label",
        json({ image: encodeBase64(page.png), source: "boxes", words: [], tokenizer: name }),
      );
      const tb = await t.json();
      assertEquals([t.status, tb.error.code], [400, "unknown_tokenizer"], name);
      assert(tb.error.message.includes(`'${name}'`), tb.error.message);
      const g = await app.request(
        "/v1/label",
        json({ image: encodeBase64(page.png), source: "boxes", words: [], geometry: { name } }),
      );
      assertEquals(g.status, 400, `geometry ${name}: ${await g.text()}`);
    }
  } finally {
    await close();
  }
});

Deno.test("geometry bounds: huge pixel bounds, sizes and grids are refused fast with the limit", async () => {
  const { app, close } = labelApp();
  const cases: Array<[string, unknown, string]> = [
    ["maxPixels 2e10", { name: "qwen2-vl", maxPixels: 2e10 }, "'maxPixels' must be at most"],
    ["minPixels 2e10", { name: "qwen3-vl", minPixels: 2e10 }, "'minPixels' must be at most"],
    [
      "fixed 100000x100000",
      { name: "custom", patchSize: 14, resize: { mode: "fixed", width: 100000, height: 100000 } },
      "'resize.width' must be at most",
    ],
    [
      "pad-square 30000, 1 px cells: 9e8 tokens",
      { name: "custom", patchSize: 1, resize: { mode: "pad-square", size: 30000 } },
      "'resize' must be at most",
    ],
    [
      "smart resize to 2^26 px with 1 px cells: a 2^26-token grid",
      {
        name: "custom",
        patchSize: 1,
        resize: { mode: "smart", minPixels: 1 << 26, maxPixels: 1 << 26 },
      },
      "visual tokens",
    ],
  ];
  try {
    for (const [what, geometry, msg] of cases) {
      const t0 = performance.now();
      const res = await app.request(
        "/v1/label",
        json({ image: encodeBase64(page.png), source: "boxes", words: [], geometry }),
      );
      const ms = performance.now() - t0;
      const b = await res.json();
      assertEquals(
        [res.status, b.error.code],
        [422, "unprocessable"],
        `${what}: ${JSON.stringify(b)}`,
      );
      assert(b.error.message.includes(msg), `${what}: ${b.error.message}`);
      assertLess(ms, 100, `${what} took ${ms} ms`);
    }
    // patchSize above its bound is a schema error naming the field
    const res = await app.request(
      "/v1/label",
      json({
        image: encodeBase64(page.png),
        source: "boxes",
        words: [],
        geometry: { name: "custom", patchSize: 5000, resize: { mode: "pad-square", size: 100 } },
      }),
    );
    const b = await res.json();
    assertEquals(res.status, 400);
    assert(JSON.stringify(b.error.issues).includes("patchSize"));
  } finally {
    await close();
  }
});
