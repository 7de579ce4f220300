/**
 * `deno task bench:profile`: where a `small` training step on wasm goes — time per kernel
 * (and the BLAS sgemm time inside each), the optimizer, and what is left (tfjs's tape and
 * bookkeeping), averaged over timed steps after warm-up. `DVSFT_FUSED=off` profiles the composed
 * tfjs ops instead.
 *
 *   --steps N (timed steps, default 5)   --batch B (default 16)   --top K (rows, default 20)
 *   --preset small|medium|tiny (default small)
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { tf, useBackend } from "../../lib/backend/mod.ts";
import { loadBlas } from "../../lib/backend/blas.ts";
import { MODEL_PRESETS, ModelConfigSchema } from "../../lib/model/mod.ts";
import { syntheticStep } from "./synthetic_step.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string" },
    batch: { type: "string" },
    top: { type: "string" },
    preset: { type: "string" },
  },
});
const flags = z.strictObject({
  steps: z.coerce.number().int().min(1).max(100).default(5),
  batch: z.coerce.number().int().min(1).max(256).default(16),
  top: z.coerce.number().int().min(1).max(200).default(20),
  preset: z.enum(["tiny", "small", "medium"]).default("small"),
}).parse(values);

await useBackend("wasm");
const blas = loadBlas();
let gemmMs = 0;
if (blas) {
  // both entry points (sgemm calls the library directly, not through the gemm property)
  const gemm = blas.gemm.bind(blas), sgemm = blas.sgemm.bind(blas);
  const timed = <A extends unknown[]>(f: (...a: A) => void) => (...args: A) => {
    const t0 = performance.now();
    f(...args);
    gemmMs += performance.now() - t0;
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
