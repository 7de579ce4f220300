/**
 * Matrix-multiply FLOPs of the small MLLM, counted from its shapes (2·m·n·k per product).
 * A training step is counted as 3× the forward pass (backward ≈ 2× forward), the usual
 * convention for model FLOP/s utilization.
 */
import { type ModelConfig, numVisualTokens, sequenceLength } from "./config.ts";

function blockFlops(tokens: number, d: number, mlpRatio: number, attnTokens: number): number {
  const proj = 2 * tokens * d * (3 * d) + 2 * tokens * d * d; // qkv + output
  const attn = 2 * 2 * tokens * attnTokens * d; // scores + weighted sum
  const mlp = 2 * 2 * tokens * d * (mlpRatio * d);
  return proj + attn + mlp;
}

/** Forward matmul FLOPs for a batch of `batch` sequences. */
export function forwardFlops(c: ModelConfig, batch: number): number {
  const P = (c.imageSize / c.patchSize) ** 2;
  const N = numVisualTokens(c);
  const T = sequenceLength(c);
  let f = 2 * P * (c.patchSize * c.patchSize * 3) * c.visionDim;
  f += c.visionLayers * blockFlops(P, c.visionDim, c.mlpRatio, P);
  f += 2 * N * (4 * c.visionDim) * c.dim + 2 * N * c.dim * c.dim;
  f += c.layers * blockFlops(T, c.dim, c.mlpRatio, T);
  f += 2 * T * c.dim * c.vocabSize;
  return f * batch;
}

/** Training-step FLOPs (forward + backward). */
export function trainStepFlops(c: ModelConfig, batch: number): number {
  return 3 * forwardFlops(c, batch);
}
