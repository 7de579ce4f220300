/**
 * The web app without a browser: every page and asset is served with its type and a CSP that
 * allows nothing but this server; no file asks for anything elsewhere; only named assets are
 * reachable; one log line per request; artifacts carry their content type.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes, assertThrows } from "@std/assert";
import { Hono } from "hono";
import { createWebApp } from "./app.ts";
import { createServerApp } from "../server.ts";
import { contentTypeOf, requestLogger } from "../shared/http.ts";

const STATIC = new URL("./static/", import.meta.url).pathname;

Deno.test("web: pages and assets are served here, with their types and a same-origin CSP", async () => {
  const app = createWebApp();
  for (
    const [path, type] of [
      ["/", "text/html"],
      ["/label", "text/html"],
      ["/runs", "text/html"],
      ["/compare", "text/html"],
      ["/docs", "text/html"],
      ["/docs/init.js", "text/javascript"],
      ["/docs/assets/swagger-ui.css", "text/css"],
      ["/docs/assets/swagger-ui-bundle.js", "text/javascript"],
      ["/web/label.js", "text/javascript"],
      ["/web/style.css", "text/css"],
      ["/web/vendor/pdfjs/pdf.min.mjs", "text/javascript"],
      ["/web/vendor/pdfjs/pdf.worker.min.mjs", "text/javascript"],
    ]
  ) {
    const res = await app.request(path!);
    assertEquals(res.status, 200, path);
    assertStringIncludes(res.headers.get("content-type") ?? "", type!, path);
    assertStringIncludes(res.headers.get("content-security-policy") ?? "", "default-src 'self'");
    await res.body?.cancel();
  }
  const init = await (await app.request("/docs/init.js")).text();
  assertStringIncludes(init, '"/openapi.json"');
  const configs = await (await app.request("/web/configs.json")).json();
  assert(configs.configs.some((c: { file: string }) => c.file === "tiny-dvsft.json"));
});

Deno.test("web: only named files are reachable", async () => {
  const app = createWebApp();
  for (
    const path of ["/docs/assets/package.json", "/web/app.ts", "/web/..%2Fapp.ts", "/web/x.js"]
  ) {
    const res = await app.request(path);
    assertEquals(res.status, 404, path);
    await res.body?.cancel();
  }
});

Deno.test("web: no page or script names another host", async () => {
  for await (const e of Deno.readDir(STATIC)) {
    const text = await Deno.readTextFile(STATIC + e.name);
    const urls = [...text.matchAll(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*/gi)].map((m) =>
      m[0]
    ).filter((u) => u !== "http://www.w3.org/2000/svg");
    assertEquals(urls, [], e.name);
  }
});

Deno.test("request log: one line per request, text or JSON", async () => {
  for (const format of ["text", "json"] as const) {
    const lines: string[] = [];
    const app = new Hono();
    app.use("*", requestLogger(format, (l) => lines.push(l)));
    app.get("/a", (c) => c.text("ok"));
    await app.request("/a");
    await app.request("/missing");
    assertEquals(lines.length, 2);
    if (format === "text") {
      assertMatch(lines[0]!, /^GET \/a 200 [\d.]+ms$/);
      assertMatch(lines[1]!, /^GET \/missing 404 [\d.]+ms$/);
    } else {
      const j = JSON.parse(lines[0]!);
      assertEquals([j.method, j.path, j.status], ["GET", "/a", 200]);
      assert(typeof j.ms === "number" && typeof j.time === "string");
    }
  }
});

Deno.test("artifact content types", () => {
  assertEquals(contentTypeOf("loss.svg"), "image/svg+xml");
  assertEquals(contentTypeOf("eval/scores.PNG"), "image/png");
  assertEquals(contentTypeOf("metrics.jsonl"), "application/x-ndjson");
  assertEquals(contentTypeOf("checkpoints/step-000010/weights.bin"), "application/octet-stream");
});

Deno.test("web: /web/compare.json is lib/eval's report for real runs; bad queries are 400", async () => {
  const fixtures = new URL("../../tests/fixtures/plot/", import.meta.url).pathname;
  const dataRoot = await Deno.makeTempDir();
  try {
    const runs = [
      ["tiny-dvsft-lambda1-next-exact-g4-s0", "train-aaaa-00000001", "eval-aaaa-0000000"],
      ["tiny-sft-lambda0-next-exact-g4-s0", "train-bbbb-00000002", "eval-bbbb-0000000"],
    ];
    const query: string[] = [];
    for (const [fixture, train, evalPrefix] of runs) {
      await Deno.mkdir(`${dataRoot}/runs/${train}`, { recursive: true });
      await Deno.copyFile(
        `${fixtures}${fixture}/metrics.jsonl`,
        `${dataRoot}/runs/${train}/metrics.jsonl`,
      );
      // the run's evaluations where jobs and `deno task eval` store them (lib/runs)
      const ids: string[] = [];
      await Deno.mkdir(`${dataRoot}/runs/${train}/eval`, { recursive: true });
      for (const step of [20, 40, 60]) {
        const file = `step-${String(step).padStart(6, "0")}.json`;
        await Deno.copyFile(
          `${fixtures}${fixture}/eval/${file}`,
          `${dataRoot}/runs/${train}/eval/${file}`,
        );
        ids.push(`${evalPrefix}${step / 20}`);
      }
      query.push(`run=${train}:${ids.join(",")}`);
    }
    const app = createWebApp({ dataRoot });
    const res = await app.request(`/web/compare.json?${query.join("&")}`);
    assertEquals(res.status, 200);
    const body = await res.json();
    assertStringIncludes(body.markdown, "| text-reading | anls | 0.0 | 0.0 | +0.0 [0.0, 0.0] |");
    assertEquals(body.plots.map((p: { name: string }) => p.name), [
      "scores",
      "score-vs-step",
      "text-loss-vs-step",
    ]);
    const secret = await Deno.makeTempDir();
    for (const q of ["", "run=../../etc:eval-aaaa-00000001", `run=train-aaaa-00000001:${secret}`]) {
      const r = await app.request(`/web/compare.json?${q}`);
      assertEquals(r.status, 400, q);
      await r.body?.cancel();
    }
    const missing = await app.request(
      "/web/compare.json?run=train-cccc-00000009",
    );
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
    await Deno.remove(secret);
  } finally {
    await Deno.remove(dataRoot, { recursive: true });
  }
});

Deno.test("request log: the server app logs each request when asked (requestLog or DVSFT_LOG)", async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  const { app, close } = createServerApp({ functions: ["label"], requestLog: "json" });
  try {
    await (await app.request("/healthz")).body?.cancel();
    await (await app.request("/nope")).body?.cancel();
  } finally {
    console.log = log;
    await close();
  }
  assertEquals(
    lines.map((l) => JSON.parse(l)).map((j) => [j.method, j.path, j.status]),
    [["GET", "/healthz", 200], ["GET", "/nope", 404]],
  );
  Deno.env.set("DVSFT_LOG", "yes");
  try {
    assertThrows(
      () => createServerApp({ functions: ["label"] }),
      Error,
      "DVSFT_LOG must be off, text or json, got 'yes'",
    );
  } finally {
    Deno.env.delete("DVSFT_LOG");
  }
});
