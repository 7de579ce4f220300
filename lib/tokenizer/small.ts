/**
 * The small model's tokenizer: a WordPiece vocabulary of the generator's corpus words plus
 * single characters (so every string encodes), saved as an ordinary HF `tokenizer.json`, so
 * the label pipeline treats it like any other tokenizer.
 */
import { WORDS } from "../render/words.ts";

/** The name the small tokenizer goes by (a built-in, like `qwen2`). */
export const SMALL_TOKENIZER_NAME = "dvsft-small";

export const SPECIAL_TOKENS = [
  "[PAD]",
  "[UNK]",
  "<|vision_start|>",
  "<|vision_end|>",
  "<|image_pad|>",
  "<|eos|>",
] as const;
export const PAD_ID = 0;
export const VISION_START_ID = 2;
export const VISION_END_ID = 3;
export const IMAGE_PAD_ID = 4;
export const EOS_ID = 5;

const CHARS =
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,-:/?'()$%#&+*=!;\"@_";
/** Words of the prompts the data generator writes. */
export const PROMPT_WORDS = [
  "read",
  "the",
  "text",
  "line",
  "word",
  "after",
  "first",
  "last",
  "what",
  "is",
  "value",
  "of",
  "field",
  "row",
  "column",
  "how",
  "many",
  "words",
];

/** Build the tokenizer.json object (deterministic: same corpus → same ids). */
export function buildSmallTokenizerJson(
  extraWords: readonly string[] = [],
): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  SPECIAL_TOKENS.forEach(add);
  for (const c of CHARS) add(c);
  for (const c of CHARS) add(`##${c}`);
  const words = [...WORDS, ...PROMPT_WORDS, ...extraWords];
  for (const w of words) {
    add(w);
    add(w[0]!.toUpperCase() + w.slice(1));
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

/** Write the small tokenizer to `path` (a tokenizer.json). */
export async function writeSmallTokenizer(path: string): Promise<void> {
  // the same bytes the built-in hashes, so label sets from either path name the same tokenizer
  await Deno.writeTextFile(path, JSON.stringify(buildSmallTokenizerJson()) + "\n");
}
