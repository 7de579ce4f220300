/**
 * AdamW (decoupled weight decay on matrices), warmup + cosine learning rate, and global-norm
 * gradient clipping. State lives in tf.Variables owned by the optimizer (`dispose()`).
 */
import { webgpuAdamW, webgpuFusedActive } from "../backend/webgpu_fused.ts";
import { z } from "zod";
import { fusedActive, tf, wasmSimd } from "../backend/mod.ts";

export const OptimizerConfigSchema = z.strictObject({
  lr: z.number().positive().max(1).default(3e-3),
  minLrRatio: z.number().min(0).max(1).default(0.1),
  warmupSteps: z.number().int().min(0).default(50),
  weightDecay: z.number().min(0).max(1).default(0.01),
  beta1: z.number().min(0).max(1).default(0.9),
  beta2: z.number().min(0).max(1).default(0.95),
  eps: z.number().positive().default(1e-8),
  /** Global gradient-norm clip; 0 turns clipping off. */
  clip: z.number().min(0).default(1),
});
export type OptimizerConfig = z.infer<typeof OptimizerConfigSchema>;

/** Learning rate at `step` (0-based) of `total`: linear warmup, then cosine to lr·minLrRatio. */
export function learningRate(c: OptimizerConfig, step: number, total: number): number {
  if (step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  const progress = Math.min(1, (step - c.warmupSteps) / Math.max(1, total - c.warmupSteps));
  const min = c.lr * c.minLrRatio;
  return min + 0.5 * (c.lr - min) * (1 + Math.cos(Math.PI * progress));
}

export class AdamW {
  /** Completed updates (Adam's t). */
  t = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  constructor(readonly config: OptimizerConfig, readonly weights: Map<string, tf.Variable>) {
    for (const [name, w] of weights) {
      for (const [moments, suffix] of [[this.m, "m"], [this.v, "v"]] as const) {
        const zeros = tf.zerosLike(w);
        moments.set(name, tf.variable(zeros, false, `${w.name}.${suffix}`));
        // the variable holds its own reference: kept, the zeros would stay on the heap for the
        // whole run, and the first in-place update would copy every moment (`own`)
        zeros.dispose();
      }
    }
  }

  /**
   * Clip and apply gradients, keyed by tf.Variable name as `tf.variableGrads` returns them. Returns the global gradient norm before
   * clipping (a scalar the caller disposes).
   */
  apply(grads: Record<string, tf.Tensor>, lr: number): tf.Scalar {
    const c = this.config;
    // webgpu: the fused in-place update (a few dispatches instead of ~10 per parameter); it
    // advances t itself
    if (webgpuFusedActive()) return webgpuAdamW(this, grads, lr);
    this.t++;
    const t = this.t;
    if (fusedActive()) return this.#applyInPlace(grads, lr);
    return tf.tidy(() => {
      const names = [...this.weights.keys()].filter((n) => grads[this.weights.get(n)!.name]);
      const gradOf = (n: string) => grads[this.weights.get(n)!.name]!;
      const sq = names.map((n) => tf.sum(tf.square(gradOf(n))));
      // a chain of adds, not tf.addN: webgpu's AddN returns wrong sums for more than 2 inputs (tfjs 4.22)
      const norm = tf.sqrt(sq.reduce((a, b) => tf.add(a, b))) as tf.Scalar;
      const scale = c.clip > 0 ? tf.minimum(1, tf.div(c.clip, tf.add(norm, 1e-6))) : tf.scalar(1);
      const bc1 = 1 - c.beta1 ** t;
      const bc2 = 1 - c.beta2 ** t;
      for (const name of names) {
        const w = this.weights.get(name)!;
        const g = tf.mul(gradOf(name), scale);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        m.assign(tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1)));
        v.assign(tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2)));
        let update = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), c.eps));
        // decoupled weight decay on matrices only (not biases, norms)
        if (w.rank >= 2 && c.weightDecay > 0) update = tf.add(update, tf.mul(w, c.weightDecay));
        w.assign(tf.sub(w, tf.mul(update, lr)));
      }
      return tf.keep(norm);
    });
  }

  /**
   * The same update as the tensor path, as two SIMD passes over the wasm heap (`simd.ts`): the
   * global norm, then w, m and v updated in place (≈ 2 000 elementwise kernels a `small` step
   * become none). Only on `wasm` with the fused kernels on; float32 arithmetic in another order,
   * so it differs from the tensor path in the last bits.
   */
  #applyInPlace(grads: Record<string, tf.Tensor>, lr: number): tf.Scalar {
    const c = this.config;
    // deno-lint-ignore no-explicit-any
    const backend = tf.backend() as any;
    const view = (x: tf.Tensor) => backend.typedArrayFromHeap(x) as Float32Array;
    // in place only on buffers nothing else shares (a clone shares its source's buffer)
    const own = (x: tf.Variable) => {
      if (backend.refCount(x.dataId) > 1) {
        const fresh = tf.tensor(view(x).slice(), x.shape, "float32");
        x.assign(fresh);
        fresh.dispose();
      }
    };
    const { simd, ptr } = wasmSimd()!;
    const names = [...this.weights.keys()].filter((n) => grads[this.weights.get(n)!.name]);
    let sq = 0;
    for (const n of names) {
      const g = grads[this.weights.get(n)!.name]!;
      sq += simd.sumSquares(ptr(g), g.size);
    }
    const norm = Math.sqrt(sq);
    const scale = c.clip > 0 ? Math.min(1, c.clip / (norm + 1e-6)) : 1;
    const bc1 = 1 - c.beta1 ** this.t, bc2 = 1 - c.beta2 ** this.t;
    for (const name of names) {
      const w = this.weights.get(name)!;
      const decay = w.rank >= 2 ? c.weightDecay : 0;
      const m = this.m.get(name)!, v = this.v.get(name)!;
      for (const x of [w, m, v]) own(x);
      simd.adamw(
        ptr(w),
        ptr(m),
        ptr(v),
        ptr(grads[w.name]!),
        w.size,
        scale,
        lr,
        c.beta1,
        c.beta2,
        bc1,
        bc2,
        c.eps,
        decay,
      );
    }
    return tf.scalar(norm);
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
  }
}
