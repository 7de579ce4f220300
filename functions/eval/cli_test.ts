import { assert, assertRejects } from "@std/assert";
import { join } from "node:path";
import { main } from "./cli.ts";

/** A run folder with one evaluation and a metrics log, as training and `deno task eval` leave it. */
async function fakeRun(dir: string, scores: number[], textLoss: number) {
  await Deno.mkdir(join(dir, "eval"), { recursive: true });
  const suite = {
    suite: "text-reading",
    id: "dvsft/text-reading@4",
    domain: "in",
    metric: "anls",
    n: scores.length,
    score: scores.reduce((a, b) => a + b, 0) / scores.length,
    probeTop1: null,
    probeTop5: null,
    items: scores.map((score, index) => ({
      index,
      question: "q",
      answer: "a",
      prediction: "p",
      score,
    })),
  };
  await Deno.writeTextFile(
    join(dir, "eval", "step-000010.json"),
    JSON.stringify({
      checkpoint: { path: dir, step: 10, weightsSha256: "h" },
      options: {},
      suites: [suite],
    }),
  );
  const lines = Array.from(
    { length: 10 },
    (_, i) =>
      JSON.stringify({
        step: i + 1,
        lr: 0,
        loss: textLoss,
        textLoss,
        visionLoss: 0,
        gradNorm: 0,
        tokensPerSecond: 0,
        stepMs: 100,
        numTensors: 0,
        heapMB: 0,
      }),
  );
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), lines.join("\n") + "\n");
}

Deno.test("compare CLI: a named report with the table, the training losses and PNG plots", async () => {
  const root = await Deno.makeTempDir();
  try {
    await fakeRun(join(root, "sft"), [0, 0, 1, 0], 2.5);
    await fakeRun(join(root, "dvsft"), [1, 1, 1, 0], 2.25);
    const out = join(root, "report");
    const rc = await main([
      "compare",
      join(root, "sft"),
      join(root, "dvsft"),
      "--out",
      out,
      "--report",
      "ablation",
      "--title",
      "An ablation",
    ]);
    assert(rc === 0);
    const md = await Deno.readTextFile(join(out, "ablation.md"));
    assert(md.startsWith("# An ablation"), md);
    assert(md.includes("| text-reading | anls | 25.0 | 75.0 | +50.0 ["), md);
    assert(md.includes("| dvsft | 10 | 2.250 | — |"), md);
    const png = await Deno.readFile(join(out, "ablation-scores.png"));
    assert(png[1] === 0x50 && png[2] === 0x4e && png[3] === 0x47, "a PNG");
    await assertRejects(() =>
      main(["compare", join(root, "sft"), "--out", out, "--report", "../x"])
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
