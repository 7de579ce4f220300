import { assert, assertEquals } from "@std/assert";
import { createServerApp } from "../server.ts";

const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

Deno.test("eval jobs: evaluate a training job's run over HTTP; unknown runs are 404", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-evaljobs-" });
  const { app, close } = createServerApp({ functions: ["train", "eval"], dataRoot });
  try {
    const t = await (await app.request(
      "/v1/train/jobs",
      json({ model: "tiny", steps: 2, batchSize: 2, checkpointEvery: 2, backend: "wasm" }),
    )).json();
    assert(
      (await (await app.request(`/v1/train/jobs/${t.id}/events`)).text()).includes(
        "event: succeeded",
      ),
    );
    const res = await app.request(
      "/v1/eval/jobs",
      json({ run: t.id, suites: ["text-reading", "charts"], n: 2 }),
    );
    assertEquals(res.status, 202);
    const e = await res.json();
    const events = await (await app.request(`/v1/eval/jobs/${e.id}/events`)).text();
    assert(events.includes("event: succeeded"), events.slice(-400));
    const result = await (await app.request(`/v1/eval/jobs/${e.id}/result`)).json();
    assertEquals(result.suites.map((s: { suite: string; n: number }) => [s.suite, s.n]), [[
      "text-reading",
      2,
    ], ["charts", 2]]);
    assertEquals(result.checkpoint.step, 2);
    const missing = await app.request("/v1/eval/jobs", json({ run: "no-such-run" }));
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
    const bad = await app.request("/v1/eval/jobs", json({ run: t.id, suites: ["nope"] }));
    assertEquals(bad.status, 400);
    await bad.body?.cancel();
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});
