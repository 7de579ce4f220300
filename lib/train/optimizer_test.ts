import { assert, assertEquals } from "@std/assert";
import { setFusedEnabled, tf, useBackend } from "../backend/mod.ts";
import { loadBlas } from "../backend/blas.ts";
import { AdamW, OptimizerConfigSchema } from "./optimizer.ts";

Deno.test({
  name:
    "AdamW: the in-place wasm update equals the tensor update (clipping, decay, bias correction)",
  ignore: !loadBlas(),
  fn: async () => {
    await useBackend("wasm");
    const run = async (inPlace: boolean) => {
      setFusedEnabled(inPlace);
      const weights = new Map([
        ["w", tf.variable(tf.randomNormal([6, 5], 0, 1, "float32", 1), true, `opt-w-${inPlace}`)],
        ["b", tf.variable(tf.randomNormal([5], 0, 1, "float32", 2), true, `opt-b-${inPlace}`)],
      ]);
      // a clone shares the weight's buffer: it must not change when the weight does
      const snapshot = tf.clone(weights.get("w")!);
      const before = await snapshot.data();
      const opt = new AdamW(OptimizerConfigSchema.parse({ clip: 0.5, weightDecay: 0.1 }), weights);
      const norms: number[] = [];
      for (let step = 0; step < 4; step++) {
        const grads = Object.fromEntries(
          [...weights.values()].map((w, i) => [
            w.name,
            tf.randomNormal(w.shape, 0, 3, "float32", 100 + 10 * step + i), // seed 0 would mean "unseeded"
          ]),
        );
        const n = opt.apply(grads, 0.01);
        norms.push((await n.data())[0]!);
        tf.dispose([n, ...Object.values(grads)]);
      }
      const after = await snapshot.data();
      assert(before.every((x, i) => x === after[i]), "a clone of a weight kept its values");
      const out = [await weights.get("w")!.data(), await weights.get("b")!.data()];
      opt.dispose();
      tf.dispose([snapshot, ...weights.values()]);
      return { norms, out };
    };
    try {
      const a = await run(true), b = await run(false);
      for (let i = 0; i < 4; i++) {
        assert(
          Math.abs(a.norms[i]! - b.norms[i]!) < 1e-4 * b.norms[i]!,
          `norm ${i}: ${a.norms} vs ${b.norms}`,
        );
      }
      for (let k = 0; k < 2; k++) {
        for (let i = 0; i < b.out[k]!.length; i++) {
          assert(Math.abs(a.out[k]![i]! - b.out[k]![i]!) < 1e-5, `weight ${k}[${i}]`);
        }
      }
    } finally {
      setFusedEnabled(true);
    }
  },
});

Deno.test({
  name:
    "AdamW: its moments are the only tensors it adds, and the in-place update keeps them in place",
  ignore: !loadBlas(),
  fn: async () => {
    await useBackend("wasm");
    const weights = new Map([
      ["w", tf.variable(tf.randomNormal([64, 32], 0, 1, "float32", 3), true, "own-w")],
      ["b", tf.variable(tf.randomNormal([32], 0, 1, "float32", 4), true, "own-b")],
    ]);
    const floats = 64 * 32 + 32;
    const before = tf.memory();
    const opt = new AdamW(OptimizerConfigSchema.parse({}), weights);
    const after = tf.memory();
    // two moments a weight; the zeros they start from are not kept beside them (they were, and
    // held 8 bytes a parameter on the heap for the whole run: a 204 M model did not fit)
    assertEquals(after.numTensors - before.numTensors, 2 * weights.size);
    assertEquals(after.numBytes - before.numBytes, 2 * 4 * floats);
    const ids = [...opt.m.values(), ...opt.v.values()].map((x) => x.dataId);
    const grads = Object.fromEntries(
      [...weights.values()].map((
        w,
        i,
      ) => [w.name, tf.randomNormal(w.shape, 0, 1, "float32", 9 + i)]),
    );
    tf.dispose([opt.apply(grads, 1e-3), ...Object.values(grads)]);
    // the first update wrote the moments where they were (a shared buffer is copied first)
    assertEquals([...opt.m.values(), ...opt.v.values()].map((x) => x.dataId), ids);
    assertEquals(tf.memory().numBytes, after.numBytes, "no buffer left behind by the update");
    opt.dispose();
    tf.dispose([...weights.values()]);
  },
});
