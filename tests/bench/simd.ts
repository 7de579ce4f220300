/**
 * `deno task bench:simd`: the SIMD kernels of lib/backend/simd.ts, nanoseconds per element, next
 * to the same computation written as a plain scalar JS loop over the same memory, measured in the
 * same run. Sizes of a `small` training step (4 096 rows of 384, softmax rows of 256).
 *
 *   --n N (elements, default 1 572 864 = 4 096 rows × 384)   --reps R (default 20)
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { compileSimd, GELU_A, GELU_C, LN_EPS, simdFor } from "../../lib/backend/simd.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { n: { type: "string" }, reps: { type: "string" } },
});
const flags = z.strictObject({
  n: z.coerce.number().int().min(1024).max(1 << 24).default(4096 * 384),
  reps: z.coerce.number().int().min(1).max(1000).default(20),
}).parse(values);

await compileSimd();
const n = flags.n - (flags.n % 384);
const memory = new WebAssembly.Memory({ initial: Math.ceil((5 * 4 * n + 4096) / 65536) });
const simd = simdFor(memory);
const bytes = 4 * n;
const at = (i: number) => 64 + i * bytes;
const xp = at(0), yp = at(1), gp = at(2), mp = at(3), vp = at(4);
const view = (p: number) => new Float32Array(memory.buffer, p, n);
const x = view(xp), y = view(yp), g = view(gp), m = view(mp), v = view(vp);
for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 3;

/** Median ns per element over `reps` calls (after warm-up). */
function nsPerElement(f: () => void): number {
  for (let i = 0; i < 3; i++) f();
  const times: number[] = [];
  for (let r = 0; r < flags.reps; r++) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  return (times.sort((a, b) => a - b)[times.length >> 1]! * 1e6) / n;
}

const C = 384, R = n / C, T = 256;
const cases: Array<[string, () => void, () => void]> = [
  [
    "GELU forward",
    () => simd.geluForward(xp, yp, n),
    () => {
      for (let i = 0; i < n; i++) {
        const a = x[i]!;
        y[i] = a / (1 + Math.exp(-2 * GELU_C * (a + GELU_A * a * a * a)));
      }
    },
  ],
  [
    `layer norm forward (rows of ${C})`,
    () => simd.layerNormForward(xp, gp, gp, yp, R, C),
    () => {
      for (let r = 0; r < R; r++) {
        const o = r * C;
        let s = 0;
        for (let c = 0; c < C; c++) s += x[o + c]!;
        const mean = s / C;
        let q = 0;
        for (let c = 0; c < C; c++) q += (x[o + c]! - mean) ** 2;
        const rstd = 1 / Math.sqrt(q / C + LN_EPS);
        for (let c = 0; c < C; c++) y[o + c] = (x[o + c]! - mean) * rstd * g[c]! + g[c]!;
      }
    },
  ],
  [
    `softmax (rows of ${T})`,
    () => {
      y.set(x);
      simd.softmaxRows(yp, n / T, T, 0, 0);
    },
    () => {
      y.set(x);
      for (let r = 0; r < n / T; r++) {
        const o = r * T;
        let mx = -Infinity;
        for (let j = 0; j < T; j++) mx = Math.max(mx, y[o + j]!);
        let z = 0;
        for (let j = 0; j < T; j++) z += y[o + j] = Math.exp(y[o + j]! - mx);
        for (let j = 0; j < T; j++) y[o + j] = y[o + j]! / z;
      }
    },
  ],
  [
    "AdamW",
    () => simd.adamw(yp, mp, vp, xp, n, 1, 1e-3, 0.9, 0.95, 0.1, 0.05, 1e-8, 0.01),
    () => {
      for (let i = 0; i < n; i++) {
        const gi = x[i]!;
        const mi = 0.9 * m[i]! + 0.1 * gi, vi = 0.95 * v[i]! + 0.05 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        y[i] = y[i]! - 1e-3 * (mi / 0.1 / (Math.sqrt(vi / 0.05) + 1e-8) + 0.01 * y[i]!);
      }
    },
  ],
];

console.log(`${n} elements, median of ${flags.reps} calls\n`);
console.log(`${"kernel".padEnd(32)} SIMD ns/el  JS loop ns/el  speed-up`);
for (const [name, fast, slow] of cases) {
  const a = nsPerElement(fast), b = nsPerElement(slow);
  console.log(
    `${name.padEnd(32)} ${a.toFixed(2).padStart(10)}  ${b.toFixed(2).padStart(13)}  ${
      (b / a).toFixed(1).padStart(7)
    }x`,
  );
}
