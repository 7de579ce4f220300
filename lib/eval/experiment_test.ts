import { assert, assertEquals } from "@std/assert";
import {
  experimentJson,
  ExperimentOptionsSchema,
  loadBase,
  loadRuns,
  planBase,
  planRuns,
  renderReport,
  runPlan,
  summarize,
} from "./mod.ts";

Deno.test("experiment: base → pair → report (markdown + JSON), on tiny", async () => {
  const runs = await Deno.makeTempDir({ prefix: "dvsft-exp-" });
  try {
    const o = ExperimentOptionsSchema.parse({
      model: "tiny",
      steps: 4,
      seeds: [0],
      batch: 2,
      checkpoints: 2,
      n: 2,
      suites: ["text-reading", "charts"],
      baseSteps: 3,
      baseCheckpoints: 1,
      runs,
      backend: "wasm",
      cacheDir: `${runs}/cache`,
    });
    const plan = planRuns(o);
    assertEquals(plan.map((r) => [r.objective, r.seed]), [["sft", 0], ["dvsft", 0]]);
    // both start from the base's weights, on data after what the base saw
    assert(
      plan.every((r) => r.config.initFrom?.endsWith("base-tiny-g4-b3")),
      plan[0]!.config.initFrom,
    );
    assertEquals((plan[0]!.config.data as { start: number }).start, 3 * 2);
    // same init, data and steps: only the objective differs
    const [sft, dv] = plan;
    assertEquals({ ...sft!.config, name: "", objective: "" }, {
      ...dv!.config,
      name: "",
      objective: "",
    });
    const evaluated: string[] = [];
    await runPlan(plan, o, {
      onEvaluate: (r, ck, done, total) =>
        done === total && evaluated.push(`${r.name.split("-")[0]}:${ck.split("/").at(-1)}`),
    });
    assertEquals(evaluated, [
      "base:step-000003",
      "sft:step-000002",
      "sft:step-000004",
      "dvsft:step-000002",
      "dvsft:step-000004",
    ]);
    const loaded = await loadRuns(plan);
    assertEquals(loaded.map((r) => r.evals.map((e) => e.checkpoint.step)), [[2, 4], [2, 4]]);
    const summary = summarize(loaded, o);
    assertEquals(summary.rows.map((r) => r.suite), ["text-reading", "charts"]);
    assert(summary.rows.every((r) => Number.isFinite(r.sft) && Number.isFinite(r.dvsftNll)));
    const base = await loadBase(o);
    assertEquals(base!.evals.map((e) => e.checkpoint.step), [3]);
    const command = "deno task experiment --model tiny";
    const json = experimentJson(loaded, o, command, base);
    assertEquals(json.seeds, [0]);
    assertEquals(json.suites.map((s) => [s.name, s.domain, s.items, s.metric]), [
      ["text-reading", "in", 2, "anls"],
      ["charts", "out", 2, "relaxed"],
    ]);
    assert(Number.isFinite(json.baseInDomainMean), String(json.baseInDomainMean));
    // the base's learning curve: one entry per evaluated checkpoint, the last one the headline
    assertEquals(json.base!.curve.map((c) => c.step), [3]);
    assertEquals(json.base!.curve.at(-1)!.inDomainMean, json.baseInDomainMean);
    assertEquals(json.base!.config.steps, 3);
    assertEquals(json.results["charts"]!["0"]!.map((p) => p.step), [2, 4]);
    assert(json.results["charts"]!["0"]!.every((p) => p.lo <= p.delta && p.delta <= p.hi));
    assertEquals(json.alignmentEfficiency[0]!.sftSteps, 4);
    const md = renderReport({ options: o, runs: loaded, summary, command, json });
    assert(md.includes("## Base model (shared by every pair)"), md);
    assert(md.includes("| base step | in-domain mean |"), md);
    assert(md.includes("fine-tuned from one shared base"), md);
    assert(md.includes("## Alignment efficiency"), md);
    assert(md.includes("## Every checkpoint"), md);
    assert(md.startsWith("# SFT vs DV-SFT (tiny-l1-next-exact)"), md.slice(0, 80));
    assert(md.includes("| text-reading | in |"), md);
    assert(md.includes("### Seed 0"), md);
    assert(md.includes("Δ dvsft-s0"), md);
    // a rerun resumes: nothing is trained or evaluated again, the same report comes out
    await runPlan(plan, o);
    assertEquals(
      renderReport({
        options: o,
        runs: await loadRuns(plan),
        summary: summarize(await loadRuns(plan), o),
        command,
        json: experimentJson(await loadRuns(plan), o, command, await loadBase(o)),
      }).replace(/[\d.]+ min/, ""),
      md.replace(/[\d.]+ min/, ""),
    );
  } finally {
    await Deno.remove(runs, { recursive: true });
  }
});

Deno.test("experiment plan: from a shared base, each fine-tuning seed reads its own data; SFT and DV-SFT of a seed share it", () => {
  const o = ExperimentOptionsSchema.parse({
    model: "tiny",
    steps: 10,
    seeds: [0, 1, 2],
    batch: 4,
    baseSteps: 100,
  });
  const starts = planRuns(o).map((
    r,
  ) => [r.name.split("-")[0], r.seed, (r.config.data as { start: number }).start]);
  // the base saw samples [0, 400); seed k fine-tunes on [400 + 40k, 440 + 40k)
  assertEquals(starts, [
    ["sft", 0, 400],
    ["dvsft", 0, 400],
    ["sft", 1, 440],
    ["dvsft", 1, 440],
    ["sft", 2, 480],
    ["dvsft", 2, 480],
  ]);
});

Deno.test("experiment plan: a base from a committed config is named by its content, plain SFT, and the pairs start after its samples", () => {
  const baseConfig = {
    data: { task: "mix", mix: [{ suite: "train", weight: 1 }, { task: "reading", weight: 1 }] },
    steps: 50,
    batchSize: 8,
    optimizer: { lr: 0.003 },
    objective: "dvsft", // ignored: a base is plain SFT
  };
  const o = (c: Record<string, unknown>) =>
    ExperimentOptionsSchema.parse({
      model: "tiny",
      steps: 10,
      seeds: [0, 1],
      batch: 4,
      baseConfig: c,
    });
  const plan = planRuns(o(baseConfig));
  const base = planBase(o(baseConfig))!;
  assertEquals(base.config.objective, "sft");
  assertEquals(base.samples, 400);
  assert(/^base-tiny-g\d+-c[0-9a-f]{8}$/.test(base.name), base.name);
  // the same content written in another key order names the same base; other content another
  const reordered = {
    optimizer: { lr: 0.003 },
    batchSize: 8,
    steps: 50,
    data: baseConfig.data,
    objective: "dvsft",
  };
  assertEquals(planBase(o(reordered))!.name, base.name);
  assert(planBase(o({ ...baseConfig, steps: 51 }))!.name !== base.name);
  assertEquals(plan.map((r) => (r.config.data as { start: number }).start), [400, 400, 440, 440]);
  assert(plan.every((r) => r.config.initFrom === base.dir));
  assert(
    plan.every((r) => r.name.endsWith(`-${base.name.split("-").at(-1)}-s${r.seed}`)),
    plan[0]!.name,
  );
});
