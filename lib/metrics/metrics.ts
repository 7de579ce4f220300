/**
 * Answer metrics, each reproducing one reference implementation exactly (same score on every
 * committed vector in tests/fixtures/metrics/, made by running the reference code itself):
 *
 * - `exactMatch`: SQuAD v1.1 `normalize_answer` + `exact_match_score`, max over references
 *   (the official evaluate-v1.1.py, as in allenai/bi-att-flow squad/evaluate-v1.1.py).
 * - `anls`: lmms-eval `anls` (lmms_eval/api/metrics.py; DocVQA / InfoVQA), τ = 0.5.
 * - `vqaAccuracy`: lmms-eval `textvqa_process_results` with `EvalAIAnswerProcessor`
 *   (lmms_eval/tasks/textvqa/utils.py, _task_utils/vqa_eval_metric.py), the EvalAI TextVQA /
 *   VQAv2 evaluation: mean over the leave-one-out subsets of the human answers.
 * - `relaxedAccuracy`: lmms-eval ChartQA `relaxed_correctness` (lmms_eval/tasks/chartqa/utils.py),
 *   any reference.
 * - `ocrbenchMatch`: lmms-eval `ocrbench_process_results` (lmms_eval/tasks/ocrbench/utils.py):
 *   a reference contained in the prediction; VLMEvalKit's rule plus full-width ASCII folding.
 *
 * Also a paired bootstrap for comparing runs.
 */
import type { Rng } from "../util/rng.ts";
import { codePoints, PY_WORD_CLASS, pyFloat, pyLen, pySplit, pyStrip } from "./_python_text.ts";

/**
 * Version of each metric's definition. Cached scores are keyed by it: bump a metric's version
 * whenever its scores can change, so stale scores are never mixed with new ones.
 */
export const METRIC_VERSIONS = {
  em: "squad-v1.1/1",
  anls: "lmms-eval-anls/1",
  vqa: "lmms-eval-textvqa-evalai/1",
  relaxed: "lmms-eval-chartqa-relaxed/1",
  ocrbench: "lmms-eval-ocrbench/1",
  ocrbench_hme: "lmms-eval-ocrbench-hme/1",
} as const;

function needReferences(name: string, gts: readonly string[]): void {
  if (gts.length === 0) {
    // Every reference raises on an empty list (max/min/mean of nothing); so does this.
    throw new RangeError(`Cannot score ${name}: the list of reference answers is empty`);
  }
}

// ---- Exact match: SQuAD v1.1 ---------------------------------------------------------------------

/** Python's `string.punctuation`: ASCII only, so “ ” — … and other symbols are kept. */
const ASCII_PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
const ARTICLES_RE = new RegExp(
  `(?<!${PY_WORD_CLASS})(?:a|an|the)(?!${PY_WORD_CLASS})`,
  "gu",
);

/** SQuAD's `normalize_answer`: lower case, delete ASCII punctuation, articles → space, single spaces. */
export function normalizeAnswer(s: string): string {
  let t = "";
  for (const ch of s.toLowerCase()) if (!ASCII_PUNCTUATION.has(ch)) t += ch;
  return pySplit(t.replace(ARTICLES_RE, " ")).join(" ");
}

/** 1 when the prediction equals some reference after `normalizeAnswer`, else 0 (SQuAD EM). */
export function exactMatch(pred: string, gts: readonly string[]): number {
  needReferences("exact match", gts);
  const p = normalizeAnswer(pred);
  return gts.some((g) => normalizeAnswer(g) === p) ? 1 : 0;
}

// ---- ANLS: lmms-eval -----------------------------------------------------------------------------

/** Levenshtein distance over code points (insert, delete, substitute all cost 1). */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  const x = codePoints(a), y = codePoints(b);
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[y.length]!;
}

/**
 * ANLS of one prediction (lmms-eval `anls`): 1 − the smallest normalized distance over the
 * references, 0 when that is below τ (so exactly 0.5 is kept). The distance is between the
 * stripped, lower-cased, whitespace-collapsed strings; the denominator is the longer RAW string's
 * length after upper-casing, in code points, as the reference computes it.
 */
export function anls(pred: string, gts: readonly string[], tau = 0.5): number {
  needReferences("ANLS", gts);
  const det = pySplit(pyStrip(pred).toLowerCase()).join(" ");
  const predLen = pyLen(pred.toUpperCase());
  let minNl = Infinity;
  for (const g of gts) {
    const gt = pySplit(pyStrip(g).toLowerCase()).join(" ");
    const length = Math.max(pyLen(g.toUpperCase()), predLen);
    const nl = length === 0 ? 0 : levenshtein(gt, det) / length;
    if (nl < minNl) minNl = nl;
  }
  const score = 1 - minNl;
  return score < tau ? 0 : score;
}

// ---- VQA accuracy: EvalAI answer processor, leave-one-out average --------------------------------

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

/**
 * The VQA evaluation's contraction map (word without apostrophes → with). The capitalized keys
 * of the official map ("Im", "Ive", "Id've", "I'dve") are included as it has them; they never
 * match because words are lower-cased first.
 */
const CONTRACTIONS: Record<string, string> = Object.fromEntries(
  (`aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've|` +
    `couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've|` +
    `hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's|` +
    `howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd|` +
    `itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't|` +
    `mightnt've mightn't've|mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've|` +
    `neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at|` +
    `'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've|` +
    `shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd|` +
    `somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|` +
    `somebodys somebody's|someoned someone'd|someoned've someone'd've|someone'dve someone'd've|` +
    `someonell someone'll|someones someone's|somethingd something'd|somethingd've something'd've|` +
    `something'dve something'd've|somethingll something'll|thats that's|thered there'd|` +
    `thered've there'd've|there'dve there'd've|therere there're|theres there's|theyd they'd|` +
    `theyd've they'd've|they'dve they'd've|theyll they'll|theyre they're|theyve they've|twas 'twas|` +
    `wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've|werent weren't|whatll what'll|` +
    `whatre what're|whats what's|whatve what've|whens when's|whered where'd|wheres where's|` +
    `whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's|` +
    `whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|` +
    `wouldnt wouldn't|wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|` +
    `y'allll y'all'll|yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|` +
    `youd've you'd've|you'dve you'd've|youll you'll|youre you're|youve you've`)
    .split("|").map((pair) => pair.split(" ") as [string, string]),
);
const VQA_PUNCTUATION = [
  ";",
  "/",
  "[",
  "]",
  '"',
  "{",
  "}",
  "(",
  ")",
  "=",
  "+",
  "\\",
  "_",
  "-",
  ">",
  "<",
  "@",
  "`",
  ",",
  "?",
  "!",
];
const COMMA_BETWEEN_DIGITS = /(?<=\p{Nd}),+(?=\p{Nd})/u;
const PERIOD_NOT_BEFORE_DIGIT = /\.(?!\p{Nd})/gu;
/** The reference passes `re.UNICODE` (= 32) as `re.sub`'s count: only the first 32 periods go. */
const PERIOD_STRIP_COUNT = 32;

function vqaPunctuation(inText: string): string {
  let out = inText;
  const commaInNumber = COMMA_BETWEEN_DIGITS.test(inText);
  for (const p of VQA_PUNCTUATION) {
    // The decision looks at the input text, the replacement applies to the running output.
    const glued = inText.includes(p + " ") || inText.includes(" " + p) || commaInNumber;
    out = out.replaceAll(p, glued ? "" : " ");
  }
  let n = 0;
  return out.replace(PERIOD_NOT_BEFORE_DIGIT, (m) => (n++ < PERIOD_STRIP_COUNT ? "" : m));
}

function vqaDigitsArticles(inText: string): string {
  const words: string[] = [];
  for (const w0 of pySplit(inText.toLowerCase())) {
    const w = Object.hasOwn(NUMBER_WORDS, w0) ? NUMBER_WORDS[w0]! : w0;
    if (w !== "a" && w !== "an" && w !== "the") words.push(w);
  }
  return words.map((w) => (Object.hasOwn(CONTRACTIONS, w) ? CONTRACTIONS[w]! : w)).join(" ");
}

/** The EvalAI / VQA answer normalization (lmms-eval `EvalAIAnswerProcessor.__call__`). */
export function normalizeVqa(s: string): string {
  let t = pyStrip(s.toLowerCase().replaceAll(",", "").replaceAll("?", "").replaceAll("'s", " 's"));
  t = pyStrip(t.replaceAll("\n", " ").replaceAll("\t", " "));
  return vqaDigitsArticles(vqaPunctuation(t));
}

/**
 * VQA accuracy (TextVQA / VQAv2 as lmms-eval and EvalAI score it): prediction and every human
 * answer normalized; for each answer i, min(1, (#other answers equal to the prediction) / 3);
 * the mean over i. With 10 answers this is the official 10-choose-9 average. Fewer answers are
 * averaged the same way over however many there are, so a single reference always scores 0 —
 * as in the reference code. An empty list is an error.
 */
export function vqaAccuracy(pred: string, gts: readonly string[]): number {
  needReferences("VQA accuracy", gts);
  const p = normalizeVqa(pred);
  const matches = gts.filter((g) => normalizeVqa(g) === p).length;
  let sum = 0;
  for (let i = 0; i < gts.length; i++) {
    // answer i itself matches iff it is one of the `matches`; the first `matches` stand for those
    sum += Math.min(1, (i < matches ? matches - 1 : matches) / 3);
  }
  return sum / gts.length;
}

// ---- Relaxed accuracy: ChartQA -------------------------------------------------------------------

/** lmms-eval's `_to_float`: Python float(), a trailing run of % divides by 100. */
function chartQaFloat(text: string): number | null {
  if (text.endsWith("%")) {
    const v = pyFloat(text.replace(/%+$/, ""));
    return v === null ? null : v / 100;
  }
  return pyFloat(text);
}

/**
 * ChartQA relaxed accuracy (lmms-eval `relaxed_correctness`, 1 if any reference passes): when
 * the prediction parses as a number and the reference as a non-zero number (Python float syntax:
 * `1e3`, `1_000`, `inf`, surrounding whitespace; `%` suffix divides by 100; no thousands
 * separators), |p − t| / |t| ≤ 5 %; otherwise case-insensitive string equality (no trimming).
 */
export function relaxedAccuracy(pred: string, gts: readonly string[], tolerance = 0.05): number {
  needReferences("relaxed accuracy", gts);
  const pf = chartQaFloat(pred);
  for (const g of gts) {
    const tf = chartQaFloat(g);
    // Python truthiness: 0.0 and -0.0 are false, NaN is true
    if (pf !== null && tf !== null && tf !== 0) {
      if (Math.abs(pf - tf) / Math.abs(tf) <= tolerance) return 1;
    } else if (pred.toLowerCase() === g.toLowerCase()) return 1;
  }
  return 0;
}

// ---- OCRBench ------------------------------------------------------------------------------------

/** Full-width ASCII (U+FF01–U+FF5E) → ASCII and the ideographic space → space; nothing else. */
function foldFullwidthAscii(s: string): string {
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 0xff01 && cp <= 0xff5e
      ? String.fromCodePoint(cp - 0xfee0)
      : cp === 0x3000
      ? " "
      : ch;
  }
  return out;
}

export interface OcrbenchOptions {
  /**
   * The handwritten-math rule (dataset HME100k): spaces and newlines removed, case kept.
   * @default false
   */
  hme?: boolean;
}

/**
 * OCRBench (lmms-eval `ocrbench_process_results`): 1 when some reference is a substring of the
 * prediction after full-width folding, lower-casing and stripping (newlines become spaces); with
 * `hme`, after deleting all spaces and newlines instead, case-sensitive.
 */
export function ocrbenchMatch(
  pred: string,
  gts: readonly string[],
  { hme = false }: OcrbenchOptions = {},
): number {
  needReferences("OCRBench", gts);
  const p0 = pyStrip(pred);
  const prep = hme
    ? (s: string) => pyStrip(s).replaceAll("\n", " ").replaceAll(" ", "")
    : (s: string) => pyStrip(foldFullwidthAscii(s).toLowerCase()).replaceAll("\n", " ");
  const p = prep(p0);
  return gts.some((g) => p.includes(prep(g))) ? 1 : 0;
}

/** OCRBench's handwritten-math (HME100k) rule as a metric of its own. */
export function ocrbenchHmeMatch(pred: string, gts: readonly string[]): number {
  return ocrbenchMatch(pred, gts, { hme: true });
}

/** Every metric by name: (prediction, reference answers) → score in [0, 1]. */
export const METRICS = {
  em: exactMatch,
  anls: (pred: string, gts: readonly string[]) => anls(pred, gts),
  vqa: vqaAccuracy,
  relaxed: (pred: string, gts: readonly string[]) => relaxedAccuracy(pred, gts),
  ocrbench: (pred: string, gts: readonly string[]) => ocrbenchMatch(pred, gts),
  ocrbench_hme: ocrbenchHmeMatch,
} as const satisfies Record<
  keyof typeof METRIC_VERSIONS,
  (p: string, g: readonly string[]) => number
>;
export type MetricName = keyof typeof METRICS;
/** The metric names, for schemas (`z.enum(METRIC_NAMES)`). */
export const METRIC_NAMES = Object.keys(METRICS) as [MetricName, ...MetricName[]];

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
