import { assert, assertEquals } from "@std/assert";
import {
  attention,
  attentionQkv,
  fusedActive,
  gelu,
  layerNorm,
  linear,
  setFusedEnabled,
  setStashEnabled,
  stashedEntries,
  tf,
  tokenCrossEntropy,
  useBackend,
} from "./mod.ts";
import { loadBlas } from "./blas.ts";
import { setSimdThreads, simdThreads } from "./simd_pool.ts";

const rand = (shape: number[], seed: number, std = 1) =>
  tf.randomNormal(shape, 0, std, "float32", seed);

function close(a: Float32Array, b: Float32Array, what: string, tol = 2e-4) {
  assertEquals(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(a[i]!)));
  }
  assert(worst <= tol, `${what}: worst relative difference ${worst}`);
}

/**
 * Value and gradients (w.r.t. every input, through a random projection of the output) of `f`
 * on the fused path and on the composed reference path, same backend, same inputs.
 */
async function compare(
  name: string,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
) {
  const run = async (fused: boolean) => {
    setFusedEnabled(fused);
    assertEquals(fusedActive(), fused, "fused path toggles on wasm");
    const y = f(...inputs);
    const r = rand(y.shape, 99);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), r)))(inputs);
    const out = [await y.data(), ...(await Promise.all(grads.map((g) => g.data())))];
    tf.dispose([y, r, ...grads]);
    return out as Float32Array[];
  };
  try {
    const fused = await run(true);
    const composed = await run(false);
    close(composed[0]!, fused[0]!, `${name}: value`);
    for (let i = 1; i < fused.length; i++) close(composed[i]!, fused[i]!, `${name}: grad ${i - 1}`);
  } finally {
    setFusedEnabled(true);
  }
}

Deno.test({
  name: "fused wasm ops equal the composed ops: values and gradients",
  ignore: !loadBlas(), // without BLAS the fused path is off and the composed ops run
  fn: async () => {
    await useBackend("wasm");
    await compare("linear 3-D", linear, [rand([3, 5, 7], 1), rand([7, 6], 2), rand([6], 3)]);
    await compare("linear 2-D", linear, [rand([4, 9], 4), rand([9, 3], 5), rand([3], 6)]);
    await compare("layerNorm", layerNorm, [rand([2, 5, 16], 7, 3), rand([16], 8), rand([16], 9)]);
    // a row width that is not a multiple of the four SIMD lanes
    await compare("layerNorm C=19", layerNorm, [
      rand([3, 19], 22, 2),
      rand([19], 23),
      rand([19], 24),
    ]);
    await compare("gelu", gelu, [rand([4, 33], 10, 2)]);
    for (const causal of [false, true]) {
      await compare(
        `attention causal=${causal}`,
        (q, k, v) => attention(q!, k!, v!, 2, causal),
        [rand([2, 6, 8], 11), rand([2, 6, 8], 12), rand([2, 6, 8], 13)],
      );
      // T and the head width off the four SIMD lanes
      await compare(
        `attention T=9 hd=6 causal=${causal}`,
        (q, k, v) => attention(q!, k!, v!, 2, causal),
        [rand([1, 9, 12], 25, 2), rand([1, 9, 12], 26, 2), rand([1, 9, 12], 27)],
      );
    }
    // one packed [B, T, 3C] projection: read in place, one packed gradient; the composed
    // reference splits it (T = 300: two blocks of query rows)
    for (const [shape, heads, seed] of [[[2, 6, 24], 2, 30], [[2, 300, 36], 3, 31]] as const) {
      for (const causal of [false, true]) {
        await compare(
          `attentionQkv [${shape}] causal=${causal}`,
          (qkv) => attentionQkv(qkv!, heads, causal),
          [rand([...shape], seed)],
        );
      }
    }
    // cross-entropy: ignored targets, and a row whose target probability underflows float32
    const logitsValues = Array.from({ length: 2 * 5 * 7 }, (_, i) => Math.sin(i) * 3);
    logitsValues.splice(7, 7, 200, -200, 0, 0, 0, 0, 0); // row 1: target 1 has p ≈ e^-400
    const targets = tf.tensor2d([[3, 1, -100, 0, 6], [2, -100, 5, 5, 4]], [2, 5], "int32");
    await compare(
      "cross-entropy",
      (l) => tokenCrossEntropy(l!, targets),
      [tf.tensor3d(logitsValues, [2, 5, 7])],
    );
    setFusedEnabled(true);
    const ce = await tokenCrossEntropy(tf.tensor3d(logitsValues, [2, 5, 7]), targets).data();
    assert(Math.abs(ce[1]! - 400) < 1e-3, `underflowed row computed exactly: ${ce[1]}`);
    assertEquals([ce[2], ce[6]], [0, 0]);
    // the backward kernels' recompute path (nothing kept from the forward)
    setStashEnabled(false);
    try {
      await compare("gelu, recomputed", gelu, [rand([4, 9], 16, 2)]);
      await compare(
        "attentionQkv, recomputed",
        (qkv) => attentionQkv(qkv!, 2, true),
        [rand([2, 6, 24], 20)],
      );
      await compare(
        "attention, recomputed",
        (q, k, v) => attention(q!, k!, v!, 2, true),
        [rand([2, 6, 8], 17), rand([2, 6, 8], 18), rand([2, 6, 8], 19)],
      );
    } finally {
      setStashEnabled(true);
    }
    assertEquals(stashedEntries(), 0, "every kept forward result was taken by its backward");
    const before = tf.memory().numTensors;
    const buffers = () => tf.engine().backend.numDataIds();
    const x = rand([2, 6, 8], 14), g = rand([8], 20), b = rand([8], 21);
    const heapBefore = buffers();
    tf.dispose(
      tf.grads((q: tf.Tensor) => tf.sum(gelu(layerNorm(attention(q, q, q, 4, true), g, b))))([x]),
    );
    // a forward under the tape whose backward never runs: its kept results go at the next save
    tf.dispose(
      tf.grads((q: tf.Tensor) => {
        attention(q, q, q, 4, false).dispose();
        return tf.sum(gelu(q));
      })([x]),
    );
    tf.dispose(tf.grads((q: tf.Tensor) => tf.sum(attention(q, q, q, 2, true)))([x]));
    assertEquals(buffers(), heapBefore, "no wasm buffers left behind");
    tf.dispose([x, g, b]);
    assertEquals(tf.memory().numTensors, before, "no tensor leaks through the fused kernels");
  },
});

Deno.test("fused ops: the composed path runs on cpu and matches the fused kernels' shapes", async () => {
  await useBackend("cpu");
  assertEquals(fusedActive(), false);
  const y = attention(rand([1, 4, 6], 1), rand([1, 4, 6], 2), rand([1, 4, 6], 3), 3, true);
  assertEquals(y.shape, [1, 4, 6]);
  // causal: the first position attends only to itself, so its output is its own value row
  const v = rand([1, 4, 6], 3);
  const first = await tf.slice(y, [0, 0, 0], [1, 1, 6]).data();
  close(
    (await tf.slice(v, [0, 0, 0], [1, 1, 6]).data()) as Float32Array,
    first as Float32Array,
    "causal",
  );
});

Deno.test({
  name: "fused attention past 2 GiB of heap: offsets above 2³¹ on both threads' sgemms",
  ignore: !loadBlas(),
  fn: async () => {
    await useBackend("wasm");
    // 2.25 GiB of filler first, so what follows lands past 2³¹ (attention's sgemms take heap
    // offsets: read back signed, they pointed below the heap and crashed a `medium` batch of 16)
    const filler = Array.from({ length: 18 }, () => tf.zeros([32 << 20]));
    const offset = (t: tf.Tensor) =>
      (tf.backend() as unknown as { dataIdMap: Map<object, { memoryOffset: number }> })
        .dataIdMap.get(t.dataId)!.memoryOffset;
    const before = simdThreads();
    try {
      const qkv = rand([4, 40, 48], 40);
      assert(offset(qkv) >= 2 ** 31, `input at ${offset(qkv)}, not past 2 GiB`);
      for (const threads of [2, 1]) {
        setSimdThreads(threads); // 2: the items split with the helper (its sgemms by pointer)
        for (const causal of [false, true]) {
          await compare(
            `attentionQkv past 2 GiB, ${threads} SIMD thread(s), causal=${causal}`,
            (x) => attentionQkv(x!, 4, causal),
            [qkv],
          );
        }
      }
      qkv.dispose();
    } finally {
      setSimdThreads(before);
      tf.dispose(filler);
    }
  },
});
