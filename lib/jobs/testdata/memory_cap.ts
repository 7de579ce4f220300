/**
 * For runner_test.ts: a job over its memory cap, run from a process of its own, so that the RSS
 * this process reports is its own (under `deno test --parallel` other test modules share the
 * test process and its RSS). Prints one JSON line: the job's state and error, and how much this
 * process's RSS grew while the job ran and was killed.
 */
import { JobRunner, JobStore } from "../mod.ts";

const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-memcap-" });
const store = await JobStore.open(":memory:");
const runner = new JobRunner(store, { dataRoot, limits: { memoryMB: 120 }, watchMs: 50 });
try {
  const rss0 = Deno.memoryUsage().rss;
  const job = await store.create(
    "train",
    { model: "tiny", batchSize: 4, checkpointEvery: 0, backend: "wasm", steps: 1000 },
    (id) => `runs/${id}`,
    1000,
  );
  runner.enqueue(job.id);
  const t0 = Date.now();
  let j = (await store.get(job.id))!;
  while (["queued", "running"].includes(j.state) && Date.now() - t0 < 120_000) {
    await new Promise((r) => setTimeout(r, 25));
    j = (await store.get(job.id))!;
  }
  console.log(JSON.stringify({
    state: j.state,
    error: j.error,
    rssGrowthMB: (Deno.memoryUsage().rss - rss0) / 1e6,
  }));
} finally {
  await runner.shutdown(5_000);
  store.close();
  await Deno.remove(dataRoot, { recursive: true });
}
