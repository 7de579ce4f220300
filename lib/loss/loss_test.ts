import { assertAlmostEquals } from "@std/assert";
import { tf, useBackend } from "../backend/mod.ts";
import { jointNextTokenLoss } from "./mod.ts";

// B=1, T=4, V=3; the visual block is position 1 only: [vs] v1 [text] [text]
const LOGITS = [[[2, 0, 0], [0, 1, 0], [0, 0, 3], [1, 1, 1]]];
const ce = (row: number[], k: number) =>
  Math.log(row.reduce((s, x) => s + Math.exp(x), 0)) - row[k]!;
const text = (ce([0, 1, 0], 2) + ce([0, 0, 3], 1)) / 2;

// the composed tfjs ops (cpu) and the fused cross-entropy kernel (wasm with BLAS) against the
// same hand computations
for (const backend of ["cpu", "wasm"] as const) {
  const setup = async () => {
    await useBackend(backend);
    return { logits: tf.tensor3d(LOGITS) };
  };

  Deno.test(`joint loss (${backend}): next-token alignment, vision and text means, λ`, async () => {
    const { logits } = await setup();
    // labels: pos1 (visual) = 0, pos2 = 2, pos3 = 1; pos0 ignored
    const labels = tf.tensor2d([[-100, 0, 2, 1]], [1, 4], "int32");
    const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 0.5, align: "next" });
    // vision: logits at 0 predict label at 1 (= 0); text: logits 1 → label 2, logits 2 → label 3
    const vision = ce([2, 0, 0], 0);
    assertAlmostEquals(out.vision.dataSync()[0]!, vision, 1e-5);
    assertAlmostEquals(out.text.dataSync()[0]!, text, 1e-5);
    assertAlmostEquals(out.total.dataSync()[0]!, text + 0.5 * vision, 1e-5);
    // d total / d logits at position 0 (vision target 0, weight λ = 0.5): 0.5·(softmax − onehot)
    const g = tf.grad((l: tf.Tensor) =>
      jointNextTokenLoss(l as tf.Tensor3D, labels, [1, 2], { lambda: 0.5, align: "next" }).total
    )(logits).dataSync();
    const z = Math.exp(2) + 2;
    assertAlmostEquals(g[0]!, 0.5 * (Math.exp(2) / z - 1), 1e-5);
    assertAlmostEquals(g[1]!, 0.5 / z, 1e-5);
    assertAlmostEquals(g[9]! + g[10]! + g[11]!, 0, 1e-6); // the last position has no target
  });

  Deno.test(`joint loss (${backend}): SFT is the same loss with no vision labels`, async () => {
    const { logits } = await setup();
    const labels = tf.tensor2d([[-100, -100, 2, 1]], [1, 4], "int32");
    const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 1, align: "next" });
    assertAlmostEquals(out.vision.dataSync()[0]!, 0, 1e-7);
    assertAlmostEquals(out.total.dataSync()[0]!, out.text.dataSync()[0]!, 1e-7);
  });

  Deno.test(`joint loss (${backend}): align self supervises a visual position with its own logits`, async () => {
    const { logits } = await setup();
    const labels = tf.tensor2d([[-100, 1, 2, 1]], [1, 4], "int32");
    const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 1, align: "self" });
    assertAlmostEquals(out.vision.dataSync()[0]!, ce([0, 1, 0], 1), 1e-5);
    // the text part does not change with the alignment
    assertAlmostEquals(out.text.dataSync()[0]!, text, 1e-5);
  });
}
