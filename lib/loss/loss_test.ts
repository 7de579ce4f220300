import { assertAlmostEquals } from "@std/assert";
import { tf } from "../backend/mod.ts";
import { jointNextTokenLoss } from "./mod.ts";

// B=1, T=4, V=3; the visual block is position 1 only: [vs] v1 [text] [text]
const logits = tf.tensor3d([[[2, 0, 0], [0, 1, 0], [0, 0, 3], [1, 1, 1]]]);
const ce = (row: number[], k: number) =>
  Math.log(row.reduce((s, x) => s + Math.exp(x), 0)) - row[k]!;

Deno.test("joint loss: next-token alignment, vision and text means, λ", () => {
  // labels: pos1 (visual) = 0, pos2 = 2, pos3 = 1; pos0 ignored
  const labels = tf.tensor2d([[-100, 0, 2, 1]], [1, 4], "int32");
  const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 0.5, align: "next" });
  // vision: logits at 0 predict label at 1 (= 0)
  const vision = ce([2, 0, 0], 0);
  // text: logits 1 → label 2 (= 2), logits 2 → label 3 (= 1); mean of the two
  const text = (ce([0, 1, 0], 2) + ce([0, 0, 3], 1)) / 2;
  assertAlmostEquals(out.vision.dataSync()[0]!, vision, 1e-5);
  assertAlmostEquals(out.text.dataSync()[0]!, text, 1e-5);
  assertAlmostEquals(out.total.dataSync()[0]!, text + 0.5 * vision, 1e-5);
});

Deno.test("joint loss: SFT is the same loss with no vision labels (vision = 0, total = text)", () => {
  const labels = tf.tensor2d([[-100, -100, 2, 1]], [1, 4], "int32");
  const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 1, align: "next" });
  assertAlmostEquals(out.vision.dataSync()[0]!, 0, 1e-7);
  assertAlmostEquals(out.total.dataSync()[0]!, out.text.dataSync()[0]!, 1e-7);
});

Deno.test("joint loss: align self supervises a visual position with its own logits", () => {
  const labels = tf.tensor2d([[-100, 1, 2, 1]], [1, 4], "int32");
  const out = jointNextTokenLoss(logits, labels, [1, 2], { lambda: 1, align: "self" });
  assertAlmostEquals(out.vision.dataSync()[0]!, ce([0, 1, 0], 1), 1e-5);
  // the text part does not change with the alignment
  const text = (ce([0, 1, 0], 2) + ce([0, 0, 3], 1)) / 2;
  assertAlmostEquals(out.text.dataSync()[0]!, text, 1e-5);
});
