import { createCanvas } from "@napi-rs/canvas";
import { writeDataset } from "../data/mod.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert";
import { confineDataset } from "./job_main.ts";
import { type Job, JobRunner, type JobRunnerOptions, JobStore } from "./mod.ts";

const tiny = { model: "tiny", batchSize: 4, checkpointEvery: 0, backend: "wasm" };

async function until(store: JobStore, id: string, ok: (j: Job) => boolean, ms = 120_000) {
  const t0 = Date.now();
  for (;;) {
    const j = (await store.get(id))!;
    if (ok(j)) return j;
    if (Date.now() - t0 > ms) throw new Error(`job ${id} stuck in ${j.state}: ${j.error}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
const ended = (j: Job) => !["queued", "running"].includes(j.state);

async function withRunner(
  options: Partial<JobRunnerOptions>,
  f: (store: JobStore, runner: JobRunner) => Promise<void>,
) {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-runner-" });
  const store = await JobStore.open(":memory:");
  const runner = new JobRunner(store, { dataRoot, ...options });
  try {
    await f(store, runner);
  } finally {
    await runner.shutdown(5_000);
    store.close();
    await Deno.remove(dataRoot, { recursive: true });
  }
}

Deno.test("job process over its memory cap is killed, failed with the reason; this process stays small", async () => {
  // in a process of its own: under --parallel other test modules share this process's RSS
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./testdata/memory_cap.ts", import.meta.url).pathname],
    stderr: "inherit",
  }).output();
  assertEquals(out.code, 0);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  assertEquals(r.state, "failed");
  assertMatch(r.error, /memory cap 120 MB exceeded \(RSS \d+ MB\); the job process was killed/);
  // the job's memory was another process's
  assert(r.rssGrowthMB < 100, `the runner's process grew ${r.rssGrowthMB} MB`);
});

Deno.test("cancel between short steps: SIGTERM, the job checkpoints and exits within a second", async () => {
  await withRunner({ limits: { cancelGraceMs: 5_000 } }, async (store, runner) => {
    const job = await store.create("train", { ...tiny, steps: 100_000 }, (id) => `runs/${id}`, 1);
    runner.enqueue(job.id);
    await until(store, job.id, (j) => j.lastMetrics !== null);
    const t0 = performance.now();
    await runner.cancel(job.id);
    const j = await until(store, job.id, ended);
    const ms = performance.now() - t0;
    // not killed: it stopped at a step boundary and wrote its checkpoint
    assertEquals([j.state, j.error], ["cancelled", null]);
    // ~0.2-0.7 s measured; the bound leaves room for a CI machine running other tests at once
    assert(ms < 2_500, `stopped ${ms.toFixed(0)} ms after cancel`);
    console.log(`stopped ${ms.toFixed(0)} ms after cancel`);
    const root = runner.options.dataRoot;
    const latest = JSON.parse(
      await Deno.readTextFile(`${root}/${j.runDir}/checkpoints/latest.json`),
    );
    assert(latest, "a checkpoint at cancel");
  });
});

Deno.test("cancel during a long step: the job stops within the cancel grace (+ exit), state cancelled", async () => {
  await withRunner({ limits: { cancelGraceMs: 500 } }, async (store, runner) => {
    // a batch whose step takes seconds: SIGTERM cannot interrupt it, the grace period does
    const job = await store.create(
      "train",
      { ...tiny, batchSize: 512, steps: 1000 },
      (id) => `runs/${id}`,
      1000,
    );
    runner.enqueue(job.id);
    await until(store, job.id, (j) => j.state === "running");
    await new Promise((r) => setTimeout(r, 2500)); // loaded, inside the first step
    const t0 = performance.now();
    await runner.cancel(job.id);
    const j = await until(store, job.id, ended);
    const ms = performance.now() - t0;
    assertEquals(j.state, "cancelled", j.error ?? "");
    // ~0.2-0.7 s measured; the bound leaves room for a CI machine running other tests at once
    assert(ms < 2_500, `stopped ${ms.toFixed(0)} ms after cancel`);
    console.log(`stopped ${ms.toFixed(0)} ms after cancel`);
  });
});

Deno.test("a time cap fails the job (checkpointed, resumable); a job killed from outside is failed with the signal", async () => {
  await withRunner({ limits: { timeS: 3 } }, async (store, runner) => {
    const job = await store.create(
      "train",
      { ...tiny, steps: 1_000_000, checkpointEvery: 0 },
      (id) => `runs/${id}`,
      1_000_000,
    );
    runner.enqueue(job.id);
    const j = await until(store, job.id, ended);
    assertEquals(j.state, "failed");
    assertMatch(j.error!, /^time cap of 3 s exceeded at step \d+ \(checkpoint kept\)/);
  });
  await withRunner({}, async (store, runner) => {
    const job = await store.create("train", { ...tiny, steps: 100_000 }, (id) => `runs/${id}`, 1);
    runner.enqueue(job.id);
    await until(store, job.id, (j) => j.lastMetrics !== null);
    Deno.kill(runner.pids()[0]!, "SIGKILL");
    const j = await until(store, job.id, ended);
    assertEquals(j.state, "failed");
    // the reason, then the tail of what the job wrote to stderr (e.g. a missing-BLAS warning)
    assertMatch(j.error!, /^the job process was killed by SIGKILL(:|$)/);
    // the runner takes the next job
    const next = await store.create("train", { ...tiny, steps: 2 }, (id) => `runs/${id}`, 2);
    runner.enqueue(next.id);
    assertEquals((await until(store, next.id, ended)).state, "succeeded");
  });
});

Deno.test("a dataset's images are confined to the data root when the job runs; a job naming such a dataset fails at start", async () => {
  const root = await Deno.makeTempDir({ prefix: "dvsft-confine-" });
  try {
    // a dataset whose one image is swapped, after it was written, for a symlink out of the root
    const png = new Uint8Array(createCanvas(8, 8).toBuffer("image/png"));
    const item = (id: string) => ({
      id,
      bytes: png,
      width: 8,
      height: 8,
      source: { kind: "boxes" as const },
      words: [],
      qa: [{ question: "read", answer: "a" }],
    });
    const items = async function* () {
      yield item("a");
    };
    await writeDataset(`${root}/datasets/ok`, items(), { producer: "test", config: {} });
    await Deno.mkdir(`${root}/datasets/out`);
    await writeDataset(`${root}/datasets/out`, items(), { producer: "test", config: {} });
    const image = `${root}/datasets/out/shard-00000/000000.png`;
    await Deno.remove(image);
    await Deno.symlink("/etc/hostname", image);
    await confineDataset(`${root}/datasets/ok`, root);
    await assertRejects(
      () => confineDataset(`${root}/datasets/out`, root),
      Error,
      "names image 'shard-00000/000000.png'",
    );
    // the runner resolves the record's relative path inside the data root at start
    const store = await JobStore.open(":memory:");
    const runner = new JobRunner(store, { dataRoot: root });
    const job = await store.create(
      "train",
      { ...tiny, steps: 1, data: { task: "dataset", path: "../../etc" } },
      (id) => `runs/${id}`,
      1,
    );
    runner.enqueue(job.id);
    const j = await until(store, job.id, ended);
    assertEquals(j.state, "failed");
    assertMatch(j.error!, /^cannot start: Path '\.\.\/\.\.\/etc' leaves its folder/);
    await runner.shutdown();
    store.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a job process whose server is gone (stdin closed) stops like on SIGTERM: checkpoint, done, exit 0", async () => {
  const root = await Deno.makeTempDir({ prefix: "dvsft-orphan-" });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./job_main.ts", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const w = child.stdin.getWriter();
    const config = { ...tiny, steps: 100_000, outDir: `${root}/runs`, name: "r" };
    await w.write(
      new TextEncoder().encode(
        JSON.stringify({ kind: "train", config, resume: false, dataRoot: root }) + "\n",
      ),
    );
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes('"dvsftJob":"step"')) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    const t0 = performance.now();
    await w.close(); // as when the server process dies
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    assertEquals(status.code, 0);
    assertMatch(out, /"dvsftJob":"done","finalStep":\d+,"cancelled":true/);
    assert(performance.now() - t0 < 3000);
    await Deno.stat(`${root}/runs/r/checkpoints/latest.json`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
