/**
 * `deno task bench:profile`: where a `small` training step on wasm goes — time per kernel
 * (and the BLAS sgemm time inside each), the optimizer, and what is left (tfjs's tape and
 * bookkeeping), averaged over timed steps after warm-up. `DVSFT_FUSED=off` profiles the composed
 * tfjs ops instead.
 *
 *   --steps N (timed steps, default 5)   --batch B (default 16)   --top K (rows, default 20)
 *   --preset small|medium|tiny (default small)
 *   --shapes (also: the main thread's sgemm calls by shape, each shape timed again alone on fresh
 *            buffers, and what that bounds — the step cannot beat its own products run alone)
 *   --torch-python PATH (also PyTorch's step on the same shapes under torch.profiler, at the
 *            machine's thread count: its time inside matmul ops and the rest, beside ours)
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { tf, useBackend } from "../../lib/backend/mod.ts";
import { type BlasThreads, loadBlas } from "../../lib/backend/blas.ts";
import { MODEL_PRESETS, ModelConfigSchema } from "../../lib/model/mod.ts";
import { trainStepFlops } from "../../lib/model/flops.ts";
import { sgemmLimit, syntheticStep } from "./synthetic_step.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string" },
    batch: { type: "string" },
    top: { type: "string" },
    preset: { type: "string" },
    shapes: { type: "boolean" },
    "torch-python": { type: "string" },
  },
});
const flags = z.strictObject({
  steps: z.coerce.number().int().min(1).max(100).default(5),
  batch: z.coerce.number().int().min(1).max(256).default(16),
  top: z.coerce.number().int().min(1).max(200).default(20),
  preset: z.enum(["tiny", "small", "medium"]).default("small"),
  shapes: z.boolean().default(false),
  "torch-python": z.string().min(1).optional(),
}).parse(values);

await useBackend("wasm");
const blas = loadBlas();
let gemmMs = 0;
/** the main thread's `gemm` calls in timed steps, by "ta tb M N K threads" (`--shapes`) */
const byShape = new Map<string, { calls: number; ms: number }>();
const untimedGemm = blas?.gemm.bind(blas);
if (blas) {
  // both entry points (sgemm calls the library directly, not through the gemm property)
  const gemm = blas.gemm.bind(blas), sgemm = blas.sgemm.bind(blas);
  const timed = <A extends unknown[]>(f: (...a: A) => void) => (...args: A) => {
    const t0 = performance.now();
    f(...args);
    const ms = performance.now() - t0;
    gemmMs += ms;
    if (timing && flags.shapes && (f as unknown) === gemm) {
      const [ta, tb, m, n, k] = args as unknown as [boolean, boolean, number, number, number];
      const key = `${ta ? "T" : "N"} ${tb ? "T" : "N"} ${m} ${n} ${k} ${blas.threads?.get() ?? 0}`;
      const e = byShape.get(key) ?? { calls: 0, ms: 0 };
      e.calls++;
      e.ms += ms;
      byShape.set(key, e);
    }
  };
  blas.gemm = timed(gemm);
  blas.sgemm = timed(sgemm);
}

// every wasm kernel timed (and the sgemm time inside it), once `timing` is on
const stats = new Map<string, { calls: number; ms: number; gemm: number }>();
let timing = false;
let kernelTotal = 0;
for (const kernel of tf.getKernelsForBackend("wasm")) {
  const f = kernel.kernelFunc as (args: unknown) => unknown;
  (kernel as { kernelFunc: unknown }).kernelFunc = (args: unknown) => {
    if (!timing) return f(args);
    const g0 = gemmMs, t0 = performance.now();
    const out = f(args);
    const ms = performance.now() - t0;
    const e = stats.get(kernel.kernelName) ?? { calls: 0, ms: 0, gemm: 0 };
    e.calls++;
    e.ms += ms;
    kernelTotal += ms;
    e.gemm += gemmMs - g0;
    stats.set(kernel.kernelName, e);
    return out;
  };
}

const vocabSize = Object.keys((buildSmallTokenizerJson().model as { vocab: object }).vocab).length;
const c = ModelConfigSchema.parse({ ...MODEL_PRESETS[flags.preset], vocabSize });
const { step: run, dispose } = syntheticStep(c, flags.batch);
let optMs = 0;
const step = () =>
  run((update) => {
    const t0 = performance.now(), k0 = kernelTotal;
    const norm = update();
    optMs += performance.now() - t0 - (kernelTotal - k0); // its kernels count as kernels
    return norm;
  });
for (let i = 0; i < 3; i++) await step();
timing = true;
optMs = 0;
gemmMs = 0;
const t0 = performance.now();
for (let i = 0; i < flags.steps; i++) await step();
const per = (ms: number) => ms / flags.steps;
const stepMs = per(performance.now() - t0);
let kernelMs = 0;
for (const e of stats.values()) kernelMs += e.ms;
console.log(
  `${flags.preset}, batch ${flags.batch}, ${flags.steps} steps: ${
    stepMs.toFixed(0)
  } ms a step — kernels ${per(kernelMs).toFixed(0)} ms (sgemm ${
    per(gemmMs).toFixed(0)
  } ms), optimizer outside kernels ${per(optMs).toFixed(0)} ms, tape and ` +
    `bookkeeping ${(stepMs - per(kernelMs) - per(optMs)).toFixed(0)} ms\n`,
);
console.log(`${"kernel".padEnd(24)} calls  ms/step  of which sgemm`);
for (const [name, e] of [...stats].sort((a, b) => b[1].ms - a[1].ms).slice(0, flags.top)) {
  console.log(
    `${name.padEnd(24)} ${per(e.calls).toFixed(0).padStart(5)}  ${
      per(e.ms).toFixed(1).padStart(7)
    }  ${per(e.gemm).toFixed(1).padStart(14)}`,
  );
}
dispose();
if (blas && untimedGemm && flags.shapes) shapesReport(untimedGemm, blas.threads);
if (flags["torch-python"]) await torchReport(flags["torch-python"]);

/** PyTorch's step on the same config and batch, profiled (`torch_step.py --profile`). */
async function torchReport(python: string): Promise<void> {
  const threads = navigator.hardwareConcurrency || 1;
  const out = await new Deno.Command(python, {
    args: [
      new URL("./torch_step.py", import.meta.url).pathname,
      ...["--config", JSON.stringify(c), "--batch", String(flags.batch)],
      ...["--steps", String(flags.steps), "--threads", String(threads), "--profile"],
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${python} torch_step.py --profile failed (${out.code})`);
  const r = z.object({
    torch: z.string(),
    threads: z.number(),
    stepMs: z.number(),
    gemmMs: z.number(),
    top: z.array(z.object({ op: z.string(), ms: z.number(), calls: z.number() })),
  }).parse(JSON.parse(new TextDecoder().decode(out.stdout)));
  console.log(
    `\nPyTorch ${r.torch}, ${r.threads} threads, same shapes, ${flags.steps} profiled steps: ${
      r.stepMs.toFixed(0)
    } ms a step — matmul ops ${r.gemmMs.toFixed(0)} ms, the rest ${
      (r.stepMs - r.gemmMs).toFixed(0)
    } ms (ours above: step ${stepMs.toFixed(0)} ms, sgemm ${per(gemmMs).toFixed(0)} ms, the rest ${
      (stepMs - per(gemmMs)).toFixed(0)
    } ms)\n${"op".padEnd(28)} calls  ms/step (self)\n` +
      r.top.map((o) =>
        `${o.op.padEnd(28)} ${o.calls.toFixed(0).padStart(5)}  ${o.ms.toFixed(1).padStart(7)}`
      ).join("\n"),
  );
}

/**
 * Every recorded shape timed again alone (fresh row-major operands, the same transposes and
 * BLAS thread count, best of 5 rounds of a step's calls), and the bound that follows: the main
 * thread runs these products one after another (a helper's share of attention overlaps them),
 * so a step takes at least their time alone, and reaches at most the model FLOPs over it.
 */
function shapesReport(gemm: NonNullable<typeof untimedGemm>, threads: BlasThreads | null): void {
  const before = threads?.get();
  let inStepMs = 0, aloneMs = 0, flops = 0;
  const rows: string[] = [];
  for (const [key, e] of [...byShape].sort((a, b) => b[1].ms - a[1].ms)) {
    const [ta, tb, ...dims] = key.split(" ");
    const [m, n, k, t] = dims.map(Number) as [number, number, number, number];
    if (t) threads?.set(t);
    const a = new Float32Array(m * k).fill(0.5), b = new Float32Array(k * n).fill(0.25);
    const out = new Float32Array(m * n);
    const calls = Math.max(1, Math.round(per(e.calls)));
    const lda = ta === "T" ? m : k, ldb = tb === "T" ? k : n;
    let best = Infinity;
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) {
        gemm(ta === "T", tb === "T", m, n, k, 1, a, lda, b, ldb, 0, out, n);
      }
      best = Math.min(best, (performance.now() - t0) / calls);
    }
    const f = 2 * m * n * k, gf = (ms: number) => (f / ms / 1e6).toFixed(0);
    inStepMs += per(e.ms);
    aloneMs += per(e.calls) * best;
    flops += per(e.calls) * f;
    if (rows.length < flags.top) {
      rows.push(
        `${`${ta} ${tb} ${m} ${n} ${k}`.padEnd(20)} ${String(t || "?").padStart(7)} ${
          per(e.calls).toFixed(0).padStart(5)
        }  ${per(e.ms).toFixed(1).padStart(7)}  ${gf(e.ms / e.calls).padStart(7)}  ${
          gf(best).padStart(5)
        }`,
      );
    }
  }
  // the machine's sgemm limit, as bench:train measures it (fp32 2048³, the BLAS's threads)
  if (before !== undefined) threads?.set(before);
  const limit = sgemmLimit(gemm);
  const model = trainStepFlops(c, flags.batch) / 1e9;
  console.log(
    `\nmain-thread sgemm calls by shape (GFLOP/s in the step, and alone right after)\n` +
      `${"ta tb M N K".padEnd(20)} threads calls  ms/step  in step  alone\n${rows.join("\n")}\n` +
      `all ${byShape.size} shapes: ${inStepMs.toFixed(1)} ms a step in the step, ${
        aloneMs.toFixed(1)
      } ms alone (${(flops / 1e6 / aloneMs).toFixed(0)} GFLOP/s)\n` +
      `sgemm limit (fp32 2048³, ${before ?? "?"} threads): ${limit.toFixed(1)} GFLOP/s; model ` +
      `FLOPs ${model.toFixed(2)} G a step, so with these products alone a step takes ≥ ${
        aloneMs.toFixed(0)
      } ms: ≤ ${(model / aloneMs * 1e3).toFixed(1)} model GFLOP/s, ≤ ${
        (model / aloneMs * 1e3 / limit * 100).toFixed(1)
      } % of the limit (this step: ${(model / stepMs * 1e3).toFixed(1)} GFLOP/s, ${
        (model / stepMs * 1e3 / limit * 100).toFixed(1)
      } %)`,
  );
}
