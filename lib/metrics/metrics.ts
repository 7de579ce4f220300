/**
 * Answer metrics: exact match (normalized), ANLS (DocVQA, τ = 0.5), VQA accuracy
 * (min(1, matches/3) with the VQA answer normalization), relaxed accuracy (ChartQA, 5 %),
 * and a paired bootstrap for comparing runs.
 */
import type { Rng } from "../util/rng.ts";

/** SQuAD-style: lower case, no punctuation, no articles, single spaces. */
export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, " ").replace(/\b(a|an|the)\b/g, " ").replace(
    /\s+/g,
    " ",
  ).trim();
}

export function exactMatch(pred: string, gts: string[]): number {
  const p = normalizeAnswer(pred);
  return gts.some((g) => normalizeAnswer(g) === p) ? 1 : 0;
}

export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** ANLS of one prediction: max over references of 1 − NL when NL < τ, else 0 (DocVQA). */
export function anls(pred: string, gts: string[], tau = 0.5): number {
  const p = pred.toLowerCase().trim().replace(/\s+/g, " ");
  let best = 0;
  for (const g0 of gts) {
    const g = g0.toLowerCase().trim().replace(/\s+/g, " ");
    const nl = levenshtein(p, g) / Math.max(p.length, g.length, 1);
    best = Math.max(best, nl < tau ? 1 - nl : 0);
  }
  return best;
}

const NUMBER_WORDS: Record<string, string> = {
  none: "0",
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
  five: "5",
  six: "6",
  seven: "7",
  eight: "8",
  nine: "9",
  ten: "10",
};
const CONTRACTIONS: Record<string, string> = {
  dont: "don't",
  doesnt: "doesn't",
  isnt: "isn't",
  arent: "aren't",
  cant: "can't",
  wont: "won't",
  im: "i'm",
  ive: "i've",
  youre: "you're",
};

/** The VQA evaluation's answer normalization (punctuation, number words, articles, contractions). */
export function normalizeVqa(s: string): string {
  let t = s.toLowerCase().replace(/\n|\t/g, " ").trim();
  // punctuation: dropped, except a period between digits (decimals) and commas in numbers
  t = t.replace(/(\d),(\d)/g, "$1$2").replace(/(?<!\d)\.(?!\d)/g, "").replace(
    /[;\/\[\]"{}()=+\\_\-><@`,?!*#%^&$|~:]/g,
    " ",
  );
  return t.split(/\s+/).filter(Boolean).map((w) => NUMBER_WORDS[w] ?? CONTRACTIONS[w] ?? w).filter((
    w,
  ) => !["a", "an", "the"].includes(w)).join(" ");
}

/** VQA accuracy: min(1, (#references equal to the prediction) / 3). */
export function vqaAccuracy(pred: string, gts: string[]): number {
  const p = normalizeVqa(pred);
  return Math.min(1, gts.filter((g) => normalizeVqa(g) === p).length / 3);
}

function parseNumber(s: string): number | null {
  const t = s.trim().replace(/[,$%]/g, "");
  return /^[-+]?\d*\.?\d+(e[-+]?\d+)?$/i.test(t) ? Number(t) : null;
}

/** ChartQA's relaxed accuracy: numbers within 5 % of the reference (exact when it is 0), else exact match. */
export function relaxedAccuracy(pred: string, gts: string[], tolerance = 0.05): number {
  for (const g of gts) {
    const pn = parseNumber(pred), gn = parseNumber(g);
    if (pn !== null && gn !== null) {
      if (gn === 0 ? pn === 0 : Math.abs(pn - gn) / Math.abs(gn) <= tolerance) return 1;
    } else if (pred.trim().toLowerCase() === g.trim().toLowerCase()) return 1;
  }
  return 0;
}

export const METRICS = {
  em: exactMatch,
  anls,
  vqa: vqaAccuracy,
  relaxed: relaxedAccuracy,
} as const;
export type MetricName = keyof typeof METRICS;

/**
 * Paired bootstrap of the mean difference b − a over items scored by both runs: the 95 %
 * interval of the resampled means.
 */
export function pairedBootstrap(
  a: number[],
  b: number[],
  rng: Rng,
  samples = 2000,
): { delta: number; lo: number; hi: number } {
  if (a.length !== b.length || a.length === 0) {
    throw new RangeError(`Cannot bootstrap: ${a.length} vs ${b.length} items`);
  }
  const d = a.map((x, i) => b[i]! - x);
  const mean = d.reduce((s, x) => s + x, 0) / d.length;
  const means: number[] = [];
  for (let k = 0; k < samples; k++) {
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[Math.floor(rng.next() * d.length)]!;
    means.push(s / d.length);
  }
  means.sort((x, y) => x - y);
  return {
    delta: mean,
    lo: means[Math.floor(0.025 * samples)]!,
    hi: means[Math.floor(0.975 * samples)]!,
  };
}
