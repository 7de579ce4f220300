import { assertEquals, assertThrows } from "@std/assert";
import { computeGrid, GeometrySpecSchema, newlinePositions } from "../geometry/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { buildLabelSet } from "../labels/mod.ts";
import {
  buildSequenceLayout,
  type ChatMessage,
  IGNORE_INDEX,
  sequenceFromLabelSets,
  SequenceLayoutError,
  sequenceTokenizerFor,
} from "./mod.ts";

interface SeqCase {
  chat: number;
  width: number;
  height: number;
  inputIdsRle: Array<[number, number]>;
  assistantPositions: number[];
}
interface SeqFixture {
  transformers: string;
  chats: ChatMessage[][];
  families: Record<string, { spec: Record<string, unknown>; tokenizer: string; cases: SeqCase[] }>;
}

const fixture: SeqFixture = JSON.parse(
  await Deno.readTextFile(new URL("../../tests/fixtures/geometry/sequence.json", import.meta.url)),
);
const unrle = (r: Array<[number, number]>) => r.flatMap(([id, n]) => new Array<number>(n).fill(id));

/** Distinct vision labels per visual token (-100 on newline tokens): where each one lands shows. */
function visionLabelsFor(spec: unknown, width: number, height: number): number[] {
  const g = computeGrid(GeometrySpecSchema.parse(spec), width, height);
  const labels = Array.from({ length: g.tokens }, (_, i) => 1000 + i);
  for (const p of newlinePositions(g)) labels[p] = IGNORE_INDEX;
  return labels;
}

for (const [key, fam] of Object.entries(fixture.families)) {
  Deno.test(`${key}: input ids equal the HF processor's, labels in place`, async () => {
    const spec = GeometrySpecSchema.parse(fam.spec);
    const { extraSpecialTokens } = sequenceTokenizerFor(spec.name);
    const tokenizer = await getTokenizer(fam.tokenizer, { extraSpecialTokens });
    assertEquals(fam.cases.filter((c) => c.chat === 0).length >= 3, true);
    for (const c of fam.cases) {
      const at = `${c.width}x${c.height} chat ${c.chat}`;
      const visionLabels = visionLabelsFor(fam.spec, c.width, c.height);
      const s = buildSequenceLayout({
        geometry: spec,
        messages: fixture.chats[c.chat]!,
        images: [{ width: c.width, height: c.height, visionLabels }],
        tokenizer,
      });
      assertEquals(s.inputIds, unrle(c.inputIdsRle), at);
      assertEquals(s.labels.length, s.inputIds.length);
      assertEquals(s.visualPositions.map((p) => s.labels[p]), visionLabels, at);
      // supervised text positions are the HF processor's assistant mask
      const vis = new Set(s.visualPositions);
      const answer = s.labels.flatMap((l, i) => (l !== IGNORE_INDEX && !vis.has(i) ? [i] : []));
      assertEquals(answer, c.assistantPositions, at);
      for (const i of answer) assertEquals(s.labels[i], s.inputIds[i]);
    }
  });
}

Deno.test("sequence: pre-flight errors name what does not match", async () => {
  const tokenizer = await getTokenizer("qwen2");
  const geometry = GeometrySpecSchema.parse({ name: "qwen2-vl" });
  const visionLabels = visionLabelsFor({ name: "qwen2-vl" }, 56, 56);
  const answer: ChatMessage = { role: "assistant", content: "ok" };
  assertThrows(
    () =>
      buildSequenceLayout({
        geometry,
        messages: [{ role: "user", content: "no image here" }, answer],
        images: [{ width: 56, height: 56, visionLabels }],
        tokenizer,
      }),
    SequenceLayoutError,
    "0 '<image>' markers but 1 images",
  );
  // an image token typed into the text: the HF error every trainer user meets, caught here
  assertThrows(
    () =>
      buildSequenceLayout({
        geometry,
        messages: [{ role: "user", content: "<image> and <|image_pad|>" }, answer],
        images: [{ width: 56, height: 56, visionLabels }],
        tokenizer,
      }),
    SequenceLayoutError,
    "image features and image tokens do not match: tokens: 5, features: 4",
  );
  assertThrows(
    () =>
      buildSequenceLayout({
        geometry,
        messages: [{ role: "user", content: "<image>" }, answer],
        images: [{ width: 56, height: 56, visionLabels: [1, 2] }],
        tokenizer,
      }),
    SequenceLayoutError,
    "2 vision labels but qwen2-vl gives 4 visual tokens",
  );
  // InternVL needs <IMG_CONTEXT>: the plain Qwen tokenizer lacks it
  assertThrows(
    () =>
      buildSequenceLayout({
        geometry: GeometrySpecSchema.parse({ name: "internvl" }),
        messages: [{ role: "user", content: "<image>" }, answer],
        images: [{
          width: 448,
          height: 448,
          visionLabels: visionLabelsFor({ name: "internvl" }, 448, 448),
        }],
        tokenizer,
      }),
    SequenceLayoutError,
    "has no '<IMG_CONTEXT>' token",
  );
  assertThrows(
    () =>
      buildSequenceLayout({
        geometry: GeometrySpecSchema.parse({
          name: "custom",
          patchSize: 14,
          resize: { mode: "fixed", width: 28, height: 28 },
        }),
        messages: [{ role: "user", content: "<image>" }, answer],
        images: [{ width: 28, height: 28, visionLabels: [1, 2, 3, 4] }],
        tokenizer,
      }),
    SequenceLayoutError,
    "geometry 'custom' has no model chat format",
  );
});

Deno.test("sequenceFromLabelSets: two label sets, one chat; geometry and tokenizer must agree", async () => {
  const tokenizer = await getTokenizer("qwen2");
  const words = [{ text: "Invoice", box: [4, 4, 60, 24] as [number, number, number, number] }];
  const make = (
    width: number,
    height: number,
    geometry = GeometrySpecSchema.parse({ name: "qwen2-vl" }),
  ) =>
    buildLabelSet({
      image: { sha256: "", width, height },
      words: words.map((w) => ({ ...w, confidence: 100 })),
      source: { kind: "boxes" },
      tokenizer,
      geometry,
      policy: { split: "span", minCellOverlap: 0.1, minWordOverlap: 0.5 },
      minConfidence: 0,
    });
  const a = make(112, 56);
  const b = make(56, 84);
  const s = sequenceFromLabelSets([a, b], [
    { role: "user", content: "<image> then <image>" },
    { role: "assistant", content: "Invoice" },
  ], tokenizer);
  assertEquals(s.imageTokens, [8, 6]);
  assertEquals(s.visualPositions.map((p) => s.labels[p]), [...a.tokens.label, ...b.tokens.label]);
  assertEquals(a.tokens.label.includes(tokenizer.pieces("Invoice")[0]!.id), true);
  assertThrows(
    () =>
      sequenceFromLabelSets([a, make(56, 56, GeometrySpecSchema.parse({ name: "qwen3-vl" }))], [
        { role: "user", content: "<image><image>" },
        { role: "assistant", content: "x" },
      ], tokenizer),
    SequenceLayoutError,
    "label set 1 has geometry",
  );
});
