import { assert, assertEquals } from "@std/assert";
import { createServerApp } from "../server.ts";
import { renderPage } from "../../lib/render/mod.ts";

Deno.test("API keys: /v1 needs a valid bearer key; health, readiness and metrics stay open", async () => {
  const { app, close } = createServerApp({ functions: ["label"], apiKeys: ["k-one", "k-two"] });
  try {
    const none = await app.request("/v1/geometries");
    assertEquals([
      none.status,
      (await none.json()).error.code,
      none.headers.get("www-authenticate"),
    ], [401, "unauthorized", 'Bearer realm="dvsft"']);
    const wrong = await app.request("/v1/geometries", {
      headers: { authorization: "Bearer k-three" },
    });
    assertEquals(wrong.status, 401);
    await wrong.body?.cancel();
    for (const key of ["k-one", "k-two"]) {
      const ok = await app.request("/v1/geometries", {
        headers: { authorization: `Bearer ${key}` },
      });
      assertEquals(ok.status, 200);
      await ok.body?.cancel();
    }
    for (const open of ["/healthz", "/readyz", "/metrics"]) {
      const r = await app.request(open);
      assertEquals(r.status, 200, open);
      await r.body?.cancel();
    }
  } finally {
    await close();
  }
});

Deno.test("/metrics: Prometheus text with request counts, latencies, OCR pool and jobs", async () => {
  const dataRoot = await Deno.makeTempDir();
  const { app, close } = createServerApp({ dataRoot, ocrConcurrency: 1 });
  try {
    const fd = new FormData();
    fd.append(
      "image",
      new File([
        renderPage({ width: 200, height: 80, text: "hello world" }).png as Uint8Array<ArrayBuffer>,
      ], "p.png"),
    );
    const r = await app.request("/v1/label", { method: "POST", body: fd });
    assertEquals(r.status, 200);
    await r.body?.cancel();
    await (await app.request("/v1/geometries")).body?.cancel();
    const text = await (await app.request("/metrics")).text();
    assert(
      text.includes('dvsft_http_requests_total{method="POST",route="/v1/label",status="200"} 1'),
      text,
    );
    assert(
      text.includes(
        'dvsft_http_request_duration_seconds_count{method="GET",route="/v1/geometries"} 1',
      ),
    );
    assert(text.includes("dvsft_ocr_pool_size 1"));
    assert(text.includes('dvsft_jobs{kind="train",state="running"} 0'));
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});
