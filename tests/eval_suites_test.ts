/**
 * Benchmark files as evaluation suites, end to end: parquet and JSONL files in lmms-eval's
 * TextVQA / DocVQA / ChartQA layouts, written here, evaluated through `deno task eval` (the CLI's
 * main) and `POST /v1/eval/jobs`; a bad file fails its job with the row named while the server
 * keeps serving.
 */
import { assert, assertEquals } from "@std/assert";
import { join } from "node:path";
import { createServerApp } from "../functions/server.ts";
import { main as evalCli } from "../functions/eval/cli.ts";
import { generateSample } from "../lib/data/mod.ts";
import { METRIC_VERSIONS } from "../lib/metrics/mod.ts";
import { readEvaluation } from "../lib/runs/mod.ts";
import { imageStruct, int, list, str, writeParquet } from "./_parquet.ts";

const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

async function page(k: number): Promise<{ png: Uint8Array; words: string[] }> {
  const g = await generateSample("text-reading", k, 112);
  return { png: new Uint8Array(g.canvas.toBuffer("image/png")), words: g.words.map((w) => w.text) };
}

Deno.test("eval suites: TextVQA and ChartQA parquet, DocVQA JSONL through deno task eval and the eval job API; a bad file fails its job cleanly", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-evalfiles-" });
  const { app, close } = createServerApp({ functions: ["train", "eval"], dataRoot });
  try {
    const t = await (await app.request(
      "/v1/train/jobs",
      json({ model: "tiny", steps: 2, batchSize: 2, checkpointEvery: 2, backend: "wasm" }),
    )).json();
    assert((await (await app.request(`/v1/train/jobs/${t.id}/events`)).text()).includes(
      "event: succeeded",
    ));
    const pages = await Promise.all([0, 1, 2].map(page));
    const bench = join(dataRoot, "bench");
    await Deno.mkdir(join(bench, "images"), { recursive: true });
    await writeParquet(join(bench, "textvqa_val.parquet"), {
      question_id: [int("question_id"), [1n, 2n, 3n]],
      question: [str("question"), pages.map(() => "what is the first word?")],
      image: [imageStruct("image"), pages.map((p) => ({ bytes: p.png, path: null }))],
      answers: [list("answers"), pages.map((p) => Array(10).fill(p.words[0]))],
      ocr_tokens: [list("ocr_tokens"), pages.map((p) => p.words)],
    });
    await writeParquet(join(bench, "chartqa_test.parquet"), {
      query: [str("query"), ["how many?", "how much?"]],
      image: [imageStruct("image"), pages.slice(0, 2).map((p) => ({ bytes: p.png, path: null }))],
      label: [list("label"), [["12"], ["3.5"]]],
    });
    for (const [k, p] of pages.entries()) {
      await Deno.writeFile(join(bench, "images", `${k}.png`), p.png);
    }
    await Deno.writeTextFile(
      join(bench, "docvqa_val.jsonl"),
      pages.map((p, k) =>
        JSON.stringify({
          questionId: k,
          question: "What is written first?",
          image: `images/${k}.png`,
          answers: [p.words[0], p.words[0]!.toUpperCase()],
        })
      ).join("\n") + "\n",
    );
    const files = ["textvqa_val.parquet", "docvqa_val.jsonl", "chartqa_test.parquet"];
    const expected = [["vqa", 3], ["anls", 3], ["relaxed", 2]];

    // the CLI on the run folder
    const runDir = join(dataRoot, t.runDir);
    const rc = await evalCli([
      "eval",
      "--checkpoint",
      runDir,
      "--suites",
      files.map((f) => `file:${join(bench, f)}`).join(","),
      "--n",
      "5",
    ]);
    assertEquals(rc, 0);
    const stored = (await readEvaluation(runDir, 2))!;
    assertEquals(stored.suites.map((s) => [s.metric, s.n]), expected);
    for (const s of stored.suites) {
      assertEquals(s.metricVersion, METRIC_VERSIONS[s.metric as keyof typeof METRIC_VERSIONS]);
      assertEquals(s.source?.kind, "file");
      assert(s.id.includes(s.source!.sha256!.slice(0, 12)), s.id);
      assert(s.items.every((i) => i.score >= 0 && i.score <= 1));
    }
    assertEquals(stored.suites[0]!.items[0]!.answers?.length, 10);
    assertEquals(stored.suites[1]!.source?.layout, "docvqa");

    // the same files through the job API, paths relative to the data root
    const res = await app.request(
      "/v1/eval/jobs",
      json({ run: t.runDir, suites: files.map((f) => `file:bench/${f}`), n: 5 }),
    );
    assertEquals(res.status, 202);
    const e = await res.json();
    assert((await (await app.request(`/v1/eval/jobs/${e.id}/events`)).text()).includes(
      "event: succeeded",
    ));
    const result = await (await app.request(`/v1/eval/jobs/${e.id}/result`)).json();
    assertEquals(
      result.suites.map((s: { metric: string; n: number }) => [s.metric, s.n]),
      expected,
    );
    // the same weights and content: the same scores as the CLI's
    assertEquals(
      result.suites.map((s: { score: number }) => s.score),
      stored.suites.map((s) => s.score),
    );

    // bad requests: a path out of the data root, an unknown metric → 400 at once
    for (
      const suites of [["file:../x.parquet"], [`file:bench/${files[0]}#bleu`], ["constructor"]]
    ) {
      const r = await app.request("/v1/eval/jobs", json({ run: t.id, suites }));
      assert([400, 404].includes(r.status), `${suites}: ${r.status}`);
      await r.body?.cancel();
    }
    // a generic file missing its answers column: the job fails naming it; the server keeps serving
    await writeParquet(join(bench, "broken.parquet"), {
      question: [str("question"), ["q"]],
      image: [imageStruct("image"), [{ bytes: pages[0]!.png, path: null }]],
      metric: [str("metric"), ["anls"]],
    });
    const b = await (await app.request(
      "/v1/eval/jobs",
      json({ run: t.id, suites: ["file:bench/broken.parquet"], n: 1 }),
    )).json();
    const events = await (await app.request(`/v1/eval/jobs/${b.id}/events`)).text();
    assert(events.includes("event: failed"), events.slice(-300));
    const failed = await (await app.request(`/v1/eval/jobs/${b.id}`)).json();
    assert(/answer/i.test(failed.error), failed.error);
    assertEquals((await app.request("/healthz")).status, 200);
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});
