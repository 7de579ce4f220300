import { assert, assertEquals } from "@std/assert";
import { createServerApp } from "../server.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { encodeBase64 } from "../../lib/util/base64.ts";

Deno.test("with API keys, /openapi.json and /docs need a key; the document lists each route's statuses", async () => {
  const dataRoot = await Deno.makeTempDir();
  const { app, close } = createServerApp({ apiKeys: ["k"], dataRoot });
  try {
    for (const p of ["/openapi.json", "/docs"]) {
      const r = await app.request(p);
      assertEquals(r.status, 401, p);
      await r.body?.cancel();
    }
    const doc = await (await app.request("/openapi.json", {
      headers: { authorization: "Bearer k" },
    })).json();
    const statuses = (path: string, method: string) =>
      Object.keys(doc.paths[path][method].responses).map(Number).sort();
    assertEquals(statuses("/v1/train/jobs", "post"), [202, 400, 401, 404, 413, 415, 422, 503]);
    assertEquals(statuses("/v1/train/jobs/{id}/resume", "post"), [202, 400, 401, 404, 409]);
    assertEquals(statuses("/v1/eval/jobs", "post"), [202, 400, 401, 404, 409, 413, 415, 503]);
    assertEquals(statuses("/v1/label", "post"), [200, 400, 401, 413, 415, 422, 503, 504]);
    assertEquals(statuses("/v1/eval/jobs/{id}", "get"), [200, 400, 401, 404]);
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});

Deno.test("/healthz answers within 100 ms while a heavy label request (big page, overlay) runs", async () => {
  const { app, close } = createServerApp({ functions: ["label"] });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const page = renderPage({
      width: 3000,
      height: 3000,
      text: Array.from({ length: 1500 }, (_, i) => `word${i}`).join(" "),
    });
    const body = JSON.stringify({
      image: encodeBase64(page.png),
      source: "boxes",
      words: page.words,
      overlay: true,
      geometry: { name: "qwen2-vl", maxPixels: 12845056 },
    });
    await (await fetch(`${base}/healthz`)).body?.cancel();
    let done = false;
    const t0 = performance.now();
    const label = fetch(`${base}/v1/label`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    }).then(async (r) => {
      assertEquals(r.status, 200);
      await r.body?.cancel();
      done = true;
      return performance.now() - t0;
    });
    const lat: number[] = [];
    while (!done) {
      const t = performance.now();
      await (await fetch(`${base}/healthz`)).body?.cancel();
      lat.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
    const labelMs = await label;
    lat.sort((a, b) => a - b);
    const p90 = lat[Math.floor(lat.length * 0.9)]!;
    // the label request took seconds; health checks kept answering all along (before the
    // worker pool one request blocked them for its whole duration)
    assert(labelMs > 500, `label took ${labelMs} ms: not heavy`);
    assert(lat.length >= labelMs / 200, `${lat.length} health checks in ${labelMs.toFixed(0)} ms`);
    assert(p90 < 100, `p90 ${p90.toFixed(0)} ms, max ${lat.at(-1)!.toFixed(0)} ms`);
    // the worst single answer: a loaded 2-core machine delays some by a scheduler slice
    assert(lat.at(-1)! < 500, `max ${lat.at(-1)!.toFixed(0)} ms`);
    console.log(
      `label ${labelMs.toFixed(0)} ms; /healthz ×${lat.length}: p50 ${
        lat[lat.length >> 1]!.toFixed(1)
      } ms, p90 ${p90.toFixed(1)} ms, max ${lat.at(-1)!.toFixed(1)} ms`,
    );
  } finally {
    await server.shutdown();
    await close();
  }
});
