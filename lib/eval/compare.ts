/**
 * Runs side by side: a markdown table (suites × runs, deltas against the first run with a
 * paired bootstrap 95 % interval) and plots (scores per suite; score and loss against step).
 */
import { join } from "node:path";
import { barChartSvg, lineChartSvg, svgToPng } from "../plot/mod.ts";
import { pairedBootstrap } from "../metrics/mod.ts";
import { Rng } from "../util/rng.ts";
import { type EvalResult, type PeriodicEval, readEvaluations, readMetrics } from "../runs/mod.ts";

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
  /** Median milliseconds a step took. */
  medianStepMs: number;
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
    medianStepMs: records.map((m) => m.stepMs).sort((a, b) =>
      a - b
    )[Math.floor(records.length / 2)]!,
  };
}

export interface CompareReport {
  markdown: string;
  plots: Array<{ name: string; svg: string }>;
}

const pct = (x: number) => (x * 100).toFixed(1);

/** A run as `compareRuns` takes it: a name, its evaluations by step, its training losses. */
export interface ComparedRun {
  name: string;
  evals: EvalResult[];
  losses?: Array<{ step: number; loss: number }>;
  final?: RunMetrics["final"];
}

/** A difference against the baseline run with its paired-bootstrap 95 % interval. */
export interface Delta {
  delta: number;
  lo: number;
  hi: number;
}

/** The numbers of a comparison, before any rendering. */
export interface CompareStats {
  runs: string[];
  /** Per suite: metric, each run's final score (null: not evaluated), Δ against run 0. */
  scores: Array<
    { suite: string; metric: string; score: Array<number | null>; delta: Array<Delta | null> }
  >;
  /** Per suite every run has an answer NLL for: each run's mean and Δ against run 0. */
  nll: Array<{ suite: string; nll: number[]; delta: Array<Delta | null> }>;
  /** Mean probe top-1 over suites, per run. */
  probe: Array<number | null>;
  /** First evaluated step whose mean score reaches `target`, per run. */
  efficiency: { threshold: number; best: number; target: number; step: Array<number | null> };
  /** End-of-training losses of the runs that have them. */
  finals: Array<{ name: string; final: RunMetrics["final"] }>;
}

/** Mean score over an evaluation's suites. */
const meanScore = (e: EvalResult) =>
  e.suites.reduce((s, x) => s + x.score, 0) / Math.max(1, e.suites.length);

const bootstrap = (a: number[], b: number[]): Delta => pairedBootstrap(a, b, new Rng(7));

/** The comparison's statistics; the first run is the baseline of every Δ. */
export function compareStats(runs: ComparedRun[], threshold = 0.5): CompareStats {
  const finals = runs.map((r) => r.evals.at(-1));
  const suites = [...new Set(finals.flatMap((f) => f?.suites.map((s) => s.suite) ?? []))];
  const scores = suites.map((suite) => {
    const res = finals.map((f) => f?.suites.find((s) => s.suite === suite));
    return {
      suite,
      metric: res.find(Boolean)?.metric ?? "",
      score: res.map((r) => (r ? r.score : null)),
      delta: res.slice(1).map((b) => {
        const a = res[0];
        if (!a || !b || a.items.length !== b.items.length) return null;
        return bootstrap(a.items.map((x) => x.score), b.items.map((x) => x.score));
      }),
    };
  });
  // teacher-forced answer NLL: moves long before greedy answers come out right
  const nll = suites.filter((suite) =>
    finals.every((f) => f?.suites.find((s) => s.suite === suite)?.answerNll !== undefined)
  ).map((suite) => {
    const res = finals.map((f) => f!.suites.find((s) => s.suite === suite)!);
    return {
      suite,
      nll: res.map((r) => r.answerNll!),
      delta: res.slice(1).map((r) => {
        const a = res[0]!.items, b = r.items;
        if (
          a.length !== b.length || a.some((x, k) => x.nll === undefined || b[k]!.nll === undefined)
        ) {
          return null;
        }
        return bootstrap(a.map((x) => x.nll!), b.map((x) => x.nll!));
      }),
    };
  });
  const probe = finals.map((f) => {
    const ps = f?.suites.filter((s) => s.probeTop1 !== null) ?? [];
    return ps.length ? ps.reduce((s, x) => s + x.probeTop1!, 0) / ps.length : null;
  });
  // alignment efficiency: first step reaching `threshold` of the final best mean score
  const best = Math.max(...runs.flatMap((r) => r.evals.map(meanScore)), 0);
  const target = best * threshold;
  const step = runs.map((r) =>
    r.evals.find((e) => meanScore(e) >= target && target > 0)?.checkpoint.step ?? null
  );
  return {
    runs: runs.map((r) => r.name),
    scores,
    nll,
    probe,
    efficiency: { threshold, best, target, step },
    finals: runs.filter((r) => r.final).map((r) => ({ name: r.name, final: r.final! })),
  };
}

/** The comparison as markdown tables. */
export function compareMarkdown(st: CompareStats): string {
  const names = st.runs;
  const others = names.slice(1);
  const signed = (x: number, f: (x: number) => string) => `${x >= 0 ? "+" : ""}${f(x)}`;
  const head = ["suite", "metric", ...names, ...others.map((n) => `Δ ${n} (95% CI)`)];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of st.scores) {
    const row = [r.suite, r.metric, ...r.score.map((x) => (x === null ? "—" : pct(x)))];
    for (const d of r.delta) {
      row.push(d ? `${signed(d.delta, pct)} [${pct(d.lo)}, ${pct(d.hi)}]` : "—");
    }
    lines.push(`| ${row.join(" | ")} |`);
  }
  lines.push(
    `| visual-token probe (top-1, mean over suites) | probe | ${
      st.probe.map((p) => (p === null ? "—" : pct(p))).join(" | ")
    } |${others.map(() => " |").join("")}`,
  );
  if (st.nll.length) {
    const f3 = (x: number) => x.toFixed(3);
    lines.push(
      "",
      "Answer NLL (teacher-forced, nats per answer token, lower is better; Δ with a paired bootstrap 95% CI over items):",
      "",
      `| suite | ${names.join(" | ")} | ${others.map((n) => `Δ ${n}`).join(" | ")} |`,
      `|---|${names.map(() => "---").join("|")}|${others.map(() => "---").join("|")}|`,
    );
    for (const r of st.nll) {
      const row = [r.suite, ...r.nll.map(f3)];
      for (const d of r.delta) {
        row.push(d ? `${signed(d.delta, f3)} [${signed(d.lo, f3)}, ${signed(d.hi, f3)}]` : "—");
      }
      lines.push(`| ${row.join(" | ")} |`);
    }
  }
  const e = st.efficiency;
  lines.push(
    "",
    `Alignment efficiency: first evaluated step whose mean score reaches ${pct(e.target)} (${
      e.threshold * 100
    }% of the best mean, ${pct(e.best)}): ${
      names.map((n, i) => `${n} ${e.step[i] ?? "not reached"}`).join(", ")
    }.`,
  );
  if (st.finals.length) {
    lines.push(
      "",
      "| run | steps | text loss (mean of the last 10 % of steps) | vision loss (same steps) |",
      "|---|---|---|---|",
      ...st.finals.map(({ name, final }) =>
        `| ${name} | ${final.steps} | ${final.text.toFixed(3)} | ${
          final.vision === null ? "—" : final.vision.toFixed(3)
        } |`
      ),
    );
  }
  return lines.join("\n");
}

/** The comparison's plots: scores per suite, mean score and text loss against step. */
export function comparePlots(runs: ComparedRun[], st: CompareStats): CompareReport["plots"] {
  const bars = st.scores.flatMap((r) =>
    r.score.flatMap((value, i) =>
      value === null ? [] : [{ category: r.suite, series: st.runs[i]!, value }]
    )
  );
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
          points: r.evals.map((e) => ({ x: e.checkpoint.step, y: meanScore(e) })),
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
          // readRunMetrics' losses are already a moving average: the legend says so
          name: `${r.name} (25-step moving average)`,
          points: r.losses!.map((l) => ({ x: l.step, y: l.loss })),
        })),
        { title: "Text loss against step", x: "step", y: "text loss" },
      ),
    });
  }
  return plots;
}

/** Compare runs (names → their evaluations), the first run being the baseline. */
export function compareRuns(runs: ComparedRun[], threshold = 0.5): CompareReport {
  const st = compareStats(runs, threshold);
  return { markdown: compareMarkdown(st), plots: comparePlots(runs, st) };
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

/** A run's evaluations during training (`evals.jsonl`) with its loss curve, for {@linkcode periodicMarkdown}. */
export interface PeriodicRun {
  name: string;
  periodic: PeriodicEval[];
  losses?: Array<{ step: number; loss: number }>;
  /** Median milliseconds a step took. */
  stepMs?: number;
}

/**
 * The evaluations made during training, one row per run and step: each suite's score, their
 * mean, and the text loss there (25-step moving average). Empty when no run has any.
 */
export function periodicMarkdown(runs: PeriodicRun[]): string {
  const withEvals = runs.filter((r) => r.periodic.length > 0);
  if (withEvals.length === 0) return "";
  const suites = [...new Set(withEvals.flatMap((r) => r.periodic.map((e) => e.suite)))];
  const lines = [
    "## Evaluations during training (`evalEvery`)",
    "",
    `| run | ms / step | step | ${suites.join(" | ")} | mean | text loss |`,
    `|---|---|---|${suites.map(() => "---|").join("")}---|---|`,
  ];
  for (const r of withEvals) {
    const steps = [...new Set(r.periodic.map((e) => e.step))].sort((a, b) => a - b);
    for (const step of steps) {
      const at = suites.map((s) => r.periodic.find((e) => e.step === step && e.suite === s));
      const got = at.filter((e) => e !== undefined).map((e) => e!.score);
      const loss = r.losses?.find((l) => l.step === step)?.loss;
      lines.push(
        `| ${r.name} | ${r.stepMs === undefined ? "—" : r.stepMs.toFixed(0)} | ${step} | ${
          at.map((e) => (e ? `${pct(e.score)} (${e.metric}, n ${e.n})` : "—")).join(" | ")
        } | ${got.length ? pct(got.reduce((a, b) => a + b, 0) / got.length) : "—"} | ${
          loss === undefined ? "—" : loss.toFixed(3)
        } |`,
      );
    }
  }
  return lines.join("\n") + "\n";
}
