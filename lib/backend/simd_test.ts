import { assert, assertEquals } from "@std/assert";
import {
  compileSimd,
  GELU_A,
  GELU_C,
  LN_EPS,
  SIMD_KERNEL_PARAMS,
  simdFor,
  simdSource,
} from "./simd.ts";

/** A fresh memory with the kernels bound to it, and float32 arrays placed in it. */
async function setup() {
  await compileSimd();
  const memory = new WebAssembly.Memory({ initial: 4 });
  const simd = simdFor(memory);
  let top = 64;
  const put = (xs: ArrayLike<number>) => {
    const ptr = top;
    new Float32Array(memory.buffer, ptr, xs.length).set(xs);
    top += 4 * xs.length + 16;
    return ptr;
  };
  const get = (ptr: number, n: number) => new Float32Array(memory.buffer, ptr, n).slice();
  return { simd, put, get };
}

const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    w = Math.max(w, Math.abs(a[i]! - b[i]!) / (1e-30 + Math.abs(b[i]!)));
  }
  return w;
};

Deno.test("simd softmax rows: a causal call from row r0 of a block equals those rows of the whole", async () => {
  const { simd, put, get } = await setup();
  const T = 9, x = Array.from({ length: 2 * T * T }, (_, i) => 5 * Math.sin(0.9 * i));
  const whole = put(x);
  simd.softmaxRows(whole, 2 * T, T, 1, 0);
  for (const r0 of [1, 4, 8, 11]) {
    const part = put(x.slice(r0 * T));
    simd.softmaxRows(part, 2 * T - r0, T, 1, r0 % T);
    assertEquals(get(part, (2 * T - r0) * T), get(whole + 4 * r0 * T, (2 * T - r0) * T));
  }
});

Deno.test("simd softmax rows: exp over a wide range, causal rows, every tail length", async () => {
  const { simd, put, get } = await setup();
  for (const T of [1, 3, 4, 7, 13]) {
    for (const causal of [0, 1]) {
      const x = Array.from({ length: 2 * T * T }, (_, i) => 40 * Math.sin(1.7 * i + T));
      const ptr = put(x);
      simd.softmaxRows(ptr, 2 * T, T, causal, 0);
      const got = get(ptr, x.length);
      for (let r = 0; r < 2 * T; r++) {
        const len = causal ? (r % T) + 1 : T;
        const row = x.slice(r * T, r * T + len), m = Math.max(...row);
        const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
        const want = row.map((v) => Math.exp(v - m) / z);
        // float32 inputs: (x − max) carries ≈ |x − max|·6e-8 of rounding into the exponent, so
        // relative 1e-5 over this ±40 range; entries below e^-87 of the max come out ≈ 1e-38
        for (let j = 0; j < len; j++) {
          const g = got[r * T + j]!, w = want[j]!;
          assert(Math.abs(g - w) <= 1e-5 * w + 1e-37, `T=${T} row ${r}[${j}]: ${g} vs ${w}`);
        }
        for (let j = len; j < T; j++) assertEquals(got[r * T + j], 0, "masked entries are 0");
      }
    }
  }
});

Deno.test("simd GELU: forward and backward match float64, finite at ±100", async () => {
  const { simd, put, get } = await setup();
  const x = [-100, -20, -5, -1, -0.1, 0, 0.1, 1, 2.5, 5, 20, 100, 0.3];
  const dy = x.map((_, i) => 1 + i / 10);
  const n = x.length;
  const xp = put(x), yp = put(new Float32Array(n)), dyp = put(dy), dxp = put(new Float32Array(n));
  simd.geluForward(xp, yp, n);
  simd.geluBackward(dyp, xp, dxp, n);
  const gate = (a: number) => 1 / (1 + Math.exp(-2 * GELU_C * (a + GELU_A * a ** 3)));
  const y = get(yp, n), dx = get(dxp, n);
  for (let i = 0; i < n; i++) {
    const a = x[i]!, s = gate(a);
    const wantY = a * s;
    const wantDx = dy[i]! * (s + a * s * (1 - s) * 2 * GELU_C * (1 + 3 * GELU_A * a * a));
    assert(
      Math.abs(y[i]! - wantY) <= 1e-6 * (1 + Math.abs(wantY)),
      `gelu(${a}) = ${y[i]}, want ${wantY}`,
    );
    assert(
      Math.abs(dx[i]! - wantDx) <= 1e-5 * (1 + Math.abs(wantDx)),
      `gelu'(${a}) = ${dx[i]}, want ${wantDx}`,
    );
  }
});

Deno.test("simd layer norm: a constant row stays finite; gradients sum over rows", async () => {
  const { simd, put, get } = await setup();
  const R = 3, C = 6;
  const x = [5, 5, 5, 5, 5, 5, 1, 2, 3, 4, 5, 6, -3, 0, 3, 9, 1, 2];
  const g = [1, 2, 3, 1, 2, 3], b = [0, 1, 0, 1, 0, 1];
  const xp = put(x), gp = put(g), bp = put(b), yp = put(new Float32Array(R * C));
  simd.layerNormForward(xp, gp, bp, yp, R, C);
  const y = get(yp, R * C);
  const want: number[] = [];
  for (let r = 0; r < R; r++) {
    const row = x.slice(r * C, r * C + C), m = row.reduce((a, v) => a + v) / C;
    const s = 1 / Math.sqrt(row.reduce((a, v) => a + (v - m) ** 2, 0) / C + LN_EPS);
    row.forEach((v, c) => want.push((v - m) * s * g[c]! + b[c]!));
  }
  assert(
    worst(y, want.map((v) => v + 1e-9)) < 1e-5 || want.every((v, i) => Math.abs(y[i]! - v) < 1e-5),
    `${y} vs ${want}`,
  );
  // db = column sums of dy whatever x is
  const dy = Array.from({ length: R * C }, (_, i) => i % 5 - 2);
  const dyp = put(dy),
    dxp = put(new Float32Array(R * C)),
    dgp = put(new Float32Array(C)),
    dbp = put(new Float32Array(C));
  simd.layerNormBackward(dyp, xp, gp, dxp, dgp, dbp, R, C);
  const db = get(dbp, C);
  for (let c = 0; c < C; c++) assertEquals(db[c], dy[c]! + dy[C + c]! + dy[2 * C + c]!);
  assert(get(dxp, R * C).every(Number.isFinite));
});

Deno.test("simd: the module's exports are the table's kernels with the table's arity", async () => {
  await compileSimd();
  const memory = new WebAssembly.Memory({ initial: 1 });
  const simd = simdFor(memory) as unknown as Record<string, (...a: number[]) => unknown>;
  const names = Object.keys(SIMD_KERNEL_PARAMS).sort();
  const exported = [...simdSource().matchAll(/\(func \(export "(\w+)"\)/g)].map((m) => m[1]!);
  assertEquals(exported.sort(), names);
  for (const name of names) {
    assertEquals(
      simd[name]!.length,
      SIMD_KERNEL_PARAMS[name]!.length,
      name,
    );
  }
  // each assembly numbers its own labels and constants: the text does not depend on earlier calls
  assertEquals(simdSource(), simdSource());
});
