import { assert, assertEquals } from "@std/assert";
import { join } from "node:path";
import { createServerApp } from "../server.ts";
import { JobStore } from "../../lib/jobs/mod.ts";

const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});
const tiny = { model: "tiny", steps: 6, batchSize: 4, checkpointEvery: 3, backend: "wasm" };

async function waitFor(
  app: { request: (p: string) => Response | Promise<Response> },
  id: string,
  states: string[],
  ms = 60_000,
) {
  const t0 = Date.now();
  for (;;) {
    const job = await (await app.request(`/v1/train/jobs/${id}`)).json();
    if (states.includes(job.state)) return job;
    if (Date.now() - t0 > ms) throw new Error(`job ${id} stuck in ${job.state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("train jobs: create → events → succeeded, metrics, artifacts, downloads, safe paths", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-jobs-" });
  const { app, close } = createServerApp({ functions: ["train"], dataRoot });
  try {
    const res = await app.request("/v1/train/jobs", json(tiny));
    assertEquals(res.status, 202);
    const job = await res.json();
    assertEquals(job.state, "queued");
    // server-sent events until the job ends
    const events = await (await app.request(`/v1/train/jobs/${job.id}/events`)).text();
    assert(events.includes("event: succeeded"), events.slice(-500));
    const done = await waitFor(app, job.id, ["succeeded"]);
    assertEquals(done.progress, { done: 6, total: 6 });
    assert(done.lastMetrics.loss > 0);
    const { artifacts } = await (await app.request(`/v1/train/jobs/${job.id}/artifacts`)).json();
    const paths = artifacts.map((a: { path: string }) => a.path);
    for (
      const p of [
        "config.json",
        "metrics.jsonl",
        "tokenizer.json",
        "checkpoints/latest.json",
        "checkpoints/step-000006/weights.bin",
      ]
    ) {
      assert(paths.includes(p), `${p} in ${paths}`);
    }
    const metrics = await (await app.request(`/v1/train/jobs/${job.id}/artifacts/metrics.jsonl`))
      .text();
    assertEquals(metrics.trim().split("\n").length, 6);
    // the same steps through the metrics route (lib/runs' reader)
    const route = await (await app.request(`/v1/train/jobs/${job.id}/metrics`)).json();
    assertEquals(route.metrics.map((m: { step: number }) => m.step), [1, 2, 3, 4, 5, 6]);
    // a file from configs/ posts as it is (its name is informational: the job id names the run)
    const cfg = JSON.parse(
      await Deno.readTextFile(new URL("../../configs/tiny-dvsft.json", import.meta.url)),
    );
    const posted = await app.request("/v1/train/jobs", json({ ...cfg, steps: 1 }));
    assertEquals(posted.status, 202, await posted.clone().text());
    const p = await posted.json();
    assertEquals(p.runDir, `runs/${p.id}`);
    await (await app.request(`/v1/train/jobs/${p.id}/cancel`, { method: "POST" })).body?.cancel();
    const escape = await app.request(`/v1/train/jobs/${job.id}/artifacts/..%2F..%2Fjobs.kv`);
    assertEquals([escape.status, (await escape.json()).error.code], [400, "bad_path"]);
    // percent-decoding happens once (Hono): %25 names '%', %2525 names '%25'; a folder is no file
    for (const p of ["%25", "%2525", "%E0%A4%A", "checkpoints"]) {
      const r = await app.request(`/v1/train/jobs/${job.id}/artifacts/${p}`);
      assertEquals([r.status, (await r.json()).error.code], [404, "not_found"], p);
    }
    await Deno.symlink("/etc", join(dataRoot, done.runDir, "etc"));
    const link = await app.request(`/v1/train/jobs/${job.id}/artifacts/etc/hostname`);
    assertEquals(link.status, 400);
    await link.body?.cancel();
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});

Deno.test("train jobs: bad configs are 400 with the zod issues; unknown jobs 404", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-jobs-" });
  const { app, close } = createServerApp({ functions: ["train"], dataRoot });
  try {
    for (
      const bad of [{ steps: -1 }, { model: "huge" }, { lr: 1 }, { outDir: "/etc" }, {
        batchSize: "many",
      }]
    ) {
      const res = await app.request("/v1/train/jobs", json(bad));
      const body = await res.json();
      assertEquals(res.status, 400, JSON.stringify(body));
      assert(body.error.issues.length > 0);
    }
    for (const path of ["/etc", "../../etc", "datasets/missing"]) {
      const r = await app.request("/v1/train/jobs", json({ data: { task: "dataset", path } }));
      assertEquals([r.status, (await r.json()).error.code], [
        path === "datasets/missing" ? 404 : 400,
        path === "datasets/missing" ? "not_found" : "bad_path",
      ], path);
    }
    const res = await app.request("/v1/train/jobs/train-zzzz-0123abcd");
    assertEquals(res.status, 404);
    await res.body?.cancel();
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});

Deno.test("train jobs: cancel checkpoints; a job left running by a dead server is failed on restart, then resumes", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-jobs-" });
  try {
    let s = createServerApp({ functions: ["train"], dataRoot });
    const job = await (await s.app.request("/v1/train/jobs", json({ ...tiny, steps: 400 }))).json();
    await waitFor(s.app, job.id, ["running"]);
    const cancelled = await s.app.request(`/v1/train/jobs/${job.id}/cancel`, { method: "POST" });
    assertEquals(cancelled.status, 202);
    await cancelled.body?.cancel();
    const c = await waitFor(s.app, job.id, ["cancelled"]);
    assert(c.progress.done < 400);
    await s.close();
    // a dead server's record: mark it running by hand, as a SIGKILLed process would leave it
    const store = await JobStore.open(join(dataRoot, "jobs.kv"));
    await store.update(job.id, { state: "running" });
    store.close();
    s = createServerApp({ functions: ["train"], dataRoot });
    const failed = await waitFor(s.app, job.id, ["failed"]);
    assert(failed.error.includes("server stopped"), failed.error);
    const resumed = await s.app.request(`/v1/train/jobs/${job.id}/resume`, { method: "POST" });
    assertEquals(resumed.status, 202);
    await resumed.body?.cancel();
    const running = await waitFor(s.app, job.id, ["running"]);
    assertEquals(running.attempts, 2);
    await s.close();
    const after = await JobStore.open(join(dataRoot, "jobs.kv"));
    const final = (await after.get(job.id))!;
    after.close();
    // shutdown checkpoints and leaves the job resumable, with a true state
    assertEquals(final.state, "failed");
    assert(final.error!.includes("interrupted by server shutdown"), final.error!);
  } finally {
    await Deno.remove(dataRoot, { recursive: true });
  }
});
