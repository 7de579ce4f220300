/**
 * The joint next-token loss of DV-SFT (docs/ARCHITECTURE.md "Sequence and loss").
 *
 * Causal-LM cross-entropy exactly as any trainer computes it: logits at p predict the label
 * at p + 1; -100 is ignored. A target position inside the visual block counts toward the
 * vision loss, any other toward the text loss; each is the mean over its own supervised
 * tokens, and total = text + λ·vision. Plain SFT is the same call with every vision label
 * -100. `align: "self"` (ablation) supervises visual position p with its own logits.
 */
import { z } from "zod";
import { tf, tokenCrossEntropy } from "../backend/mod.ts";

export const LossOptionsSchema = z.strictObject({
  lambda: z.number().min(0).max(100).default(1),
  align: z.enum(["next", "self"]).default("next"),
});
export type LossOptions = z.infer<typeof LossOptionsSchema>;

export interface JointLoss {
  /** Scalars. */
  total: tf.Scalar;
  text: tf.Scalar;
  vision: tf.Scalar;
}

/**
 * Negative log-likelihood of `targets` under `logits` per position, 0 where the target is -100
 * (one fused kernel on wasm, tfjs ops elsewhere).
 */
function nll(logits: tf.Tensor3D, targets: tf.Tensor2D): { loss: tf.Tensor2D; valid: tf.Tensor2D } {
  const valid = tf.cast(tf.greaterEqual(targets, 0), "float32") as tf.Tensor2D;
  return { loss: tokenCrossEntropy(logits, targets) as tf.Tensor2D, valid };
}

const IGNORE = -100;

function maskedMean(loss: tf.Tensor, mask: tf.Tensor): tf.Scalar {
  return tf.div(tf.sum(tf.mul(loss, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
}

/**
 * @param logits [B, T, V]
 * @param labels [B, T] int32, -100 where unsupervised
 * @param vision the visual block's positions [start, end) in the sequence
 *
 * @example
 * ```ts
 * const { total, text, vision } = jointNextTokenLoss(logits, labels, [1, 65], { lambda: 1, align: "next" });
 * ```
 */
export function jointNextTokenLoss(
  logits: tf.Tensor3D,
  labels: tf.Tensor2D,
  vision: [number, number],
  options: LossOptions = { lambda: 1, align: "next" },
): JointLoss {
  const [B, T] = logits.shape;
  const [v0, v1] = vision;
  if (!(0 <= v0 && v0 <= v1 && v1 <= T)) {
    throw new RangeError(`Cannot compute loss: vision range [${v0}, ${v1}) is outside [0, ${T})`);
  }
  // shifted: logits[:, p] vs labels[:, p + 1], p = 0 … T-2; the last position has no target
  // (the targets move, not the [B, T, V] logits: no copy of the largest tensor)
  const targets = tf.concat([
    tf.slice(labels, [0, 1], [B, T - 1]),
    tf.fill([B, 1], IGNORE, "int32"),
  ], 1) as tf.Tensor2D;
  const shifted = nll(logits, targets);
  const targetIsVision = new Float32Array(T);
  for (let p = 0; p < T - 1; p++) targetIsVision[p] = p + 1 >= v0 && p + 1 < v1 ? 1 : 0;
  const visT = tf.tensor2d(targetIsVision, [1, T]);
  const textMask = tf.mul(shifted.valid, tf.sub(1, visT));
  const text = maskedMean(shifted.loss, textMask);
  let visionLoss: tf.Scalar;
  if (options.align === "next") {
    visionLoss = maskedMean(shifted.loss, tf.mul(shifted.valid, visT));
  } else {
    // visual position p supervised by its own label: targets = labels inside [v0, v1), else none
    const inBlock = new Uint8Array(T).fill(1, v0, v1);
    const own = nll(
      logits,
      tf.where(
        tf.tensor2d(inBlock, [1, T], "bool"),
        labels,
        tf.fill([B, T], IGNORE, "int32"),
      ) as tf.Tensor2D,
    );
    visionLoss = maskedMean(own.loss, own.valid);
  }
  return {
    total: tf.add(text, tf.mul(options.lambda, visionLoss)) as tf.Scalar,
    text,
    vision: visionLoss,
  };
}
