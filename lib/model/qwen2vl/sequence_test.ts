import { assertEquals, assertThrows } from "@std/assert";
import { getTokenizer } from "../../tokenizer/mod.ts";
import { parseQwenConfig } from "./config.ts";
import { buildQwenSequence, QWEN_ENDOFTEXT, QWEN_IM_END } from "./sequence.ts";

const config = parseQwenConfig(
  JSON.parse(
    await Deno.readTextFile(
      new URL(
        "../../../tests/fixtures/qwen2vl/real_configs/qwen2_vl_2b_instruct.json",
        import.meta.url,
      ),
    ),
  ),
);

Deno.test("plain layout: vision block at [1, N+1), labels aligned, padded with <|endoftext|>", async () => {
  const tok = await getTokenizer("qwen2");
  const vis = Array.from({ length: 6 }, (_, i) => (i % 2 ? -100 : 1000 + i));
  const s = buildQwenSequence(config, tok, {
    height: 56,
    width: 84,
    question: "Read it.",
    answer: "Total 42",
    visionLabels: vis,
    length: 40,
  })!;
  const prompt = tok.encode("Read it."), answer = tok.encode("Total 42");
  assertEquals(s.vision, [1, 7]);
  const n = 1 + 6 + 1 + prompt.length + answer.length + 1;
  assertEquals(Array.from(s.inputIds.slice(0, n)), [
    151652,
    ...Array(6).fill(151655),
    151653,
    ...prompt,
    ...answer,
    QWEN_IM_END,
  ]);
  assertEquals(Array.from(s.inputIds.slice(n)), Array(40 - n).fill(QWEN_ENDOFTEXT));
  assertEquals(Array.from(s.labels.slice(0, n)), [
    -100,
    ...vis,
    -100,
    ...prompt.map(() => -100),
    ...answer,
    QWEN_IM_END,
  ]);
  assertEquals(s.promptEnd, 8 + prompt.length);
  assertEquals(
    buildQwenSequence(config, tok, {
      height: 56,
      width: 84,
      question: "q",
      answer: "a",
      visionLabels: vis,
      length: 8,
    }),
    null,
  );
  assertThrows(
    () =>
      buildQwenSequence(config, tok, {
        height: 50,
        width: 84,
        question: "q",
        answer: "a",
        visionLabels: vis,
      }),
    RangeError,
    "multiples of 28",
  );
  assertThrows(
    () =>
      buildQwenSequence(config, tok, {
        height: 56,
        width: 56,
        question: "q",
        answer: "a",
        visionLabels: vis,
      }),
    RangeError,
    "6 vision labels for 4",
  );
});

Deno.test("chat layout: the ids the Qwen tokenizer gives the chat-template text", async () => {
  const tok = await getTokenizer("qwen2");
  const vis = Array(4).fill(-100);
  const s = buildQwenSequence(config, tok, {
    height: 56,
    width: 56,
    question: "What is the total?",
    answer: "42 EUR",
    visionLabels: vis,
    template: "chat",
  })!;
  const text = "<|im_start|>user\n<|vision_start|>" + "<|image_pad|>".repeat(4) +
    "<|vision_end|>What is the total?<|im_end|>\n<|im_start|>assistant\n42 EUR<|im_end|>";
  assertEquals(Array.from(s.inputIds), tok.encode(text));
  assertEquals(Array.from(s.inputIds.slice(s.vision[0], s.vision[1])), Array(4).fill(151655));
  assertEquals(s.inputIds[s.vision[0] - 1], 151652);
});
