/**
 * `deno task eval --checkpoint out/runs/X [--suites a,b] [--n 100] [--all-checkpoints]`
 * `deno task compare out/runs/A out/runs/B … [--out out/compare]`
 *
 * eval writes `<run>/eval/step-NNNNNN.json` (scores, probe, per-item predictions) and
 * `<run>/eval/step-NNNNNN.predictions.jsonl`.
 */
import { parseArgs } from "node:util";
import { runMain } from "../shared/cli.ts";
import { listCheckpoints } from "../../lib/train/mod.ts";
import { basename, join } from "node:path";
import { BENCHMARK_SUITES } from "../../lib/data/mod.ts";
import {
  compareRuns,
  evaluateCheckpoint,
  readRunEvals,
  readRunMetrics,
  writePlots,
} from "../../lib/eval/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";

/** Evaluate one checkpoint of a run and store the result in the run's eval/ folder. */
export async function evalAndStore(
  runDir: string,
  checkpoint: string,
  suites: string[],
  n: number,
  quiet = false,
) {
  const bar = quiet
    ? null
    : startProgress(`eval ${basename(runDir)} ${basename(checkpoint)}`, suites.length * n, []);
  let shown = 0;
  const r = await evaluateCheckpoint(checkpoint, { suites, n }, (done) => {
    for (; shown < done; shown++) bar?.tick(); // progress comes a batch at a time
  });
  bar?.stop();
  const step = String(r.checkpoint.step).padStart(6, "0");
  await Deno.mkdir(join(runDir, "eval"), { recursive: true });
  await Deno.writeTextFile(join(runDir, "eval", `step-${step}.json`), JSON.stringify(r));
  await Deno.writeTextFile(
    join(runDir, "eval", `step-${step}.predictions.jsonl`),
    r.suites.flatMap((s) => s.items.map((i) => JSON.stringify({ suite: s.suite, ...i }))).join(
      "\n",
    ) + "\n",
  );
  return r;
}

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      checkpoint: { type: "string" },
      suites: { type: "string" },
      n: { type: "string" },
      "all-checkpoints": { type: "boolean" },
      out: { type: "string" },
    },
  });
  const suites = values.suites ? values.suites.split(",") : BENCHMARK_SUITES;
  const n = Number(values.n ?? 100);
  if (command === "eval") {
    const run = values.checkpoint ?? positionals[0];
    if (!run) throw new Error("eval needs --checkpoint RUN_DIR");
    const cks = values["all-checkpoints"] ? await listCheckpoints(run) : [run];
    for (const ck of cks) {
      const r = await evalAndStore(run, ck, suites, n);
      console.log(`step ${r.checkpoint.step}:`);
      for (const s of r.suites) {
        console.log(
          `  ${s.suite.padEnd(14)} ${s.metric.padEnd(8)} ${
            (s.score * 100).toFixed(1).padStart(5)
          }   probe top-1 ${s.probeTop1 === null ? "—" : (s.probeTop1 * 100).toFixed(1)}`,
        );
      }
    }
    return 0;
  }
  if (command === "compare") {
    if (positionals.length < 1) throw new Error("compare needs run folders");
    const runs = await Promise.all(
      positionals.map(async (dir) => {
        const metrics = await readRunMetrics(dir);
        return {
          name: basename(dir),
          evals: await readRunEvals(dir),
          losses: metrics?.losses,
          final: metrics?.final,
        };
      }),
    );
    const report = compareRuns(runs);
    const out = values.out ?? "out/compare";
    const pngs = await writePlots(out, report.plots);
    await Deno.writeTextFile(
      join(out, "compare.md"),
      report.markdown + "\n\n" + pngs.map((p) => `![${p}](${p})`).join("\n") + "\n",
    );
    console.log(report.markdown);
    console.log(`\nplots and compare.md → ${out}`);
    return 0;
  }
  console.error(
    "Usage: deno task eval --checkpoint RUN_DIR [--suites a,b] [--n 100] [--all-checkpoints]\n       deno task compare RUN_DIR RUN_DIR … [--out DIR]",
  );
  return 2;
}

if (import.meta.main) await runMain(main);
