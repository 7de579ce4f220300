import { assert, assertEquals } from "@std/assert";
import { createServerApp } from "../server.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { encodeBase64 } from "../../lib/util/base64.ts";
import { serveWithHeaderTimeout } from "../../lib/http/mod.ts";

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
    assertEquals(statuses("/v1/eval/jobs/{id}/result", "get"), [200, 400, 401, 404, 409]);
    assertEquals(statuses("/v1/train/jobs/{id}/artifacts/{path}", "get"), [200, 400, 401, 404]);
    assertEquals(statuses("/v1/train/jobs/{id}/events", "get"), [200, 400, 401, 404]);
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

Deno.test("slow clients are cut off: headers (408 after the header timeout), silence, a slow body (408)", async () => {
  const dataRoot = await Deno.makeTempDir();
  const { app, close } = createServerApp({ functions: ["train"], dataRoot, bodyTimeoutMs: 1000 });
  const ac = new AbortController();
  const server = await serveWithHeaderTimeout(
    { port: 0, hostname: "127.0.0.1", headerTimeoutMs: 1000, signal: ac.signal },
    app.fetch,
  );
  const port = server.addr.port;
  const enc = new TextEncoder();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Send `parts` with pauses; the first line of the answer and when it came. */
  const probe = async (parts: string[], pauseMs: number) => {
    const c = await Deno.connect({ port, hostname: "127.0.0.1" });
    const t0 = performance.now();
    let answered = false;
    const reading = (async () => {
      let text = "";
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await c.read(buf).catch(() => null);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      answered = true;
      return { status: text.split("\r\n")[0] ?? "", text, ms: performance.now() - t0 };
    })();
    for (const p of parts) {
      if (answered) break;
      await c.write(enc.encode(p)).catch(() => {});
      await sleep(pauseMs);
    }
    const r = await Promise.race([
      reading,
      sleep(8000).then(() => ({ status: "still open after 8 s", text: "", ms: Infinity })),
    ]);
    try {
      c.close();
    } catch { /* closed */ }
    return r;
  };
  try {
    // an ordinary request, twice on one kept-alive connection
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      assertEquals(r.status, 200);
      await r.body?.cancel();
    }
    const lines = Array.from({ length: 20 }, (_, i) => `x-slow-${i}: 1\r\n`);
    const [slowHeaders, silent, slowBody] = await Promise.all([
      probe(["GET /healthz HTTP/1.1\r\nhost: x\r\n", ...lines], 300),
      probe([], 0),
      probe([
        "POST /v1/train/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{",
        ...Array.from({ length: 39 }, () => " "),
      ], 300),
    ]);
    for (const [name, r] of [["slow headers", slowHeaders], ["silent", silent]] as const) {
      assertEquals(r.status, "HTTP/1.1 408 Request Timeout", name);
      assert(r.ms < 2500, `${name}: cut after ${r.ms} ms`);
    }
    assertEquals(slowBody.status, "HTTP/1.1 408 Request Timeout", slowBody.text);
    assert(slowBody.text.includes("body_timeout"), slowBody.text);
    assert(slowBody.ms < 3000, `slow body: cut after ${slowBody.ms} ms`);
    // and the server still serves
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    assertEquals(r.status, 200);
    await r.body?.cancel();
  } finally {
    ac.abort();
    await server.finished;
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});
