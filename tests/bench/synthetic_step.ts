/**
 * A training step of the small MLLM on synthetic inputs (fixed seeds: the timing depends only on
 * the shapes), shared by the training benchmarks.
 */
import { tf } from "../../lib/backend/mod.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import {
  type ModelConfig,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../../lib/model/mod.ts";
import { AdamW, OptimizerConfigSchema } from "../../lib/train/optimizer.ts";
import type { Gemm } from "../../lib/backend/blas.ts";

/** The machine's sgemm limit through `gemm`: GFLOP/s of fp32 2048³ products (1 warm-up, 5 timed). */
export function sgemmLimit(gemm: Gemm<Float32Array>): number {
  const n = 2048, a = new Float32Array(n * n).fill(1), c = new Float32Array(n * n);
  gemm(false, false, n, n, n, 1, a, n, a, n, 0, c, n);
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) gemm(false, false, n, n, n, 1, a, n, a, n, 0, c, n);
  return (2 * n ** 3) / ((performance.now() - t0) / 5) / 1e6;
}

export interface SyntheticStep {
  /**
   * One step: loss, gradients, the AdamW update (lr 1e-3, run through `around`, e.g. to time
   * it), then a sync.
   */
  step(around?: (update: () => tf.Tensor) => tf.Tensor): Promise<void>;
  /** the model's trainable parameters */
  parameters: number;
  dispose(): void;
}

export function syntheticStep(c: ModelConfig, B: number): SyntheticStep {
  const model = new SmallVLM(c, undefined, 0);
  const opt = new AdamW(OptimizerConfigSchema.parse({}), model.weights);
  const S = c.imageSize, T = sequenceLength(c), N = numVisualTokens(c);
  const pixels = tf.randomUniform([B, S, S, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  const ids = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 2) as tf.Tensor2D;
  const labels = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 3) as tf.Tensor2D;
  return {
    parameters: model.parameterCount,
    step: async (around = (update) => update()) => {
      const { value, grads } = tf.variableGrads(() =>
        jointNextTokenLoss(model.apply(pixels, ids), labels, [1, N + 1]).total
      );
      const norm = around(() => opt.apply(grads, 1e-3));
      await value.data();
      tf.dispose([value, norm, ...Object.values(grads)]);
    },
    dispose: () => {
      tf.dispose([pixels, ids, labels]);
      opt.dispose();
      model.dispose();
    },
  };
}
