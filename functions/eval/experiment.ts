/**
 * `deno task experiment`: SFT vs DV-SFT from the same initialization, data, seed and number of
 * steps; several checkpoints evaluated on the 3 in-domain + 4 out-of-domain suites and the
 * probe; `results/experiment.md` with plots, configs and the command. The steps are
 * lib/eval/experiment.ts; this file parses flags and writes files.
 *
 *   --steps 600 --seeds 0,1 --n 50 --model small --batch 16 --checkpoints 3
 *   --lambda 1 --align next|self --labels exact|ocr --report NAME (ocr: --ocr-data DIR made by `deno task data
 *   generate --suite train --label-source ocr --size 224`) --out results --runs out/experiment
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { z } from "zod";
import { runMain } from "../shared/cli.ts";
import {
  comparable,
  compareRuns,
  experimentJson,
  ExperimentOptionsSchema,
  experimentTag,
  loadBase,
  loadRuns,
  planRuns,
  renderReport,
  runPlan,
  summarize,
  writePlots,
} from "../../lib/eval/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";

async function readJsonFile(path: string): Promise<Record<string, unknown>> {
  const text = await Deno.readTextFile(path).catch((e) => {
    throw new Error(`Cannot read --base-config ${path}: ${e instanceof Error ? e.message : e}`);
  });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`--base-config ${path} is not JSON: ${e instanceof Error ? e.message : e}`);
  }
}

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

const Flags = z.strictObject({
  steps: z.coerce.number().optional(),
  seeds: z.string().transform((s) => list(s).map(Number)).optional(),
  n: z.coerce.number().optional(),
  model: z.string().optional(),
  batch: z.coerce.number().optional(),
  checkpoints: z.coerce.number().optional(),
  lambda: z.coerce.number().optional(),
  align: z.string().optional(),
  labels: z.string().optional(),
  "ocr-data": z.string().optional(),
  lr: z.coerce.number().optional(),
  "base-steps": z.coerce.number().optional(),
  "base-lr": z.coerce.number().optional(),
  "base-checkpoints": z.coerce.number().optional(),
  "base-config": z.string().optional(),
  runs: z.string().optional(),
  suites: z.string().transform(list).optional(),
  backend: z.string().optional(),
  out: z.string().default("results"),
  /** Report stem (results/<report>.md, plots <report>-*.png); default from model, λ, align, labels. */
  report: z.string().regex(/^[\w.-]+$/, "a file stem: letters, digits, . _ -").optional(),
  /** Rebuild the report from the runs' stored evaluations (no training, no evaluation). */
  "report-only": z.boolean().default(false),
  help: z.boolean().default(false),
});

const USAGE = `Usage: deno task experiment [flags]

SFT vs DV-SFT from the same initialization (or a shared SFT base), data order and steps; every
checkpoint evaluated; results/<report>.md and .json.

  --base-steps N     train a shared base (plain SFT) first; the pairs fine-tune from it (0: none)
  --base-lr X --base-checkpoints N
  --base-config FILE the base's training config (data, schedule, steps, batch) instead of
                     --base-steps/--base-lr; the base run is named by its content
  --steps N --seeds 0,1,2 --n ITEMS --model tiny|small --batch B --checkpoints K --lr X
  --lambda X --align next|self --labels exact|ocr [--ocr-data DIR]
  --suites a,b       (default: the 3 in-domain + 4 out-of-domain suites)
  --runs DIR         training runs (default out/experiment)
  --out DIR          report folder (default results)   --report NAME (file stem)
  --report-only      rebuild the report from the stored evaluations
  --backend auto|wasm|webgpu|cpu`;

export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(
      Object.keys(Flags.shape).map((k) => [
        k,
        {
          type: k === "report-only" || k === "help" ? "boolean" as const : "string" as const,
        },
      ]),
    ),
  });
  const f = Flags.parse(values);
  if (f.help) {
    console.log(USAGE);
    return 0;
  }
  const o = ExperimentOptionsSchema.parse({
    steps: f.steps,
    seeds: f.seeds,
    n: f.n,
    model: f.model,
    batch: f.batch,
    checkpoints: f.checkpoints,
    lambda: f.lambda,
    align: f.align,
    labels: f.labels,
    ocrData: f["ocr-data"],
    lr: f.lr,
    baseSteps: f["base-steps"],
    baseLr: f["base-lr"],
    baseCheckpoints: f["base-checkpoints"],
    baseConfig: f["base-config"] ? await readJsonFile(f["base-config"]) : undefined,
    runs: f.runs,
    suites: f.suites,
    backend: f.backend,
  });
  const plan = planRuns(o);
  if (!f["report-only"]) {
    let bar: ReturnType<typeof startProgress> | null = null;
    let first = true;
    await runPlan(plan, o, {
      onTrainStart: (run) => {
        bar = startProgress(`train ${run.name}`, run.config.steps ?? o.steps, ["loss"]);
        first = true;
      },
      onStep: (_run, m) => {
        // a resumed run starts its bar where the checkpoint left off
        if (first) { for (let k = 1; k < m.step; k++) bar?.tick(); }
        first = false;
        bar?.tick({ loss: m.loss.toFixed(3) });
      },
      onTrainEnd: () => bar?.stop(),
    });
  }
  const runs = await loadRuns(plan);
  const summary = summarize(runs, o);
  const tag = experimentTag(o);
  const stem = f.report ?? `experiment-${tag}`;
  const pngs = await writePlots(f.out, compareRuns(comparable(runs)).plots, `${stem}-`);
  const notes = await Deno.readTextFile(join(f.out, `${stem}-notes.md`)).catch(() => "");
  const command = ["deno task experiment", ...args.filter((a) => a !== "--report-only")].join(
    " ",
  );
  const base = await loadBase(o);
  const data = experimentJson(runs, o, command, base);
  const md = renderReport({ options: o, runs, summary, command, notes, plots: pngs, json: data });
  await Deno.mkdir(f.out, { recursive: true });
  const file = join(
    f.out,
    f.report ? `${f.report}.md` : tag === "small-l1-next-exact" ? "experiment.md" : `${stem}.md`,
  );
  await Deno.writeTextFile(file, md);
  await Deno.writeTextFile(file.replace(/\.md$/, ".json"), JSON.stringify(data, null, 1) + "\n");
  console.log(md.split("## DV-SFT − SFT per seed")[0]);
  console.log(`report → ${file}`);
  return 0;
}

if (import.meta.main) await runMain(main);
