import { assert, assertEquals, assertGreater } from "@std/assert";
import { join } from "node:path";
import { train } from "../train/mod.ts";
import { makeReadingSample } from "../data/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import {
  compareRuns,
  type EvalResult,
  greedyDecode,
  modelFromCheckpoint,
  periodicMarkdown,
  readRunMetrics,
  visualProbe,
} from "./mod.ts";
import { latestCheckpoint } from "../runs/mod.ts";
import { SmallVLM } from "../model/mod.ts";

Deno.test("eval: after overfitting 4 samples, greedy decoding writes their answers and the DV-SFT probe names their words", async () => {
  const outDir = await Deno.makeTempDir({ prefix: "dvsft-eval-" });
  try {
    const common = {
      outDir,
      model: "tiny",
      batchSize: 4,
      steps: 160,
      backend: "wasm",
      checkpointEvery: 160,
      data: { task: "reading", seed: 9, size: 4 },
      optimizer: { lr: 0.01, warmupSteps: 10, minLrRatio: 0.5 },
    } as const;
    const dv = await train({ ...common, name: "dv", objective: "dvsft" });
    const sft = await train({ ...common, name: "sft", objective: "sft" });
    const tokenizer = await getTokenizer("dvsft-small");
    const load = async (
      run: string,
    ) => (await modelFromCheckpoint((await latestCheckpoint(join(run, "checkpoints")))!));
    const a = await load(dv.runDir), b = await load(sft.runDir);
    try {
      const samples = Array.from(
        { length: 4 },
        (_, i) => makeReadingSample(i, { config: a.config, tokenizer, seed: 9 }),
      );
      const out = await greedyDecode(a.model, samples, 8);
      const texts = out.map((ids) => tokenizer.decode(ids));
      assertEquals(texts, samples.map((s) => tokenizer.decode(tokenizer.encode(s.answer))));
      const pa = await visualProbe(a.model, samples, "next");
      const pb = await visualProbe(b.model, samples, "next");
      assertGreater(pa.n, 0);
      // the memorized answers are near-certain under teacher forcing; an untrained model is not
      assertEquals(pa.answerNll.length, 4);
      assert(pa.answerNll.every((x) => x < 0.3), `answer NLL after overfitting ${pa.answerNll}`);
      const fresh = new SmallVLM(a.config, undefined, 1);
      const pf = await visualProbe(fresh, samples, "next");
      fresh.dispose();
      assert(pf.answerNll.every((x) => x > 3), `untrained answer NLL ${pf.answerNll}`);
      // under next-token alignment the first visual token's label is predicted from
      // [vision_start] alone, so the probe cannot reach 1; it must clearly beat SFT's
      assertGreater(pa.top1, 0.4, `dvsft probe ${pa.top1}`);
      assertGreater(
        pa.top1,
        pb.top1 + 0.2,
        `dvsft probe ${pa.top1} vs sft ${pb.top1}: SFT is never taught to name visual tokens`,
      );
    } finally {
      a.model.dispose();
      b.model.dispose();
    }
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("compare: deltas with bootstrap intervals, alignment efficiency, plots", () => {
  const result = (step: number, scores: number[]): EvalResult => ({
    checkpoint: { path: "x", step, weightsSha256: "h" },
    options: { suites: ["text-reading"], n: scores.length, batchSize: 1, maxNewTokens: 1 },
    suites: [{
      suite: "text-reading",
      id: "dvsft/text-reading@1",
      domain: "in",
      metric: "anls",
      n: scores.length,
      score: scores.reduce((s, x) => s + x, 0) / scores.length,
      probeTop1: 0.5,
      probeTop5: 0.7,
      answerNll: 2 - scores.reduce((s, x) => s + x, 0) / scores.length,
      items: scores.map((score, index) => ({
        index,
        question: "q",
        answer: "a",
        prediction: "p",
        score,
        nll: 2 - score,
      })),
    }],
  });
  const r = compareRuns([
    { name: "sft", evals: [result(100, [0, 0, 0, 0]), result(200, [0, 1, 0, 0])] },
    { name: "dvsft", evals: [result(100, [1, 0, 1, 0]), result(200, [1, 1, 1, 0])] },
  ]);
  assert(r.markdown.includes("| text-reading | anls | 25.0 | 75.0 | +50.0 ["), r.markdown);
  assert(r.markdown.includes("sft not reached, dvsft 100"), r.markdown);
  // answer NLL per suite, lower for the run that answers: 1.75 vs 1.25, Δ −0.5
  assert(r.markdown.includes("| text-reading | 1.750 | 1.250 | -0.500 ["), r.markdown);
  assertEquals(r.plots.map((p) => p.name), ["scores", "score-vs-step"]);
  assert(r.plots.every((p) => p.svg.startsWith("<svg")));
});

/** The fields of a StepMetrics record these tests do not look at. */
const STEP_DEFAULTS = { lr: 0, gradNorm: 0, tokensPerSecond: 0, numTensors: 0, heapMB: 0 };

Deno.test("compare: training losses from metrics.jsonl (last 10 % of steps, resumed steps counted once)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const line = (step: number, textLoss: number, visionLoss: number) =>
      JSON.stringify({ ...STEP_DEFAULTS, step, loss: textLoss, textLoss, visionLoss, stepMs: 600 });
    // 20 steps; step 19 written twice (a resume): the second record wins
    const lines = Array.from({ length: 20 }, (_, i) => line(i + 1, 5 - i * 0.1, i >= 18 ? 2 : 4));
    lines.splice(18, 0, line(19, 99, 99));
    await Deno.writeTextFile(join(dir, "metrics.jsonl"), lines.join("\n") + "\n");
    const m = (await readRunMetrics(dir))!;
    assertEquals(m.final.steps, 20);
    assertEquals(m.final.from, 19); // the last 10 % of 20 steps
    assert(Math.abs(m.final.text - (3.2 + 3.1) / 2) < 1e-9, String(m.final.text));
    assertEquals(m.final.vision, 2);
    assertEquals(m.losses.length, 20);
    assert(Math.abs(m.trainMinutes - 0.2) < 1e-9);
    assertEquals(await readRunMetrics(join(dir, "missing")), null);
    const r = compareRuns([{ name: "a", evals: [], final: m.final }]);
    assert(r.markdown.includes("| a | 20 | 3.150 | 2.000 |"), r.markdown);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compare: evaluations during training as one row per run and step, with their mean and the loss there", () => {
  const ev = (step: number, suite: string, score: number) => ({
    step,
    suite,
    metric: "em" as const,
    score,
    probeTop1: null,
    probeTop5: null,
    n: 10,
  });
  const md = periodicMarkdown([
    {
      name: "a",
      periodic: [ev(5, "doc-kv", 0.1), ev(5, "charts", 0.3), ev(10, "doc-kv", 0.5)],
      losses: [{ step: 5, loss: 2.5 }, { step: 10, loss: 2.25 }],
      stepMs: 412.4,
    },
    { name: "no-evals", periodic: [] },
  ]);
  const rows = md.trim().split("\n").filter((l) => l.startsWith("| a |"));
  assertEquals(rows, [
    "| a | 412 | 5 | 10.0 (em, n 10) | 30.0 (em, n 10) | 20.0 | 2.500 |",
    "| a | 412 | 10 | 50.0 (em, n 10) | — | 50.0 | 2.250 |",
  ]);
  assert(!md.includes("no-evals"));
  assertEquals(periodicMarkdown([{ name: "x", periodic: [] }]), "");
});
