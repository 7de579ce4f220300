import { assert } from "@std/assert";
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
