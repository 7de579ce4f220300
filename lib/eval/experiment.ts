/**
 * The SFT vs DV-SFT experiment as plain steps: `planRuns` (which runs, with which configs),
 * `runPlan` (train each, evaluate its checkpoints), `loadRuns` (read them back), `summarize`
 * (per-suite means over seeds) and `renderReport` (markdown). Runs are records carrying their
 * objective and seed, never recovered from their names.
 */
import { join } from "node:path";
import { z } from "zod";
import { BENCHMARK_SUITES, GENERATOR_VERSION, SUITES } from "../data/mod.ts";
import {
  type EvalResult,
  listCheckpoints,
  readEvaluations,
  type SuiteResult,
} from "../runs/mod.ts";
import { train, type TrainConfigInput, TrainConfigSchema } from "../train/mod.ts";
import type { StepMetrics } from "../runs/mod.ts";
import { compareRuns, readRunMetrics, type RunMetrics } from "./compare.ts";
import { evaluateAndStore } from "./evaluate.ts";
import { pairedBootstrap } from "../metrics/mod.ts";
import { Rng } from "../util/rng.ts";

export const ExperimentOptionsSchema = z.strictObject({
  steps: z.number().int().min(1).default(600),
  seeds: z.array(z.number().int()).min(1).default([0, 1]),
  /** Items per suite and checkpoint. */
  n: z.number().int().min(1).default(50),
  model: z.enum(["tiny", "small"]).default("small"),
  batch: z.number().int().min(1).default(16),
  /** Checkpoints per run (each one evaluated). */
  checkpoints: z.number().int().min(1).default(3),
  lambda: z.number().min(0).default(1),
  align: z.enum(["next", "self"]).default("next"),
  labels: z.enum(["exact", "ocr"]).default("exact"),
  /** A dataset with OCR labels (`deno task data generate --label-source ocr`), for labels "ocr". */
  ocrData: z.string().optional(),
  lr: z.number().positive().default(0.002),
  /**
   * Steps of the shared base model (plain SFT on the training mix) that every fine-tuning pair
   * starts from; 0: the pairs train from a random initialization.
   */
  baseSteps: z.number().int().min(0).default(0),
  baseLr: z.number().positive().default(0.002),
  /**
   * The base's training config instead of `baseSteps`/`baseLr` (a committed file, e.g.
   * `configs/base-small.json`): its data, schedule, steps and batch. The experiment sets its
   * name (from the content), folder, model and objective (plain SFT).
   */
  baseConfig: z.record(z.string(), z.unknown()).optional(),
  /** Checkpoints of the base kept and evaluated. */
  baseCheckpoints: z.number().int().min(1).default(2),
  /** Folder of the training runs. */
  runs: z.string().default("out/experiment"),
  suites: z.array(z.string().refine((s) => Object.hasOwn(SUITES, s), "unknown suite")).min(1)
    .default(BENCHMARK_SUITES),
  backend: z.enum(["auto", "tensorflow", "webgpu", "wasm", "cpu"]).default("auto"),
  /** Evaluation cache folder (default: lib/runs' default). */
  cacheDir: z.string().optional(),
}).refine((o) => o.labels !== "ocr" || o.ocrData, {
  message: "labels 'ocr' needs ocrData (a dataset with OCR labels)",
});
export type ExperimentOptions = z.infer<typeof ExperimentOptionsSchema>;

export type Objective = "sft" | "dvsft";

/** One training run of the experiment. */
export interface PlannedRun {
  objective: Objective;
  seed: number;
  /** Folder name: objective, ablation tag, generator version, seed. */
  name: string;
  dir: string;
  config: TrainConfigInput;
}

/** `small-l1-next-exact`: what distinguishes a DV-SFT arm from another. */
export const experimentTag = (o: ExperimentOptions) =>
  `${o.model}-l${o.lambda}-${o.align}-${o.labels}`;

/** Short name of a run in tables: `sft-s0`, `dvsft-s1`. */
export const runLabel = (r: Pick<PlannedRun, "objective" | "seed">) => `${r.objective}-s${r.seed}`;

/**
 * The shared base: plain SFT (no vision labels: that is what fine-tuning adds) on the training
 * mix, long enough to read; null when the experiment trains from scratch.
 */
export function planBase(o: ExperimentOptions): BasePlan | null {
  if (o.baseConfig) {
    const given = o.baseConfig;
    // named by the content: another config never resumes this base's run
    const name = `base-${o.model}-g${GENERATOR_VERSION}-c${fnv1a(canonicalJson(given))}`;
    const config = TrainConfigSchema.parse({
      checkpointEvery: 0,
      ...given,
      name,
      outDir: o.runs,
      model: o.model,
      objective: "sft",
      backend: o.backend,
    });
    if (config.checkpointEvery === 0) {
      config.checkpointEvery = Math.max(1, Math.ceil(config.steps / o.baseCheckpoints));
      config.keepCheckpoints = Math.max(config.keepCheckpoints, o.baseCheckpoints + 1);
    }
    return {
      objective: "sft",
      seed: config.seed,
      name,
      dir: join(o.runs, name),
      config,
      samples: config.data.start + config.steps * config.batchSize,
    };
  }
  if (o.baseSteps === 0) return null;
  const name = `base-${o.model}-g${GENERATOR_VERSION}-b${o.baseSteps}`;
  return {
    objective: "sft",
    seed: 0,
    name,
    dir: join(o.runs, name),
    samples: o.baseSteps * o.batch,
    config: {
      name,
      outDir: o.runs,
      model: o.model,
      objective: "sft",
      data: { task: "suite", suite: "train" },
      batchSize: o.batch,
      steps: o.baseSteps,
      seed: 0,
      optimizer: { lr: o.baseLr, warmupSteps: Math.min(200, Math.floor(o.baseSteps / 10)) },
      checkpointEvery: Math.max(1, Math.ceil(o.baseSteps / o.baseCheckpoints)),
      keepCheckpoints: o.baseCheckpoints + 1,
      backend: o.backend,
    },
  };
}

/** The shared base's run, and how many samples of the training stream it consumed. */
export interface BasePlan extends PlannedRun {
  samples: number;
}

/** JSON with object keys sorted (the same config names the same base however it was written). */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${
      Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")
    }}`;
  }
  return JSON.stringify(v);
}

/** FNV-1a, 32 bits, as 8 hex digits: a short name for a config. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * SFT and DV-SFT from the same initialization (the base's weights when there is one), the same
 * data order and steps, for each seed; only the objective differs.
 */
export function planRuns(o: ExperimentOptions): PlannedRun[] {
  // run names carry the data generator's version: a run never mixes with one trained on other data
  const base = planBase(o);
  const gen = `g${GENERATOR_VERSION}${base ? `-${base.name.split("-").at(-1)}` : ""}`;
  const runs: PlannedRun[] = [];
  for (const [seedIndex, seed] of o.seeds.entries()) {
    for (const objective of ["sft", "dvsft"] as const) {
      // SFT does not depend on λ or the alignment: ablations share its runs
      const name = objective === "sft"
        ? `sft-${o.model}-${o.labels}-${gen}-s${seed}`
        : `dvsft-${experimentTag(o)}-${gen}-s${seed}`;
      const config: TrainConfigInput = {
        name,
        outDir: o.runs,
        model: o.model,
        objective,
        loss: { lambda: o.lambda, align: o.align },
        data: o.labels === "ocr"
          ? { task: "dataset", path: o.ocrData! }
          // after the samples the base saw: fine-tuning sees new data. From a shared base the
          // weights do not depend on the seed, so each seed reads its own stretch of the stream
          // (else its runs would be the same runs); SFT and DV-SFT of a seed share it.
          : {
            task: "suite",
            suite: "train",
            start: base ? base.samples + seedIndex * o.steps * o.batch : 0,
          },
        ...(base ? { initFrom: base.dir } : {}),
        batchSize: o.batch,
        steps: o.steps,
        seed,
        optimizer: { lr: o.lr, warmupSteps: Math.min(50, Math.floor(o.steps / 10)) },
        checkpointEvery: Math.max(1, Math.ceil(o.steps / o.checkpoints)),
        keepCheckpoints: o.checkpoints + 1,
        backend: o.backend,
      };
      runs.push({ objective, seed, name, dir: join(o.runs, name), config });
    }
  }
  return runs;
}

/** Progress callbacks of {@linkcode runPlan}. */
export interface RunPlanHooks {
  onTrainStart?: (run: PlannedRun) => void;
  onStep?: (run: PlannedRun, m: StepMetrics) => void;
  onTrainEnd?: (run: PlannedRun) => void;
  onEvaluate?: (run: PlannedRun, checkpoint: string, done: number, total: number) => void;
}

/**
 * Train every run (resuming: a killed experiment picks up where it stopped) and evaluate each
 * of its checkpoints on the suites (cached, so a rerun only evaluates what is new).
 */
export async function runPlan(
  plan: PlannedRun[],
  o: ExperimentOptions,
  hooks: RunPlanHooks = {},
): Promise<void> {
  const base = planBase(o);
  for (const run of base ? [base, ...plan] : plan) {
    hooks.onTrainStart?.(run);
    await train(run.config, { resume: true, onStep: (m) => hooks.onStep?.(run, m) });
    hooks.onTrainEnd?.(run);
    for (const ck of await listCheckpoints(run.dir)) {
      await evaluateAndStore(run.dir, {
        suites: o.suites,
        n: o.n,
        backend: o.backend,
        ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
      }, {
        checkpoint: ck,
        onProgress: (done, total) => hooks.onEvaluate?.(run, ck, done, total),
      });
    }
  }
}

/** A planned run with what it left on disk. */
export interface LoadedRun extends PlannedRun {
  evals: EvalResult[];
  metrics: RunMetrics;
}

export async function loadRuns(plan: PlannedRun[]): Promise<LoadedRun[]> {
  return await Promise.all(plan.map(async (run) => {
    const metrics = await readRunMetrics(run.dir);
    if (!metrics) throw new Error(`${run.dir}: no training metrics (the run has not trained)`);
    return { ...run, evals: await readEvaluations(run.dir), metrics };
  }));
}

/** One suite's means over seeds, final checkpoints. */
export interface SuiteSummary {
  suite: string;
  domain: string;
  sft: number;
  dvsft: number;
  sftNll: number;
  dvsftNll: number;
}

export interface ExperimentSummary {
  rows: SuiteSummary[];
  /** Suites where DV-SFT's mean score is above / equal to SFT's. */
  wins: number;
  ties: number;
  /** Suites where DV-SFT's mean answer NLL is below SFT's. */
  nllWins: number;
  trainMinutes: number;
  /** Data generator versions the evaluations saw (suite ids end in @version). */
  generator: string;
}

const mean = (xs: number[]) => xs.reduce((acc, x) => acc + x, 0) / Math.max(1, xs.length);

export function summarize(runs: LoadedRun[], o: ExperimentOptions): ExperimentSummary {
  const finalOf = (objective: Objective, seed: number, suite: string) =>
    runs.find((r) => r.objective === objective && r.seed === seed)?.evals.at(-1)?.suites.find((
      x,
    ) => x.suite === suite);
  const rows = o.suites.map((suite) => {
    const over = (objective: Objective, f: (s: SuiteResult | undefined) => number | undefined) =>
      mean(o.seeds.map((seed) => f(finalOf(objective, seed, suite)) ?? NaN));
    return {
      suite,
      domain: SUITES[suite]!.domain,
      sft: over("sft", (s) => s?.score),
      dvsft: over("dvsft", (s) => s?.score),
      sftNll: over("sft", (s) => s?.answerNll),
      dvsftNll: over("dvsft", (s) => s?.answerNll),
    };
  });
  const ids = runs.flatMap((r) => r.evals.flatMap((e) => e.suites.map((x) => x.id)));
  return {
    rows,
    wins: rows.filter((r) => r.dvsft > r.sft).length,
    ties: rows.filter((r) => r.dvsft === r.sft).length,
    nllWins: rows.filter((r) => r.dvsftNll < r.sftNll).length,
    trainMinutes: runs.reduce((acc, r) => acc + r.metrics.trainMinutes, 0),
    generator: [...new Set(ids.map((id) => id.split("@")[1]))].join(", ") ||
      String(GENERATOR_VERSION),
  };
}

/** The runs as `compareRuns` takes them, SFT first (the baseline of the Δ columns). */
export function comparable(runs: LoadedRun[]) {
  const order = (r: LoadedRun) => (r.objective === "sft" ? 0 : 1);
  return [...runs].sort((a, b) => order(a) - order(b) || a.seed - b.seed).map((r) => ({
    name: runLabel(r),
    evals: r.evals,
    losses: r.metrics.losses,
    final: r.metrics.final,
  }));
}

export interface ReportInput {
  options: ExperimentOptions;
  runs: LoadedRun[];
  summary: ExperimentSummary;
  /** The command that reproduces the experiment. */
  command: string;
  /** Findings written by a person, shown under their own heading. */
  notes?: string;
  /** Plot image files, linked at the end of the report. */
  plots?: string[];
  /** The machine-readable report: adds the base, per-checkpoint intervals, alignment efficiency. */
  json?: ExperimentJson;
}

const pct = (x: number) => (x * 100).toFixed(1);

/** The markdown report. */
export function renderReport(r: ReportInput): string {
  const { options: o, summary: s } = r;
  const base = planBase(o);
  const all = compareRuns(comparable(r.runs));
  const pairs = o.seeds.map((seed) => {
    const pair = comparable(r.runs.filter((x) => x.seed === seed));
    return `### Seed ${seed}\n\n${compareRuns(pair).markdown}\n`;
  });
  return [
    `# SFT vs DV-SFT (${experimentTag(o)})`,
    "",
    `Generated by \`${r.command}\` (data generator v${s.generator}); ${
      s.trainMinutes.toFixed(1)
    } min of training steps in all, plus evaluation.`,
    "",
    `Model \`${o.model}\` ${
      base
        ? `fine-tuned from one shared base (\`${base.name}\`, plain SFT; below), each seed on its own stretch of the training stream after what the base saw (suite \`train\` drawn on the fly, exact labels unless --labels ocr), SFT and DV-SFT of a seed on the same one,`
        : "trained from the same initialization (per seed), the same data order (suite `train`, drawn on the fly, exact labels unless --labels ocr) and"
    } ${o.steps} steps of batch ${o.batch}; only the objective differs. ${o.checkpoints} checkpoints per run evaluated on ${o.suites.length} suites × ${o.n} items (greedy decoding).`,
    "",
    "## Mean over seeds (final checkpoints)",
    "",
    "| suite | domain | SFT | DV-SFT | DV-SFT − SFT | answer NLL SFT | answer NLL DV-SFT | Δ NLL |",
    "|---|---|---|---|---|---|---|---|",
    ...s.rows.map((x) =>
      `| ${x.suite} | ${x.domain} | ${pct(x.sft)} | ${pct(x.dvsft)} | ${pct(x.dvsft - x.sft)} | ${
        x.sftNll.toFixed(3)
      } | ${x.dvsftNll.toFixed(3)} | ${(x.dvsftNll - x.sftNll).toFixed(3)} |`
    ),
    "",
    "Scores in %; answer NLL = teacher-forced negative log-likelihood of the reference answer's tokens (nats per token, lower is better; NaN where an evaluation predates it).",
    "",
    `DV-SFT is above SFT on ${s.wins} of ${s.rows.length} suites (ties: ${s.ties}); its answer NLL is lower on ${s.nllWins} of ${s.rows.length}.`,
    "",
    ...(r.json ? jsonSections(r.json) : []),
    ...(r.notes ? ["## Findings", "", r.notes.trim(), ""] : []),
    "## DV-SFT − SFT per seed (final checkpoints; paired bootstrap 95% CI over items)",
    "",
    ...pairs,
    "",
    "## All runs",
    "",
    all.markdown,
    "",
    ...(r.plots ?? []).map((p) => `![${p}](${p})`),
    "",
    "## Configs",
    "",
    "```json",
    JSON.stringify(r.runs.map((x) => x.config), null, 2),
    "```",
  ].join("\n") + "\n";
}

// ---------------------------------------------------------------- the machine-readable report

/** A paired comparison at one checkpoint step: DV-SFT − SFT with its 95 % bootstrap interval. */
export interface PairedAt {
  step: number;
  sft: number;
  dvsft: number;
  delta: number;
  lo: number;
  hi: number;
  sftNll: number | null;
  dvsftNll: number | null;
}

/** `results/experiment.json`: everything the markdown report shows, per suite, seed and step. */
export interface ExperimentJson {
  format: "dvsft-experiment-1";
  command: string;
  options: ExperimentOptions;
  seeds: number[];
  suites: Array<{ id: string; name: string; domain: "in" | "out"; items: number; metric: string }>;
  /** The shared base's mean score over the in-domain suites (percent), null without a base. */
  baseInDomainMean: number | null;
  base: {
    name: string;
    steps: number;
    scores: Record<string, number>;
    /** The base's training config as run (data, schedule, steps, batch). */
    config: TrainConfigInput;
    /** Every evaluated checkpoint of the base: its in-domain mean (percent) and scores. */
    curve: { step: number; inDomainMean: number; scores: Record<string, number> }[];
  } | null;
  /** results[suite][seed] → paired scores at every checkpoint step both runs were evaluated at. */
  results: Record<string, Record<string, PairedAt[]>>;
  /**
   * Per seed: SFT's final in-domain mean, the first step at which DV-SFT's in-domain mean reaches
   * it, and that step as a fraction of SFT's steps (null: never reached).
   */
  alignmentEfficiency: Array<
    {
      seed: number;
      sftFinal: number;
      sftSteps: number;
      dvsftStep: number | null;
      fraction: number | null;
    }
  >;
  summary: ExperimentSummary;
}

const inDomainMean = (e: EvalResult | undefined, inDomain: string[]) => {
  const xs = e?.suites.filter((s) => inDomain.includes(s.suite)).map((s) => s.score) ?? [];
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
};

/** Build the JSON report from the loaded runs (and the base, when the experiment has one). */
export function experimentJson(
  runs: LoadedRun[],
  o: ExperimentOptions,
  command: string,
  base: LoadedRun | null,
): ExperimentJson {
  const inDomain = o.suites.filter((s) => SUITES[s]!.domain === "in");
  const results: ExperimentJson["results"] = {};
  for (const suite of o.suites) {
    results[suite] = {};
    for (const seed of o.seeds) {
      const sft = runs.find((r) => r.objective === "sft" && r.seed === seed);
      const dv = runs.find((r) => r.objective === "dvsft" && r.seed === seed);
      const at: PairedAt[] = [];
      for (const e of sft?.evals ?? []) {
        const a = e.suites.find((s) => s.suite === suite);
        const b = dv?.evals.find((x) => x.checkpoint.step === e.checkpoint.step)?.suites.find((
          s,
        ) => s.suite === suite);
        if (!a || !b || a.items.length !== b.items.length) continue;
        const d = pairedBootstrap(
          a.items.map((x) => x.score),
          b.items.map((x) => x.score),
          new Rng(7),
        );
        at.push({
          step: e.checkpoint.step,
          sft: a.score,
          dvsft: b.score,
          delta: d.delta,
          lo: d.lo,
          hi: d.hi,
          sftNll: a.answerNll ?? null,
          dvsftNll: b.answerNll ?? null,
        });
      }
      results[suite]![String(seed)] = at;
    }
  }
  const alignmentEfficiency = o.seeds.map((seed) => {
    const sft = runs.find((r) => r.objective === "sft" && r.seed === seed);
    const dv = runs.find((r) => r.objective === "dvsft" && r.seed === seed);
    const final = sft?.evals.at(-1);
    const sftFinal = inDomainMean(final, inDomain);
    const reached = dv?.evals.find((e) => inDomainMean(e, inDomain) >= sftFinal);
    const sftSteps = final?.checkpoint.step ?? 0;
    return {
      seed,
      sftFinal,
      sftSteps,
      dvsftStep: reached?.checkpoint.step ?? null,
      fraction: reached && sftSteps ? reached.checkpoint.step / sftSteps : null,
    };
  });
  const baseFinal = base?.evals.at(-1);
  const firstFinal = runs.find((r) => r.evals.length)?.evals.at(-1);
  return {
    format: "dvsft-experiment-1",
    command,
    options: o,
    seeds: o.seeds,
    suites: o.suites.map((s) => ({
      id: firstFinal?.suites.find((x) => x.suite === s)?.id ?? SUITES[s]!.id,
      name: s,
      domain: SUITES[s]!.domain as "in" | "out",
      items: firstFinal?.suites.find((x) => x.suite === s)?.n ?? 0,
      metric: SUITES[s]!.metric,
    })),
    baseInDomainMean: baseFinal ? inDomainMean(baseFinal, inDomain) * 100 : null,
    base: base && baseFinal
      ? {
        name: base.name,
        steps: baseFinal.checkpoint.step,
        scores: Object.fromEntries(baseFinal.suites.map((s) => [s.suite, s.score])),
        config: base.config,
        curve: base.evals.map((e) => ({
          step: e.checkpoint.step,
          inDomainMean: inDomainMean(e, inDomain) * 100,
          scores: Object.fromEntries(e.suites.map((s) => [s.suite, s.score])),
        })),
      }
      : null,
    results,
    alignmentEfficiency,
    summary: summarize(runs, o),
  };
}

/** The base run with what it left on disk, or null when the experiment has none. */
export async function loadBase(o: ExperimentOptions): Promise<LoadedRun | null> {
  const base = planBase(o);
  return base ? (await loadRuns([base]))[0]! : null;
}

/** The report's sections that come from the JSON: base, alignment efficiency, every checkpoint. */
function jsonSections(j: ExperimentJson): string[] {
  const out: string[] = [];
  if (j.base) {
    out.push(
      "## Base model (shared by every pair)",
      "",
      `\`${j.base.name}\`: ${j.base.steps} steps of plain SFT; in-domain mean ${
        j.baseInDomainMean!.toFixed(1)
      } %. Scores: ${Object.entries(j.base.scores).map(([s, x]) => `${s} ${pct(x)}`).join(", ")}.`,
      "",
      "| base step | in-domain mean | " + Object.keys(j.base.scores).join(" | ") + " |",
      "|---|---|" + Object.keys(j.base.scores).map(() => "---|").join(""),
      ...j.base.curve.map((c) =>
        `| ${c.step} | ${c.inDomainMean.toFixed(1)} | ${
          Object.keys(j.base!.scores).map((k) => pct(c.scores[k] ?? NaN)).join(" | ")
        } |`
      ),
      "",
      `Base config: \`${
        JSON.stringify({
          data: j.base.config.data,
          optimizer: j.base.config.optimizer,
          steps: j.base.config.steps,
          batchSize: j.base.config.batchSize,
        })
      }\``,
      "",
    );
  }
  out.push(
    "## Alignment efficiency",
    "",
    "Fraction of SFT's steps DV-SFT needs to reach SFT's final in-domain mean score (first evaluated checkpoint at or above it):",
    "",
    "| seed | SFT final in-domain | SFT steps | DV-SFT reaches it at | fraction |",
    "|---|---|---|---|---|",
    ...j.alignmentEfficiency.map((a) =>
      `| ${a.seed} | ${pct(a.sftFinal)} | ${a.sftSteps} | ${a.dvsftStep ?? "not reached"} | ${
        a.fraction === null ? "—" : a.fraction.toFixed(2)
      } |`
    ),
    "",
    "## Every checkpoint (DV-SFT − SFT, paired bootstrap 95% CI)",
    "",
    "| suite | seed | step | SFT | DV-SFT | Δ [95% CI] |",
    "|---|---|---|---|---|---|",
  );
  for (const [suite, bySeed] of Object.entries(j.results)) {
    for (const [seed, at] of Object.entries(bySeed)) {
      for (const p of at) {
        out.push(
          `| ${suite} | ${seed} | ${p.step} | ${pct(p.sft)} | ${pct(p.dvsft)} | ${
            p.delta >= 0 ? "+" : ""
          }${pct(p.delta)} [${pct(p.lo)}, ${pct(p.hi)}] |`,
        );
      }
    }
  }
  out.push("");
  return out;
}
