/**
 * AdamW (decoupled weight decay on matrices), warmup + cosine learning rate, and global-norm
 * gradient clipping. State lives in tf.Variables owned by the optimizer (`dispose()`).
 */
import { z } from "zod";
import { tf } from "../backend/mod.ts";

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
      this.m.set(name, tf.variable(tf.zerosLike(w), false, `${w.name}.m`));
      this.v.set(name, tf.variable(tf.zerosLike(w), false, `${w.name}.v`));
    }
  }

  /**
   * Clip and apply gradients, keyed by tf.Variable name as `tf.variableGrads` returns them. Returns the global gradient norm before
   * clipping (a scalar the caller disposes).
   */
  apply(grads: Record<string, tf.Tensor>, lr: number): tf.Scalar {
    const c = this.config;
    this.t++;
    const t = this.t;
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

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
  }
}
