/**
 * Runs side by side: a markdown table (suites × runs, deltas against the first run with a
 * paired bootstrap 95 % interval) and plots (scores per suite; score and loss against step).
 */
import { join } from "node:path";
import { barChartSvg, lineChartSvg, svgToPng } from "../plot/mod.ts";
import { pairedBootstrap } from "../metrics/mod.ts";
import { Rng } from "../util/rng.ts";
import { type EvalResult, readEvaluations, readMetrics } from "../runs/mod.ts";

/** A run's evaluations by step (`readEvaluations`). */
export const readRunEvals = readEvaluations;

/** A run's training curve and end-of-run losses, from `<run>/metrics.jsonl` (null when absent). */
export interface RunMetrics {
  /** Text loss as a 25-step moving average (single steps are noisy), per step. */
  losses: Array<{ step: number; loss: number }>;
  /** Means over the last 10 % of steps. */
  final: { steps: number; from: number; text: number; vision: number | null };
  /** Minutes spent in training steps. */
  trainMinutes: number;
}

export async function readRunMetrics(runDir: string): Promise<RunMetrics | null> {
  const records = await readMetrics(runDir);
  if (!records) return null;
  const steps = records.map((m) => [m.step, m] as const);
  if (!steps.length) return null;
  const losses = steps.map(([step], i) => {
    const w = steps.slice(Math.max(0, i - 24), i + 1);
    return { step, loss: w.reduce((acc, [, m]) => acc + m.textLoss, 0) / w.length };
  });
  const tail = steps.slice(Math.floor(steps.length * 0.9));
  const mean = (f: (m: { textLoss: number; visionLoss: number }) => number) =>
    tail.reduce((acc, [, m]) => acc + f(m), 0) / tail.length;
  const vision = mean((m) => m.visionLoss);
  return {
    losses,
    final: {
      steps: steps.at(-1)![0],
      from: tail[0]![0],
      text: mean((m) => m.textLoss),
      vision: vision > 0 ? vision : null, // SFT has no vision labels
    },
    trainMinutes: steps.reduce((acc, [, m]) => acc + m.stepMs, 0) / 60000,
  };
}

export interface CompareReport {
  markdown: string;
  plots: Array<{ name: string; svg: string }>;
}

const pct = (x: number) => (x * 100).toFixed(1);

/** Compare runs (names → their evaluations), the first run being the baseline. */
export function compareRuns(
  runs: Array<
    {
      name: string;
      evals: EvalResult[];
      losses?: Array<{ step: number; loss: number }>;
      final?: RunMetrics["final"];
    }
  >,
  threshold = 0.5,
): CompareReport {
  const finals = runs.map((r) => r.evals.at(-1));
  const suites = [...new Set(finals.flatMap((f) => f?.suites.map((s) => s.suite) ?? []))];
  const head = [
    "suite",
    "metric",
    ...runs.map((r) => r.name),
    ...runs.slice(1).map((r) => `Δ ${r.name} (95% CI)`),
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  const bars: Array<{ category: string; series: string; value: number }> = [];
  for (const suite of suites) {
    const res = finals.map((f) => f?.suites.find((s) => s.suite === suite));
    const row = [suite, res.find(Boolean)?.metric ?? ""];
    res.forEach((r, i) => {
      row.push(r ? pct(r.score) : "—");
      if (r) bars.push({ category: suite, series: runs[i]!.name, value: r.score });
    });
    for (let i = 1; i < runs.length; i++) {
      const a = res[0], b = res[i];
      if (!a || !b || a.items.length !== b.items.length) {
        row.push("—");
        continue;
      }
      const bs = pairedBootstrap(
        a.items.map((x) => x.score),
        b.items.map((x) => x.score),
        new Rng(7),
      );
      row.push(`${bs.delta >= 0 ? "+" : ""}${pct(bs.delta)} [${pct(bs.lo)}, ${pct(bs.hi)}]`);
    }
    lines.push(`| ${row.join(" | ")} |`);
  }
  // teacher-forced answer NLL: moves long before greedy answers come out right
  const nllSuites = suites.filter((suite) =>
    finals.every((f) => f?.suites.find((s) => s.suite === suite)?.answerNll !== undefined)
  );
  const nllLines: string[] = [];
  if (nllSuites.length) {
    nllLines.push(
      "",
      "Answer NLL (teacher-forced, nats per answer token, lower is better; Δ with a paired bootstrap 95% CI over items):",
      "",
      `| suite | ${runs.map((r) => r.name).join(" | ")} | ${
        runs.slice(1).map((r) => `Δ ${r.name}`).join(" | ")
      } |`,
      `|---|${runs.map(() => "---").join("|")}|${runs.slice(1).map(() => "---").join("|")}|`,
    );
    for (const suite of nllSuites) {
      const res = finals.map((f) => f!.suites.find((s) => s.suite === suite)!);
      const row = [suite, ...res.map((r) => r.answerNll!.toFixed(3))];
      for (let i = 1; i < runs.length; i++) {
        const a = res[0]!.items, b = res[i]!.items;
        if (
          a.length !== b.length || a.some((x, k) => x.nll === undefined || b[k]!.nll === undefined)
        ) {
          row.push("—");
          continue;
        }
        const bs = pairedBootstrap(a.map((x) => x.nll!), b.map((x) => x.nll!), new Rng(7));
        const f = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(3)}`;
        row.push(`${f(bs.delta)} [${f(bs.lo)}, ${f(bs.hi)}]`);
      }
      nllLines.push(`| ${row.join(" | ")} |`);
    }
  }
  // probe row
  const probe = finals.map((f) => {
    const ps = f?.suites.filter((s) => s.probeTop1 !== null) ?? [];
    return ps.length ? ps.reduce((s, x) => s + x.probeTop1!, 0) / ps.length : null;
  });
  lines.push(
    `| visual-token probe (top-1, mean over suites) | probe | ${
      probe.map((p) => (p === null ? "—" : pct(p))).join(" | ")
    } |${runs.slice(1).map(() => " |").join("")}`,
  );
  lines.push(...nllLines);
  // alignment efficiency: first step reaching `threshold` of the final best mean score
  const meanAt = (e: EvalResult) =>
    e.suites.reduce((s, x) => s + x.score, 0) / Math.max(1, e.suites.length);
  const best = Math.max(...runs.flatMap((r) => r.evals.map(meanAt)), 0);
  const target = best * threshold;
  const eff = runs.map((r) =>
    r.evals.find((e) => meanAt(e) >= target && target > 0)?.checkpoint.step ?? null
  );
  lines.push(
    "",
    `Alignment efficiency: first evaluated step whose mean score reaches ${pct(target)} (${
      threshold * 100
    }% of the best mean, ${pct(best)}): ${
      runs.map((r, i) => `${r.name} ${eff[i] ?? "not reached"}`).join(", ")
    }.`,
  );
  const trained = runs.filter((r) => r.final);
  if (trained.length) {
    lines.push(
      "",
      "| run | steps | text loss (mean of the last 10 % of steps) | vision loss (same steps) |",
      "|---|---|---|---|",
      ...trained.map((r) =>
        `| ${r.name} | ${r.final!.steps} | ${r.final!.text.toFixed(3)} | ${
          r.final!.vision === null ? "—" : r.final!.vision.toFixed(3)
        } |`
      ),
    );
  }
  const plots = [
    {
      name: "scores",
      svg: barChartSvg(bars, {
        title: "Score per suite (final checkpoints)",
        x: "suite",
        y: "score",
        width: 900,
      }),
    },
    {
      name: "score-vs-step",
      svg: lineChartSvg(
        runs.map((r) => ({
          name: r.name,
          points: r.evals.map((e) => ({ x: e.checkpoint.step, y: meanAt(e) })),
        })),
        {
          title: "Mean score over suites against training step",
          x: "step",
          y: "mean score",
        },
      ),
    },
  ];
  const withLoss = runs.filter((r) => r.losses?.length);
  if (withLoss.length) {
    plots.push({
      name: "text-loss-vs-step",
      svg: lineChartSvg(
        withLoss.map((r) => ({
          name: r.name,
          points: r.losses!.map((l) => ({ x: l.step, y: l.loss })),
        })),
        { title: "Text loss against step", x: "step", y: "text loss" },
      ),
    });
  }
  return { markdown: lines.join("\n"), plots };
}

/** Write a report's plots as SVG and PNG into `dir`; returns the PNG file names. */
export async function writePlots(
  dir: string,
  plots: CompareReport["plots"],
  prefix = "",
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const names: string[] = [];
  for (const p of plots) {
    await Deno.writeTextFile(join(dir, `${prefix}${p.name}.svg`), p.svg);
    await Deno.writeFile(join(dir, `${prefix}${p.name}.png`), await svgToPng(p.svg, 1.5));
    names.push(`${prefix}${p.name}.png`);
  }
  return names;
}
