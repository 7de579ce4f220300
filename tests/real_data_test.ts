/**
 * Real data end to end, on files nobody here wrote: a Debian documentation PDF (its text layer),
 * the same PDF's pages rasterized as a "scan" (OCR), and a real screenshot (OCR) →
 * `deno task label --dataset` → `deno task train` 5 steps of `tiny` on the three datasets mixed →
 * `deno task eval` on a QA file for those pages → `deno task data export --geometry qwen2-vl
 * --tokenizer qwen2`, whose vision labels equal `POST /v1/label`'s for the same page.
 */
import { assert, assertEquals } from "@std/assert";
import { join } from "node:path";
import { main as label } from "../functions/label/cli.ts";
import { main as trainCli } from "../functions/train/cli.ts";
import { main as evalCli } from "../functions/eval/cli.ts";
import { main as data } from "../functions/data/cli.ts";
import { createServerApp } from "../functions/server.ts";
import { ChatLineSchema, readDataset } from "../lib/data/mod.ts";
import { rasterizePdf } from "../lib/pdf/mod.ts";
import { readEvaluation, readMetrics } from "../lib/runs/mod.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const PDF = join(FIXTURES, "pdf", "shared-mime-info-spec.pdf");
const SCREENSHOT = join(FIXTURES, "real", "kcachegrind_xtree.png");

Deno.test("real data: label → dataset → train → eval → export, labels equal POST /v1/label's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-real-" });
  try {
    // a two-page cut of the PDF keeps the test short; its pages also become the "scan"
    const pdfBytes = await Deno.readFile(PDF);
    const pages = await rasterizePdf(pdfBytes, { dpi: 100, lastPage: 2 });
    await Deno.mkdir(join(dir, "scan"));
    for (const p of pages) await Deno.writeFile(join(dir, "scan", `page-${p.page}.png`), p.png);
    await Deno.copyFile(SCREENSHOT, join(dir, "screenshot.png"));

    // 1. label → datasets (the PDF's text layer; OCR of the scan and of the screenshot)
    const ds = (name: string) => join(dir, "data", name);
    assertEquals(
      await label([
        PDF,
        "--source",
        "pdf",
        "--dpi",
        "100",
        "--out",
        join(dir, "l-pdf"),
        "--dataset",
        ds("pdf"),
      ]),
      0,
    );
    assertEquals(
      await label([
        join(dir, "scan"),
        join(dir, "screenshot.png"),
        "--source",
        "ocr",
        "--dpi",
        "100",
        "--out",
        join(dir, "l-ocr"),
        "--dataset",
        ds("ocr"),
        "--concurrency",
        "2",
      ]),
      0,
    );
    const pdfDs = await readDataset(ds("pdf"));
    assertEquals(pdfDs.items.length, 17); // one item per page, page images kept
    assertEquals([pdfDs.items[0]!.page, pdfDs.items[0]!.source.kind], [1, "pdf"]);
    await Deno.stat(join(ds("pdf"), pdfDs.items[0]!.image));
    const ocrDs = await readDataset(ds("ocr"));
    assertEquals(ocrDs.items.map((i) => i.id).sort(), ["page-1", "page-2", "screenshot"]);
    for (const it of ocrDs.items) {
      assert(it.words.length >= 10, `${it.id}: ${it.words.length} OCR words`);
      assert(it.source.engine, "the OCR engine is recorded");
    }
    // the scan's OCR words agree with the text layer's on the title page
    const textWords = new Set(pdfDs.items[0]!.words.map((w) => w.text.toLowerCase()));
    const scanWords = ocrDs.items.find((i) => i.id === "page-1")!.words.map((w) =>
      w.text.toLowerCase()
    );
    const found = scanWords.filter((w) => textWords.has(w)).length / scanWords.length;
    assert(found > 0.6, `scan words found in the text layer: ${found}`);

    // 2. train 5 steps of tiny on the datasets mixed (images of any size fitted to 56 px)
    const config = join(dir, "mix.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        name: "real",
        outDir: join(dir, "runs"),
        model: "tiny",
        steps: 5,
        batchSize: 2,
        checkpointEvery: 5,
        backend: "wasm",
        data: {
          task: "mix",
          mix: [{ path: ds("pdf"), weight: 2 }, { path: ds("ocr"), weight: 1 }],
        },
      }),
    );
    assertEquals(await trainCli(["--config", config, "--quiet"]), 0);
    const runDir = join(dir, "runs", "real");
    const metrics = (await readMetrics(runDir))!;
    assertEquals(metrics.length, 5);
    assert(
      metrics.every((m) => Number.isFinite(m.loss) && m.visionLoss > 0),
      "vision labels came from the pages",
    );

    // 3. eval on a QA file for those pages (generic JSONL: image, question, answers, metric)
    const first = (i: number) => pdfDs.items[i]!.words[0]!.text;
    await Deno.writeTextFile(
      join(dir, "qa.jsonl"),
      [0, 1].map((i) =>
        JSON.stringify({
          id: `p${i + 1}`,
          image: `scan/page-${i + 1}.png`,
          question: "What is the first word on the page?",
          answers: [first(i)],
          metric: "anls",
        })
      ).join("\n") + "\n",
    );
    assertEquals(
      await evalCli([
        "eval",
        "--checkpoint",
        runDir,
        "--suites",
        `file:${join(dir, "qa.jsonl")}`,
        "--n",
        "2",
      ]),
      0,
    );
    const ev = (await readEvaluation(runDir, 5))!;
    assertEquals([ev.suites[0]!.metric, ev.suites[0]!.n, ev.suites[0]!.source?.kind], [
      "anls",
      2,
      "file",
    ]);

    // 4. export for Qwen2-VL; the labels equal the HTTP function's for the same page
    const out = join(dir, "export", "pdf.jsonl");
    assertEquals(
      await data([
        "export",
        "--in",
        ds("pdf"),
        "--out",
        out,
        "--geometry",
        "qwen2-vl",
        "--tokenizer",
        "qwen2",
      ]),
      0,
    );
    // the PDF's pages have words but no questions yet: nothing to export
    assertEquals((await Deno.readTextFile(out)).trim(), "");
    // so attach the QA file's questions: a messages + images file, the pages' text-layer words
    // as boxes files beside the images (what `data import --words boxes` reads)
    const chat = join(dir, "chat.jsonl");
    await Deno.mkdir(join(dir, "words"));
    for (const i of [0, 1]) {
      // the page's text-layer words as a boxes file beside the image copy
      await Deno.copyFile(join(ds("pdf"), pdfDs.items[i]!.image), join(dir, "words", `p${i}.png`));
      await Deno.writeTextFile(
        join(dir, "words", `p${i}.boxes.json`),
        JSON.stringify(pdfDs.items[i]!.words),
      );
    }
    await Deno.writeTextFile(
      chat,
      [0, 1].map((i) =>
        JSON.stringify({
          messages: [
            { role: "user", content: "<image>What is the first word on the page?" },
            { role: "assistant", content: first(i) },
          ],
          images: [`words/p${i}.png`],
        })
      ).join("\n") + "\n",
    );
    assertEquals(await data(["import", chat, "--out", ds("qa"), "--words", "boxes"]), 0);
    assertEquals(
      await data([
        "export",
        "--in",
        ds("qa"),
        "--out",
        out,
        "--geometry",
        "qwen2-vl",
        "--tokenizer",
        "qwen2",
      ]),
      0,
    );
    const exported = (await Deno.readTextFile(out)).trim().split("\n").map((l) =>
      ChatLineSchema.parse(JSON.parse(l))
    );
    assertEquals(exported.length, 2);
    const { app, close } = createServerApp({ functions: ["label"], dataRoot: join(dir, "root") });
    try {
      const res = await app.request("/v1/label", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          image: encodeBase64(pdfBytes),
          source: "pdf",
          dpi: 100,
          geometry: { name: "qwen2-vl" },
          tokenizer: "qwen2",
        }),
      });
      assertEquals(res.status, 200);
      const body = await res.json();
      for (const i of [0, 1]) {
        assertEquals(
          exported[i]!.vision_labels[0]!.labels,
          body.items[i].labelSet.tokens.label,
          `page ${i + 1}`,
        );
      }
      // the HTTP function keeps the same upload as a dataset: the same pages and words as the CLI's
      const kept = await app.request("/v1/label", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          image: encodeBase64(pdfBytes),
          source: "pdf",
          dpi: 100,
          dataset: "mime-spec",
        }),
      });
      assertEquals(kept.status, 200);
      assertEquals((await kept.json()).dataset, { path: "datasets/mime-spec", items: 17 });
      const viaHttp = await readDataset(join(dir, "root", "datasets", "mime-spec"));
      assertEquals(viaHttp.items.map((i) => i.words), pdfDs.items.map((i) => i.words));
      const again = await app.request("/v1/label", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          image: encodeBase64(pdfBytes),
          source: "pdf",
          dataset: "mime-spec",
        }),
      });
      assertEquals(again.status, 409);
      await again.body?.cancel();
    } finally {
      await close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
