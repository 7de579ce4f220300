import { IGNORE_INDEX } from "./assign.ts";
import type { LabelSet } from "./label_set.ts";

/**
 * Agreement of two label sets of the same image and grid: over the tokens that have a
 * label in either, the fraction whose labels are equal.
 */
export function labelAgreement(
  a: LabelSet,
  b: LabelSet,
): { agree: number; total: number; rate: number } {
  if (a.geometry.tokens !== b.geometry.tokens) {
    throw new RangeError(
      `Cannot compare label sets: ${a.geometry.tokens} vs ${b.geometry.tokens} tokens`,
    );
  }
  let agree = 0;
  let total = 0;
  for (let t = 0; t < a.geometry.tokens; t++) {
    const x = a.tokens.label[t]!;
    const y = b.tokens.label[t]!;
    if (x === IGNORE_INDEX && y === IGNORE_INDEX) continue;
    total++;
    if (x === y) agree++;
  }
  return { agree, total, rate: total ? agree / total : 1 };
}
