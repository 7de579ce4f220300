/**
 * `deno task experiment`: SFT vs DV-SFT from the same initialization, data, seed and number of
 * steps; evaluation of several checkpoints on the 3 in-domain + 4 out-of-domain suites and the
 * probe; `results/experiment.md` with plots, configs and commands.
 *
 *   --steps 600 --seeds 0,1 --n 50 --model small --batch 16 --checkpoints 3
 *   --lambda 1 --align next|self --labels exact|ocr --report NAME (ocr: --ocr-data DIR made by `deno task data
 *   generate --suite train --label-source ocr --size 224`) --out results --runs out/experiment
 */
import { parseArgs } from "node:util";
import { runMain } from "../shared/cli.ts";
import { listCheckpoints } from "../../lib/train/mod.ts";
import { join } from "node:path";
import { z } from "zod";
import { train, type TrainConfigInput } from "../../lib/train/mod.ts";
import { BENCHMARK_SUITES, GENERATOR_VERSION, SUITES } from "../../lib/data/mod.ts";
import {
  compareRuns,
  readRunEvals,
  readRunMetrics,
  type SuiteResult,
  writePlots,
} from "../../lib/eval/mod.ts";
import { evalAndStore } from "./cli.ts";
import { startProgress } from "../../lib/util/progress.ts";

const Flags = z.object({
  steps: z.coerce.number().int().min(1).default(600),
  seeds: z.string().default("0,1"),
  n: z.coerce.number().int().min(1).default(50),
  model: z.enum(["tiny", "small"]).default("small"),
  batch: z.coerce.number().int().min(1).default(16),
  checkpoints: z.coerce.number().int().min(1).default(3),
  lambda: z.coerce.number().min(0).default(1),
  align: z.enum(["next", "self"]).default("next"),
  labels: z.enum(["exact", "ocr"]).default("exact"),
  "ocr-data": z.string().optional(),
  lr: z.coerce.number().positive().default(0.002),
  out: z.string().default("results"),
  runs: z.string().default("out/experiment"),
  suites: z.string().optional(),
  /** Report stem (results/<report>.md, plots <report>-*.png); default from model, λ, align, labels. */
  report: z.string().regex(/^[\w.-]+$/, "a file stem: letters, digits, . _ -").optional(),
  /** Rebuild the report from the runs' stored evaluations (no training, no evaluation). */
  "report-only": z.enum(["true", "false"]).default("false"),
});

export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(
      Object.keys(Flags.shape).map((k) => [k, { type: "string" as const }]),
    ),
  });
  const f = Flags.parse(values);
  if (f.labels === "ocr" && !f["ocr-data"]) {
    throw new Error("--labels ocr needs --ocr-data DIR (a dataset with OCR labels)");
  }
  const seeds = f.seeds.split(",").map(Number);
  const suites = f.suites ? f.suites.split(",") : BENCHMARK_SUITES;
  const tag = `${f.model}-l${f.lambda}-${f.align}-${f.labels}`;
  // runs are named with the data generator's version: a run never mixes with one trained on other data
  const gen = `g${GENERATOR_VERSION}`;
  const runs: Array<{ name: string; dir: string; config: TrainConfigInput }> = [];
  for (const seed of seeds) {
    for (const objective of ["sft", "dvsft"] as const) {
      // SFT does not depend on λ or the alignment: ablations share its runs
      const name = objective === "sft"
        ? `sft-${f.model}-${f.labels}-${gen}-s${seed}`
        : `${objective}-${tag}-${gen}-s${seed}`;
      const config: TrainConfigInput = {
        name,
        outDir: f.runs,
        model: f.model,
        objective,
        loss: { lambda: f.lambda, align: f.align },
        data: f.labels === "ocr"
          ? { task: "dataset", path: f["ocr-data"]! }
          : { task: "suite", suite: "train" },
        batchSize: f.batch,
        steps: f.steps,
        seed,
        optimizer: { lr: f.lr, warmupSteps: Math.min(50, Math.floor(f.steps / 10)) },
        checkpointEvery: Math.max(1, Math.ceil(f.steps / f.checkpoints)),
        keepCheckpoints: f.checkpoints + 1,
        backend: "auto",
      };
      runs.push({ name, dir: join(f.runs, name), config });
    }
  }
  for (const r of f["report-only"] === "true" ? [] : runs) {
    const bar = startProgress(`train ${r.name}`, f.steps, ["loss"]);
    let first = true;
    await train(r.config, {
      resume: true, // a killed experiment picks up where it stopped
      onStep: (m) => {
        if (first) { for (let k = 1; k < m.step; k++) bar.tick(); }
        first = false;
        bar.tick({ loss: m.loss.toFixed(3) });
      },
    });
    bar.stop();
    for (const ck of await listCheckpoints(r.dir)) await evalAndStore(r.dir, ck, suites, f.n);
  }
  // report
  const short = (name: string) =>
    name.replace(`-${tag}-${gen}`, "").replace(`-${f.model}-${f.labels}-${gen}`, ""); // "dvsft-s0"
  const loaded = await Promise.all(runs.map(async (r) => {
    const metrics = await readRunMetrics(r.dir);
    if (!metrics) throw new Error(`${r.dir}: no metrics.jsonl (the run has not trained)`);
    return {
      name: short(r.name),
      evals: await readRunEvals(r.dir),
      losses: metrics.losses,
      final: metrics.final,
      trainMinutes: metrics.trainMinutes,
    };
  }));
  // all runs side by side (plots, probe, alignment efficiency), then DV-SFT − SFT per seed
  const report = compareRuns([
    ...loaded.filter((r) => r.name.startsWith("sft")),
    ...loaded.filter((r) => r.name.startsWith("dvsft")),
  ]);
  const pairs = seeds.map((seed) => {
    const pair = [
      loaded.find((r) => r.name === `sft-s${seed}`)!,
      loaded.find((r) => r.name === `dvsft-s${seed}`)!,
    ];
    return `### Seed ${seed}\n\n${compareRuns(pair).markdown}\n`;
  });
  const stem = f.report ?? `experiment-${tag}`;
  const pngs = await writePlots(f.out, report.plots, `${stem}-`);
  // per-objective means over seeds, per suite
  const mean = (xs: number[]) => xs.reduce((acc, x) => acc + x, 0) / Math.max(1, xs.length);
  const finalOf = (name: string, suite: string) =>
    loaded.find((r) => r.name === name)!.evals.at(-1)?.suites.find((x) => x.suite === suite);
  const rows = suites.map((suite) => {
    const over = (objective: string, f: (s: SuiteResult | undefined) => number | undefined) =>
      mean(seeds.map((x) => f(finalOf(`${objective}-s${x}`, suite)) ?? NaN));
    return {
      suite,
      domain: SUITES[suite]!.domain,
      sft: over("sft", (s) => s?.score),
      dv: over("dvsft", (s) => s?.score),
      sftNll: over("sft", (s) => s?.answerNll),
      dvNll: over("dvsft", (s) => s?.answerNll),
    };
  });
  const wins = rows.filter((r) => r.dv > r.sft).length,
    ties = rows.filter((r) => r.dv === r.sft).length;
  const minutes = loaded.reduce((acc, r) => acc + r.trainMinutes, 0).toFixed(1);
  // the generator version the evaluations saw (suite ids end in @version)
  const evaluatedIds = loaded.flatMap((r) => r.evals.flatMap((e) => e.suites.map((x) => x.id)));
  const generator = [...new Set(evaluatedIds.map((id) => id.split("@")[1]))].join(", ") ||
    String(GENERATOR_VERSION);
  const notesFile = join(f.out, `${stem}-notes.md`);
  const notes = await Deno.readTextFile(notesFile).catch(() => "");
  const md = [
    `# SFT vs DV-SFT (${tag})`,
    "",
    `Generated by \`deno task experiment --steps ${f.steps} --seeds ${f.seeds} --n ${f.n} --model ${f.model} --batch ${f.batch} --checkpoints ${f.checkpoints} --lambda ${f.lambda} --align ${f.align} --labels ${f.labels}${
      f.labels === "ocr" ? ` --ocr-data ${f["ocr-data"]}` : ""
    }${f.report ? ` --report ${f.report}` : ""}${
      f.runs !== "out/experiment" ? ` --runs ${f.runs}` : ""
    }\` (data generator v${generator}); ${minutes} min of training steps in all on this 2-core machine, plus evaluation.`,
    "",
    `Model \`${f.model}\` trained from the same initialization (per seed), the same data order (suite \`train\`, drawn on the fly, exact labels unless --labels ocr) and ${f.steps} steps of batch ${f.batch}; only the objective differs. ${f.checkpoints} checkpoints per run evaluated on ${suites.length} suites × ${f.n} items (greedy decoding).`,
    "",
    "## Mean over seeds (final checkpoints)",
    "",
    "| suite | domain | SFT | DV-SFT | DV-SFT − SFT | answer NLL SFT | answer NLL DV-SFT | Δ NLL |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.suite} | ${r.domain} | ${(r.sft * 100).toFixed(1)} | ${(r.dv * 100).toFixed(1)} | ${
        ((r.dv - r.sft) * 100).toFixed(1)
      } | ${r.sftNll.toFixed(3)} | ${r.dvNll.toFixed(3)} | ${(r.dvNll - r.sftNll).toFixed(3)} |`
    ),
    "",
    "Scores in %; answer NLL = teacher-forced negative log-likelihood of the reference answer's tokens (nats per token, lower is better; NaN where an evaluation predates it).",
    "",
    `DV-SFT is above SFT on ${wins} of ${rows.length} suites (ties: ${ties}); its answer NLL is lower on ${
      rows.filter((r) => r.dvNll < r.sftNll).length
    } of ${rows.length}.`,
    "",
    ...(notes ? ["## Findings", "", notes.trim(), ""] : []),
    "## DV-SFT − SFT per seed (final checkpoints; paired bootstrap 95% CI over items)",
    "",
    ...pairs,
    "",
    "## All runs",
    "",
    report.markdown,
    "",
    ...pngs.map((p) => `![${p}](${p})`),
    "",
    "## Configs",
    "",
    "```json",
    JSON.stringify(runs.map((r) => r.config), null, 2),
    "```",
  ].join("\n");
  await Deno.mkdir(f.out, { recursive: true });
  const file = join(
    f.out,
    f.report ? `${f.report}.md` : tag === "small-l1-next-exact" ? "experiment.md" : `${stem}.md`,
  );
  await Deno.writeTextFile(file, md + "\n");
  console.log(md.split("## Every run")[0]);
  console.log(`report → ${file}`);
  return 0;
}

if (import.meta.main) await runMain(main);
