import { assertAlmostEquals, assertEquals } from "@std/assert";
import {
  anls,
  exactMatch,
  levenshtein,
  normalizeVqa,
  pairedBootstrap,
  relaxedAccuracy,
  vqaAccuracy,
} from "./mod.ts";
import { Rng } from "../util/rng.ts";

Deno.test("exact match normalizes case, punctuation and articles", () => {
  assertEquals(exactMatch("The Cat.", ["cat"]), 1);
  assertEquals(exactMatch("42.00", ["42.00"]), 1);
  assertEquals(exactMatch("dog", ["cat", "kitten"]), 0);
});

Deno.test("ANLS: 1 − normalized Levenshtein, 0 past τ = 0.5 (DocVQA definition)", () => {
  assertEquals(levenshtein("kitten", "sitting"), 3);
  assertAlmostEquals(anls("helo", ["hello"]), 0.8, 1e-9); // one deletion over 5 characters
  assertAlmostEquals(anls("HELLO ", ["hello"]), 1, 1e-9); // case and outer spaces are ignored
  assertEquals(anls("abc", ["hello"]), 0); // NL = 1 ≥ τ
  assertAlmostEquals(anls("invoice 12", ["invoice 123", "x"]), 1 - 1 / 11, 1e-9); // best reference counts
  assertEquals(anls("abcd", ["abef"]), 0); // NL = 0.5 is not < τ
});

Deno.test("VQA accuracy: min(1, matches / 3) after the VQA normalization", () => {
  assertEquals(normalizeVqa("Two dogs!"), "2 dogs");
  const refs = ["2", "2", "two", "3", "3", "2", "two", "2", "2", "3"];
  assertEquals(vqaAccuracy("two", refs), 1);
  assertAlmostEquals(vqaAccuracy("four", ["4", "five", "five"]), 1 / 3, 1e-9);
  assertEquals(vqaAccuracy("cat", refs), 0);
});

Deno.test("relaxed accuracy: numbers within 5 % (ChartQA), otherwise exact", () => {
  assertEquals(relaxedAccuracy("104", ["100"]), 1);
  assertEquals(relaxedAccuracy("106", ["100"]), 0);
  assertEquals(relaxedAccuracy("0", ["0"]), 1);
  assertEquals(relaxedAccuracy("1,050", ["1000"]), 1);
  assertEquals(relaxedAccuracy("Paris", ["paris"]), 1);
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
