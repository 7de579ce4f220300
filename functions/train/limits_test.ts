import { assert, assertEquals, assertMatch } from "@std/assert";
import { createServerApp } from "../server.ts";

const json = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

Deno.test("train/eval jobs: every size is bounded before work starts (413/422 name the limit and the value)", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-limits-" });
  const { app, close } = createServerApp({ functions: ["train", "eval"], dataRoot });
  try {
    const cases: Array<[unknown, number, RegExp]> = [
      // ≈ 10× the default 4096 MB job memory cap
      [
        { model: "small", batchSize: 512 },
        422,
        /needs about \d+ MB .* more than the job memory cap of 4096 MB \(DVSFT_JOB_MEMORY_MB\)/,
      ],
      [
        { model: "small", batchSize: 4096 },
        413,
        /batchSize × sequence length \(4096 × 96\) = 393216 exceeds the limit of 131072 \(DVSFT_MAX_BATCH_TOKENS\)/,
      ],
      [{ steps: 5_000_000 }, 413, /steps 5000000 exceeds the limit of 1000000 \(DVSFT_MAX_STEPS\)/],
      [{ data: { size: 20_000_000 } }, 413, /data.size 20000000 exceeds the limit of 10000000/],
      [
        { evalEvery: 1, evalN: 10_000, evalSuites: ["text-reading", "charts", "doc-kv"] },
        413,
        /evalN × evalSuites 30000 exceeds the limit of 20000/,
      ],
      [
        { modelOverrides: { layers: 1000, dim: 4096, heads: 8 } },
        413,
        /model parameters \d+ exceeds the limit of 200000000 \(DVSFT_MAX_PARAMS\)/,
      ],
      [
        { modelOverrides: { imageSize: 57 } },
        422,
        /modelOverrides do not give a valid model: imageSize/,
      ],
      [{ modelOverrides: { nope: 1 } }, 422, /modelOverrides do not give a valid model/],
    ];
    for (const [body, status, message] of cases) {
      const t0 = performance.now();
      const r = await app.request("/v1/train/jobs", json(body));
      const b = await r.json();
      assertEquals(r.status, status, JSON.stringify([body, b]));
      assertMatch(b.error.message, message);
      assert(performance.now() - t0 < 1000);
    }
    // names a request gives are own keys, not Object.prototype members
    for (
      const body of [{ data: { task: "suite", suite: "constructor" } }, {
        evalSuites: ["__proto__"],
      }]
    ) {
      const r = await app.request("/v1/train/jobs", json(body));
      assertEquals(r.status, 400, JSON.stringify(body));
      await r.body?.cancel();
    }
    for (const suites of [["constructor"], ["hasOwnProperty"], ["toString"]]) {
      const r = await app.request("/v1/eval/jobs", json({ run: "x", suites }));
      assertEquals(r.status, 400, suites[0]);
      await r.body?.cancel();
    }
    const big = await app.request(
      "/v1/eval/jobs",
      json({ run: "x", suites: ["charts", "doc-kv", "text-reading"], n: 10_000 }),
    );
    assertEquals(big.status, 413);
    assertMatch(
      (await big.json()).error.message,
      /n × suites 30000 exceeds the limit of 20000 \(DVSFT_MAX_EVAL_ITEMS\)/,
    );
    assertEquals((await (await app.request("/v1/train/jobs")).json()).jobs, []);
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});

Deno.test("job limits come from the server's options too (over the environment)", async () => {
  const dataRoot = await Deno.makeTempDir({ prefix: "dvsft-limits-" });
  const { app, close } = createServerApp({
    functions: ["train"],
    dataRoot,
    jobLimits: { memoryMB: 1000, maxSteps: 150 },
  });
  try {
    const mem = await app.request("/v1/train/jobs", json({ model: "small", batchSize: 8 }));
    assertEquals(mem.status, 422);
    assertMatch((await mem.json()).error.message, /about 1043 MB .* job memory cap of 1000 MB/);
    const steps = await app.request("/v1/train/jobs", json({ steps: 151 }));
    assertEquals(steps.status, 413);
    assertMatch((await steps.json()).error.message, /steps 151 exceeds the limit of 150/);
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
  }
});
