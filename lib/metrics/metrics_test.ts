import { assert, assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import { z } from "zod";
import {
  anls,
  exactMatch,
  levenshtein,
  METRIC_NAMES,
  METRIC_VERSIONS,
  METRICS,
  normalizeAnswer,
  normalizeVqa,
  ocrbenchMatch,
  pairedBootstrap,
  relaxedAccuracy,
  vqaAccuracy,
} from "./mod.ts";
import { pyFloat } from "./_python_text.ts";
import { Rng } from "../util/rng.ts";

/** Vectors made by tests/fixtures/metrics/make_vectors.py running the reference functions. */
const CaseSchema = z.strictObject({
  pred: z.string(),
  refs: z.array(z.string()).min(1),
  score: z.number(),
  hme: z.boolean().optional(),
});
const VectorsSchema = z.object({
  metric: z.string(),
  reference: z.array(z.object({ repo: z.string(), repo_commit: z.string(), path: z.string() })),
  normalize: z.array(z.strictObject({ input: z.string(), output: z.string() })).optional(),
  cases: z.array(CaseSchema).min(300),
});
function vectors(name: string) {
  const url = new URL(`../../tests/fixtures/metrics/${name}.json`, import.meta.url);
  return VectorsSchema.parse(JSON.parse(Deno.readTextFileSync(url)));
}

/** Every vector, with the failures listed (all of them, not the first) so a diff is readable. */
function assertAllEqual(
  name: string,
  score: (c: z.infer<typeof CaseSchema>) => number,
  tol: number,
): void {
  const v = vectors(name);
  const bad = v.cases.filter((c) => !(Math.abs(score(c) - c.score) <= tol));
  assertEquals(
    bad.map((c) => ({ ...c, ours: score(c) })),
    [],
    `${name}: ${bad.length} of ${v.cases.length} vectors differ`,
  );
}

Deno.test("ANLS equals lmms-eval anls on every vector", () => {
  assertAllEqual("anls", (c) => anls(c.pred, c.refs), 1e-9);
});

Deno.test("VQA normalization equals lmms-eval EvalAIAnswerProcessor on every vector", () => {
  const v = vectors("vqa");
  const norm = v.normalize ?? [];
  assert(norm.length >= 300);
  const bad = norm.filter((x) => normalizeVqa(x.input) !== x.output);
  assertEquals(bad.map((x) => ({ ...x, ours: normalizeVqa(x.input) })), []);
});

Deno.test("VQA accuracy equals lmms-eval textvqa_process_results on every vector", () => {
  assertAllEqual("vqa", (c) => vqaAccuracy(c.pred, c.refs), 1e-9);
});

Deno.test("relaxed accuracy equals lmms-eval ChartQA relaxed_correctness on every vector", () => {
  assertAllEqual("relaxed", (c) => relaxedAccuracy(c.pred, c.refs), 0);
});

Deno.test("OCRBench equals lmms-eval ocrbench_process_results on every vector", () => {
  assertAllEqual("ocrbench", (c) => ocrbenchMatch(c.pred, c.refs, { hme: c.hme ?? false }), 0);
});

Deno.test("SQuAD normalize_answer and exact match equal the reference on every vector", () => {
  const v = vectors("em");
  const norm = v.normalize ?? [];
  assert(norm.length >= 300);
  const bad = norm.filter((x) => normalizeAnswer(x.input) !== x.output);
  assertEquals(bad.map((x) => ({ ...x, ours: normalizeAnswer(x.input) })), []);
  assertAllEqual("em", (c) => exactMatch(c.pred, c.refs), 0);
});

Deno.test("the reference behaviours the old metrics got wrong, by hand", () => {
  assertEquals(anls("abcd", ["abef"]), 0.5); // NL = 0.5 is kept (only < 0.5 is zeroed)
  assertEquals(anls("😀x", ["😀y"]), 0.5); // non-BMP characters count once
  assertAlmostEquals(anls("helo", ["hello"]), 0.8, 1e-12);
  assertEquals(levenshtein("kitten", "sitting"), 3);
  // one reference: no other answer can agree, so VQA accuracy is 0 as in the reference code
  assertEquals(vqaAccuracy("two", ["2"]), 0);
  assertAlmostEquals(vqaAccuracy("two", ["2", "2"]), 1 / 3, 1e-12);
  const ten = ["2", "2", "two", "3", "3", "2", "two", "2", "2", "3"];
  assertEquals(vqaAccuracy("two", ten), 1);
  // 3 matches out of 10: 7 subsets keep all 3 (→ 1), 3 drop one (→ 2/3)
  assertAlmostEquals(vqaAccuracy("3", ten), (7 + 3 * (2 / 3)) / 10, 1e-12);
  assertEquals(normalizeVqa("Two dogs!"), "2 dogs");
  assertEquals(normalizeVqa("AT&T 50% $5"), "at&t 50% $5");
  assertEquals(normalizeVqa("constructor toString"), "constructor tostring"); // no prototype keys
  assertEquals(relaxedAccuracy("1,050", ["1000"]), 0); // Python float() rejects separators
  assertEquals(relaxedAccuracy("5%", ["0.05"]), 1);
  assertEquals(relaxedAccuracy("0", ["0"]), 1); // zero reference: string comparison
  assertEquals(relaxedAccuracy(" Paris", ["paris"]), 0); // no trimming
  assertEquals(exactMatch("U.S.", ["us"]), 1); // punctuation inside a token is deleted
  assertEquals(exactMatch("café", ["cafe"]), 0);
  assertEquals(ocrbenchMatch("The answer is ＨＥＬＬＯ.", ["hello"]), 1);
  assertEquals(ocrbenchMatch("x ^ 2", ["x^2"], { hme: true }), 1);
  assertEquals(ocrbenchMatch("X^2", ["x^2"], { hme: true }), 0);
});

Deno.test("Python float() syntax", () => {
  assertEquals(pyFloat(" 1_000.5 "), 1000.5);
  assertEquals(pyFloat("1__0"), null);
  assertEquals(pyFloat("1,0"), null);
  assertEquals(pyFloat("-Infinity"), -Infinity);
  assertEquals(pyFloat("١٢"), 12);
  assertEquals(pyFloat("\u00a07\u3000"), 7);
  assertEquals(pyFloat("7\x1c"), null);
  assertEquals(pyFloat("𝟏𝟐"), 12);
  assert(Number.isNaN(pyFloat("nan")!));
});

Deno.test("every metric rejects an empty reference list and has a version", () => {
  for (const name of METRIC_NAMES) {
    assertThrows(() => METRICS[name]("x", []), RangeError, "empty");
    assert(METRIC_VERSIONS[name].length > 0);
  }
});

Deno.test("paired bootstrap: a constant improvement gives a tight interval around it", () => {
  const a = Array.from({ length: 50 }, (_, i) => (i % 2 ? 0 : 1));
  const same = pairedBootstrap(a, a, new Rng(1));
  assertEquals([same.delta, same.lo, same.hi], [0, 0, 0]);
  const b = a.map((x, i) => (i < 10 ? 1 : x));
  const r = pairedBootstrap(a, b, new Rng(1));
  assertAlmostEquals(r.delta, 5 / 50, 1e-9);
  assertEquals(r.lo > 0 && r.hi >= r.delta, true);
});
