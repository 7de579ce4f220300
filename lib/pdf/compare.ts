import type { WordBox } from "../labels/word_box.ts";

/** Intersection over union of two `[x0, y0, x1, y1]` boxes. */
export function boxIoU(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = ix * iy;
  const union = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Word-box agreement of `got` with a reference: each reference word is matched to the unused
 * word of the same text with the highest IoU; it counts when that IoU is at least `minIoU`.
 * `rate` = matched / reference words.
 */
export function wordBoxAgreement(
  reference: readonly WordBox[],
  got: readonly WordBox[],
  minIoU = 0.5,
): { matched: number; reference: number; got: number; rate: number; meanIoU: number } {
  const byText = new Map<string, number[]>();
  got.forEach((w, j) => {
    const list = byText.get(w.text);
    if (list) list.push(j);
    else byText.set(w.text, [j]);
  });
  const used = new Set<number>();
  let matched = 0;
  let iouSum = 0;
  for (const r of reference) {
    let best = -1;
    let bestIoU = 0;
    for (const j of byText.get(r.text) ?? []) {
      if (used.has(j)) continue;
      const v = boxIoU(r.box, got[j]!.box);
      if (v > bestIoU) [best, bestIoU] = [j, v];
    }
    if (best >= 0 && bestIoU >= minIoU) {
      used.add(best);
      matched++;
      iouSum += bestIoU;
    }
  }
  return {
    matched,
    reference: reference.length,
    got: got.length,
    rate: reference.length ? matched / reference.length : 1,
    meanIoU: matched ? iouSum / matched : 0,
  };
}
