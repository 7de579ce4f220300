import { assertEquals, assertRejects } from "@std/assert";
import { getTokenizer, TokenizerError } from "./mod.ts";

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
