import { assert, assertEquals, assertThrows } from "@std/assert";
import { compileSimd, SIMD_KERNEL_PARAMS, simdFor, simdModule } from "./simd.ts";
import {
  MIN_SPLIT,
  setSimdThreads,
  simdThreads,
  startSimdPool,
  stopSimdPool,
} from "./simd_pool.ts";
import { SharedHeapError, shareMemory, TFJS_WASM_FILES } from "./shared_heap.ts";
import { loadBlas } from "./blas.ts";
import { attention, fusedActive, layerNorm, setFusedEnabled, tf, useBackend } from "./mod.ts";

const wasmDir = new URL("../wasm-out/", import.meta.resolve("@tensorflow/tfjs-backend-wasm"));

Deno.test("shared heap: tfjs's SIMD build gets a shared memory by its flag byte alone", async () => {
  const original = await Deno.readFile(new URL(TFJS_WASM_FILES[1], wasmDir));
  const patched = shareMemory(original);
  assertEquals(patched.length, original.length);
  assertEquals(patched.filter((b, i) => b !== original[i]).length, 1);
  const memory = WebAssembly.Module.exports(
    new WebAssembly.Module(patched as Uint8Array<ArrayBuffer>),
  )
    .find((e) => e.kind === "memory");
  assert(memory);
  // already shared, not wasm, a module importing its memory: each refused with the reason
  assertThrows(() => shareMemory(patched), SharedHeapError, "expected 0x01");
  assertThrows(() => shareMemory(new Uint8Array([1, 2, 3])), SharedHeapError, "not a version-1");
  // (import "e" "m" (memory 1))
  const imports = new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0, 0, 0],
    ...[0x02, 0x08, 0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x00, 0x01],
  ]);
  new WebAssembly.Module(imports); // valid, so the refusal is about the memory
  assertThrows(() => shareMemory(imports), SharedHeapError, "no memory section");
});

/** A shared memory with the kernels and two threads, arrays placed in it. */
async function sharedSetup() {
  await compileSimd();
  const memory = new WebAssembly.Memory({ initial: 512, maximum: 65536, shared: true });
  const before = simdThreads();
  setSimdThreads(2);
  assertEquals(await startSimdPool(memory, simdModule(true), SIMD_KERNEL_PARAMS), 1);
  const simd = simdFor(memory);
  let top = 64;
  const alloc = (n: number) => {
    const ptr = top;
    top += 4 * n + 64;
    return ptr;
  };
  const put = (xs: ArrayLike<number>) => {
    const ptr = alloc(xs.length);
    new Float32Array(memory.buffer, ptr, xs.length).set(xs);
    return ptr;
  };
  const get = (ptr: number, n: number) => new Float32Array(memory.buffer, ptr, n).slice();
  const done = () => {
    stopSimdPool(memory);
    setSimdThreads(before);
  };
  return { memory, simd, alloc, put, get, done };
}

const noise = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => 3 * Math.sin(1.3 * i + seed) + Math.cos(0.7 * i));

Deno.test("simd pool: every split kernel gives the bits of one call (odd sizes, causal blocks)", async () => {
  const { memory, simd, alloc, put, get, done } = await sharedSetup();
  try {
    const n = MIN_SPLIT * 3 + 7; // a scalar tail, parts not multiples of 4
    const R = 523, C = 131, T = 97; // rows split unevenly
    const runs: Array<[string, (threads: number) => Float32Array[]]> = [];
    const x = put(noise(n, 1)), dy = put(noise(n, 2)), gate = put(noise(n, 3).map(Math.abs));
    const elementwise = (name: string, f: (out: number[]) => void, outs: number) => {
      runs.push([name, (threads) => {
        setSimdThreads(threads);
        const o = Array.from({ length: outs }, () => alloc(n));
        f(o);
        return o.map((p) => get(p, n));
      }]);
    };
    elementwise("add", ([y]) => simd.add(x, dy, y!, n), 1);
    elementwise("geluForward", ([y]) => simd.geluForward(x, y!, n), 1);
    elementwise("geluForwardKeep", ([y, g]) => simd.geluForwardKeep(x, y!, g!, n), 2);
    elementwise("geluBackward", ([dx]) => simd.geluBackward(dy, x, dx!, n), 1);
    elementwise("geluBackwardKept", ([dx]) => simd.geluBackwardKept(dy, x, gate, dx!, n), 1);
    elementwise("adamw", ([w, m, v]) => {
      for (const [p, s] of [[w, 4], [m, 5], [v, 6]] as const) {
        new Float32Array(memory.buffer, p!, n).set(noise(n, s).map((q) => s === 6 ? q * q : q));
      }
      simd.adamw(w!, m!, v!, dy, n, 0.5, 1e-3, 0.9, 0.999, 0.1, 0.01, 1e-8, 0.01);
    }, 3);
    const rows = put(noise(R * C, 7)), g = put(noise(C, 8)), b = put(noise(C, 9));
    runs.push(["layerNormForward", (threads) => {
      setSimdThreads(threads);
      const y = alloc(R * C);
      simd.layerNormForward(rows, g, b, y, R, C);
      return [get(y, R * C)];
    }]);
    for (const causal of [0, 1]) {
      runs.push([`softmaxRows causal ${causal}`, (threads) => {
        setSimdThreads(threads);
        const s = put(noise(8 * T * T, 10).map((q) => 10 * q));
        simd.softmaxRows(s, 8 * T, T, causal, 0);
        return [get(s, 8 * T * T)];
      }]);
    }
    const dots = put(noise(R, 11));
    runs.push(["softmaxBackwardRows", (threads) => {
      setSimdThreads(threads);
      const ds = put(noise(R * C, 12));
      simd.softmaxBackwardRows(rows, ds, dots, R, C);
      return [get(ds, R * C)];
    }]);
    runs.push(["scaleRows", (threads) => {
      setSimdThreads(threads);
      const dst = alloc(R * C);
      simd.scaleRows(rows, dst, dots, R, C);
      return [get(dst, R * C)];
    }]);
    for (const [name, run] of runs) {
      const one = run(1), two = run(2);
      for (const [i, a] of one.entries()) {
        const bad = a.findIndex((v, j) => !Object.is(v, two[i]![j]));
        assertEquals(bad, -1, `${name} output ${i}: element ${bad} differs across threads`);
      }
    }
  } finally {
    done();
  }
});

Deno.test("simd pool: a kernel that traps in a helper thread raises on the caller", async () => {
  const { memory, simd, done } = await sharedSetup();
  try {
    const end = memory.buffer.byteLength;
    // rows 0…R/2 lie inside the heap, the helper's half runs past its end
    const R = 2 * Math.ceil(MIN_SPLIT / 256), T = 256;
    const s = end - (R / 2) * T * 4;
    assertThrows(() => simd.softmaxRows(s, R, T, 0, 0), Error, "trapped");
    // the pool still works after it
    setSimdThreads(2);
    simd.softmaxRows(64, R, T, 0, 0);
  } finally {
    done();
  }
});

Deno.test("simd pool on the wasm backend: attention and layer norm, values and gradients, 1 vs 2 threads", async () => {
  await useBackend("wasm");
  if (!fusedActive()) return; // no BLAS here: the composed ops, nothing split
  const before = simdThreads(), exactBlas = loadBlas()?.threads?.perThread === false;
  try {
    const [B, T, C] = [2, 256, 96];
    const q = tf.randomNormal([B, T, C], 0, 1, "float32", 1);
    const k = tf.randomNormal([B, T, C], 0, 1, "float32", 2);
    const v = tf.randomNormal([B, T, C], 0, 1, "float32", 3);
    const gamma = tf.randomNormal([C], 1, 0.1, "float32", 4);
    const beta = tf.randomNormal([C], 0, 0.1, "float32", 5);
    const vars = [q, k, v, gamma, beta].map((t) => tf.variable(t));
    const run = (threads: number, causal: boolean) => {
      setSimdThreads(threads);
      const [qv, kv, vv, gv, bv] = vars as [
        tf.Variable,
        tf.Variable,
        tf.Variable,
        tf.Variable,
        tf.Variable,
      ];
      const { value, grads } = tf.variableGrads(
        () =>
          tf.sum(
            tf.mul(layerNorm(attention(qv, kv, vv, 4, causal), gv, bv), tf.sin(qv)),
          ) as tf.Scalar,
        vars,
      );
      const out = [value, ...vars.map((x) => grads[x.name]!)].map((t) => t.dataSync().slice());
      value.dispose();
      Object.values(grads).forEach((g) => g.dispose());
      return out;
    };
    for (const causal of [false, true]) {
      const one = run(1, causal), two = run(2, causal);
      for (const [i, a] of one.entries()) {
        // value, dq, dk, dv: the same arithmetic in every element, so the same bits (with
        // OpenBLAS, whose one-core and two-core sgemms agree bit for bit; MKL's need not); dγ, dβ
        // sum partial sums in another order: within float32 rounding of the largest entry
        const scale = Math.max(...a.map(Math.abs));
        let worst = 0;
        for (let j = 0; j < a.length; j++) worst = Math.max(worst, Math.abs(a[j]! - two[i]![j]!));
        const bound = i < 4 && exactBlas ? 0 : 1e-5 * scale;
        assert(worst <= bound, `causal ${causal}, output ${i}: difference ${worst} > ${bound}`);
      }
    }
  } finally {
    setSimdThreads(before);
  }
});

Deno.test("wasm Add: same-shape float32 by the SIMD kernel, the rest by tfjs, the same values", async () => {
  await useBackend("wasm");
  if (!fusedActive()) return;
  const a = tf.randomNormal([300, 257], 0, 1, "float32", 7);
  const b = tf.randomNormal([300, 257], 0, 1, "float32", 8);
  const row = tf.randomNormal([257], 0, 1, "float32", 9);
  const ints = tf.tensor([1, 2, 3], [3], "int32");
  const ours = [tf.add(a, b), tf.add(a, row), tf.add(ints, ints)].map((t) => t.dataSync());
  setFusedEnabled(false);
  try {
    const theirs = [tf.add(a, b), tf.add(a, row), tf.add(ints, ints)].map((t) => t.dataSync());
    for (const [i, x] of ours.entries()) assertEquals(Array.from(x), Array.from(theirs[i]!));
  } finally {
    setFusedEnabled(true);
  }
});

Deno.test("fused attention in blocks of query rows (T = 300: two blocks) equals the composed ops", async () => {
  await useBackend("wasm");
  if (!fusedActive()) return;
  const [B, T, C, H] = [2, 300, 48, 2];
  const vars = [1, 2, 3].map((s) => tf.variable(tf.randomNormal([B, T, C], 0, 1, "float32", s)));
  const [q, k, v] = vars as [tf.Variable, tf.Variable, tf.Variable];
  const w = tf.randomNormal([B, T, C], 0, 1, "float32", 4);
  const run = (causal: boolean) => {
    const { value, grads } = tf.variableGrads(
      () => tf.sum(tf.mul(attention(q, k, v, H, causal), w)) as tf.Scalar,
      vars,
    );
    const out = [value, ...vars.map((x) => grads[x.name]!)].map((t) =>
      Float32Array.from(t.dataSync())
    );
    value.dispose();
    Object.values(grads).forEach((g) => g.dispose());
    return out;
  };
  for (const causal of [false, true]) {
    const fused = run(causal);
    setFusedEnabled(false);
    let composed: Float32Array[];
    try {
      composed = run(causal);
    } finally {
      setFusedEnabled(true);
    }
    for (const [i, a] of fused.entries()) {
      const scale = Math.max(...composed[i]!.map(Math.abs));
      let worst = 0;
      for (let j = 0; j < a.length; j++) {
        worst = Math.max(worst, Math.abs(a[j]! - composed[i]![j]!));
      }
      assert(worst <= 2e-5 * scale, `causal ${causal}, output ${i}: ${worst} vs scale ${scale}`);
    }
  }
});
