/**
 * Labels in the model's input-id layout: a chat whose messages mark images with `<image>`, a
 * model family's placeholder expansion and a tokenizer give `inputIds` and `labels` of equal
 * length — the vision labels at the visual positions (in the processor's token order),
 * -100 over the prompt, the answer ids over each assistant answer (with its end-of-turn token).
 *
 * The expansion is done as the Hugging Face processors do it: the prompt text with each image
 * replaced by the family's image tokens is tokenized in one piece, and the visual positions are
 * where the image token id lands (lib/layout/sequence_test.ts checks the ids against the HF
 * processors). Chat formats: ChatML (Qwen2-VL with its default system prompt, Qwen3-VL,
 * InternVL, LLaVA-OneVision), Vicuna's `USER: … ASSISTANT: …</s>` (LLaVA-1.5, LLaVA-NeXT),
 * Idefics3's `User:… <end_of_utterance>` (SmolVLM the same after `<|im_start|>`; unchecked: no
 * SmolLM2 tokenizer ships here), Gemma's `<start_of_turn>` turns.
 */
import { z } from "zod";
import {
  computeGrid,
  type GeometrySpec,
  type Grid,
  presetTokenizer,
  tileTokenCount,
} from "../geometry/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import type { LabelSet } from "../labels/mod.ts";

/** Where an image goes in a message's text. */
export const IMAGE_MARKER = "<image>";
export const IGNORE_INDEX = -100;

export const ChatMessageSchema = z.strictObject({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string().max(100_000).describe(`text; ${IMAGE_MARKER} marks each image, in order`),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;
export const ChatSchema = z.array(ChatMessageSchema).min(1).max(256);

/** Raised when a chat cannot be laid out (mismatched images, a tokenizer without the tokens). */
export class SequenceLayoutError extends Error {
  override name = "SequenceLayoutError";
}

/** A piece of the rendered prompt; supervised pieces are the answers. */
export interface Segment {
  text: string;
  supervised: boolean;
}

/** How one model family writes a chat and its images into text. */
export interface SequenceFamily {
  name: string;
  /** The token the processor repeats at the visual positions. */
  imageToken: string;
  /** Special tokens the family adds to its base tokenizer, in the order the model repo adds them. */
  extraSpecialTokens: readonly string[];
  /** The text one image becomes (image tokens and the family's markers around them). */
  expandImage(grid: Grid): string;
  /** The chat as segments; every `<image>` in a message is replaced by `image()`'s next result. */
  render(messages: readonly ChatMessage[], image: () => string): Segment[];
}

const withImages = (content: string, image: () => string) =>
  content.split(IMAGE_MARKER).map((part, i) => (i > 0 ? image() : "") + part).join("");

function chatml(defaultSystem?: string) {
  return (messages: readonly ChatMessage[], image: () => string): Segment[] => {
    const out: Segment[] = [];
    const plain = (text: string) => out.push({ text, supervised: false });
    if (defaultSystem && messages[0]?.role !== "system") {
      plain(`<|im_start|>system\n${defaultSystem}<|im_end|>\n`);
    }
    for (const m of messages) {
      plain(`<|im_start|>${m.role}\n`);
      const text = withImages(m.content, image);
      if (m.role === "assistant") {
        out.push({ text: `${text}<|im_end|>`, supervised: true });
        plain("\n");
      } else plain(`${text}<|im_end|>\n`);
    }
    return out;
  };
}

function vicuna(messages: readonly ChatMessage[], image: () => string): Segment[] {
  const out: Segment[] = [{ text: "<s>", supervised: false }];
  for (const m of messages) {
    const text = withImages(m.content, image);
    if (m.role === "system") out.push({ text: `${text} `, supervised: false });
    else if (m.role === "user") out.push({ text: `USER: ${text} `, supervised: false });
    else {
      out.push({ text: "ASSISTANT: ", supervised: false });
      out.push({ text: `${text}</s>`, supervised: true });
    }
  }
  return out;
}

/** Idefics3's `User:… <end_of_utterance>` turns after `bos` (SmolVLM's templates open with `<|im_start|>`). */
const idefics3Chat = (bos: string) => (messages: readonly ChatMessage[], image: () => string) =>
  userAssistantTurns(bos, messages, image);

function userAssistantTurns(
  bos: string,
  messages: readonly ChatMessage[],
  image: () => string,
): Segment[] {
  const out: Segment[] = [{ text: bos, supervised: false }];
  for (const m of messages) {
    const role = m.role[0]!.toUpperCase() + m.role.slice(1);
    const sep = m.content.startsWith(IMAGE_MARKER) ? ":" : ": ";
    const text = withImages(m.content, image);
    if (m.role === "assistant") {
      out.push({ text: role + sep, supervised: false });
      out.push({ text: `${text}<end_of_utterance>`, supervised: true });
      out.push({ text: "\n", supervised: false });
    } else out.push({ text: `${role}${sep}${text}<end_of_utterance>\n`, supervised: false });
  }
  return out;
}

function gemmaChat(messages: readonly ChatMessage[], image: () => string): Segment[] {
  const out: Segment[] = [{ text: "<bos>", supervised: false }];
  for (const m of messages) {
    const text = withImages(m.content, image);
    if (m.role === "assistant") {
      out.push({ text: "<start_of_turn>model\n", supervised: false });
      out.push({ text: `${text}<end_of_turn>`, supervised: true });
      out.push({ text: "\n", supervised: false });
    } else {
      out.push({ text: `<start_of_turn>user\n${text}<end_of_turn>\n`, supervised: false });
    }
  }
  return out;
}

const repeat = (token: string, n: number) => token.repeat(n);

const QWEN_EXPAND = (g: Grid) =>
  `<|vision_start|>${repeat("<|image_pad|>", g.tokens)}<|vision_end|>`;

/** Idefics3 / SmolVLM: `<fake_token_around_image><row_i_col_j>` + image tokens per sub-image. */
function idefics3Expand(g: Grid): string {
  const subs = g.tiles.filter((t) => t.kind === "tile");
  const global = g.tiles.at(-1)!;
  const around = "<fake_token_around_image>";
  const img = (n: number) => repeat("<image>", n);
  const tail = `${around}<global-img>${img(tileTokenCount(global))}${around}`;
  if (subs.length === 0) return tail;
  const cols = subs.filter((t) => t.y0 === subs[0]!.y0).length;
  const rows = subs.length / cols;
  let s = "";
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      s += `${around}<row_${i + 1}_col_${j + 1}>${img(tileTokenCount(subs[i * cols + j]!))}`;
    }
    s += "\n";
  }
  return `${s}\n${tail}`;
}

/** Gemma 3: each image (and each pan-and-scan crop) as `\n\n<start_of_image>…<end_of_image>\n\n`. */
function gemma3Expand(g: Grid): string {
  const one = (n: number) =>
    `\n\n<start_of_image>${repeat("<image_soft_token>", n)}<end_of_image>\n\n`;
  const [first, ...crops] = g.tiles;
  if (crops.length === 0) return one(tileTokenCount(first!));
  return `Here is the original image ${
    one(tileTokenCount(first!))
  } and here are some crops to help you see better ` +
    crops.map((t) => one(tileTokenCount(t))).join(" ");
}

const FAMILIES = new Map<string, SequenceFamily>([
  ["qwen2-vl", {
    name: "qwen2-vl",
    imageToken: "<|image_pad|>",
    extraSpecialTokens: [],
    expandImage: QWEN_EXPAND,
    render: chatml("You are a helpful assistant."),
  }],
  ["qwen3-vl", {
    name: "qwen3-vl",
    imageToken: "<|image_pad|>",
    extraSpecialTokens: [],
    expandImage: QWEN_EXPAND,
    render: chatml(),
  }],
  ["llava", {
    name: "llava",
    imageToken: "<image>",
    extraSpecialTokens: ["<image>"],
    expandImage: (g) => repeat("<image>", g.tokens),
    render: vicuna,
  }],
  ["llava-onevision", {
    name: "llava-onevision",
    imageToken: "<image>",
    extraSpecialTokens: ["<image>"],
    expandImage: (g) => repeat("<image>", g.tokens),
    render: chatml(),
  }],
  ["internvl", {
    name: "internvl",
    imageToken: "<IMG_CONTEXT>",
    extraSpecialTokens: ["<img>", "</img>", "<IMG_CONTEXT>"],
    expandImage: (g) => `<img>${repeat("<IMG_CONTEXT>", g.tokens)}</img>`,
    render: chatml(),
  }],
  ["idefics3", {
    name: "idefics3",
    imageToken: "<image>",
    extraSpecialTokens: ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    expandImage: idefics3Expand,
    render: idefics3Chat("<|begin_of_text|>"),
  }],
  ["smolvlm", {
    // not checked against the HF processor here: SmolLM2's tokenizer is not shipped in npm
    name: "smolvlm",
    imageToken: "<image>",
    extraSpecialTokens: ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    expandImage: idefics3Expand,
    render: idefics3Chat("<|im_start|>"),
  }],
  ["gemma3", {
    name: "gemma3",
    imageToken: "<image_soft_token>",
    extraSpecialTokens: [],
    expandImage: gemma3Expand,
    render: gemmaChat,
  }],
]);

/** Geometry preset → sequence family. */
const PRESET_FAMILY = new Map<string, string>([
  ["qwen2-vl", "qwen2-vl"],
  ["qwen2.5-vl", "qwen2-vl"],
  ["qwen3-vl", "qwen3-vl"],
  ["llava-1.5", "llava"],
  ["llava-next", "llava"],
  ["llava-onevision", "llava-onevision"],
  ["internvl", "internvl"],
  ["internvl2.5", "internvl"],
  ["internvl3", "internvl"],
  ["idefics3", "idefics3"],
  ["smolvlm", "smolvlm"],
  ["gemma3", "gemma3"],
]);

/** The sequence family of a geometry preset (SequenceLayoutError for `custom` and unknown names). */
export function sequenceFamily(geometryName: string): SequenceFamily {
  const name = PRESET_FAMILY.get(geometryName);
  const family = name === undefined ? undefined : FAMILIES.get(name);
  if (!family) {
    throw new SequenceLayoutError(
      `Cannot lay out sequence: geometry '${geometryName}' has no model chat format, expected one of ${
        [...PRESET_FAMILY.keys()].join(", ")
      }`,
    );
  }
  return family;
}

/** What {@linkcode buildSequenceLayout} needs to load the right tokenizer for a preset. */
export function sequenceTokenizerFor(
  geometryName: string,
): { tokenizer: string | null; extraSpecialTokens: readonly string[] } {
  return {
    tokenizer: presetTokenizer(geometryName),
    extraSpecialTokens: sequenceFamily(geometryName).extraSpecialTokens,
  };
}

/** One image of the chat: its size and its per-visual-token labels (a label set's `tokens.label`). */
export interface SequenceImage {
  width: number;
  height: number;
  /** One id or -100 per visual token of the geometry, in the processor's order. */
  visionLabels: readonly number[];
}

/** Input of {@linkcode buildSequenceLayout}. */
export interface SequenceLayoutInput {
  geometry: GeometrySpec;
  messages: readonly ChatMessage[];
  images: readonly SequenceImage[];
  /** Loaded with the family's `extraSpecialTokens` (see {@linkcode sequenceTokenizerFor}). */
  tokenizer: WordTokenizer;
}

/** A training sample in the model's own input layout. */
export interface SequenceLayout {
  family: string;
  inputIds: number[];
  /** Same length as `inputIds`: vision labels, -100, or answer ids. */
  labels: number[];
  /** Indices of the visual positions (image-token ids) in `inputIds`, in order. */
  visualPositions: number[];
  imageTokenId: number;
  /** Visual tokens of each image (its geometry's count). */
  imageTokens: number[];
}

/** Longest sequence this builds (ids and labels are arrays of this length). */
export const MAX_SEQUENCE_TOKENS = 1 << 20;

/**
 * Lay out a chat with images as `input_ids` and `labels`, the way the model's HF processor
 * expands it. Checks first that the chat has one `<image>` per image and that each image's
 * labels match its geometry; after tokenizing, that the visual positions are exactly the
 * geometry's token count ("image features and image tokens do not match" otherwise).
 *
 * @example
 * ```ts
 * const tok = await getTokenizer("qwen2");
 * const s = buildSequenceLayout({
 *   geometry: GeometrySpecSchema.parse({ name: "qwen2-vl" }),
 *   messages: [{ role: "user", content: "<image>\nRead it." }, { role: "assistant", content: "Hi" }],
 *   images: [{ width: 56, height: 56, visionLabels: [1, 2, 3, 4] }],
 *   tokenizer: tok,
 * });
 * s.inputIds.length === s.labels.length; // true
 * ```
 */
export function buildSequenceLayout(input: SequenceLayoutInput): SequenceLayout {
  const { geometry, messages, images, tokenizer } = input;
  const family = sequenceFamily(geometry.name);
  const markers = messages.reduce((n, m) => n + m.content.split(IMAGE_MARKER).length - 1, 0);
  if (markers !== images.length) {
    throw new SequenceLayoutError(
      `Cannot lay out sequence: the chat has ${markers} '${IMAGE_MARKER}' markers but ${images.length} images were given`,
    );
  }
  if (geometry.name === "llava-onevision" && images.length > 1) {
    // OneVision lays several images out as pad-to-square without anyres: not modelled here
    throw new SequenceLayoutError(
      "Cannot lay out sequence: llava-onevision with more than one image is not supported",
    );
  }
  if (!messages.some((m) => m.role === "assistant")) {
    throw new SequenceLayoutError("Cannot lay out sequence: the chat has no assistant answer");
  }
  const grids = images.map((im, i) => {
    const g = computeGrid(geometry, im.width, im.height);
    if (im.visionLabels.length !== g.tokens) {
      throw new SequenceLayoutError(
        `Cannot lay out sequence: image ${i} has ${im.visionLabels.length} vision labels but ${geometry.name} gives ${g.tokens} visual tokens for ${im.width}x${im.height}`,
      );
    }
    return g;
  });
  const total = grids.reduce((s, g) => s + g.tokens, 0);
  const textChars = messages.reduce((s, m) => s + m.content.length, 0);
  if (total + textChars > MAX_SEQUENCE_TOKENS) {
    throw new RangeError(
      `Cannot lay out sequence: ${total} visual tokens and ${textChars} text characters exceed the limit of ${MAX_SEQUENCE_TOKENS}`,
    );
  }
  const imageTokenId = tokenizer.tokenToId(family.imageToken);
  if (imageTokenId === undefined) {
    throw new SequenceLayoutError(
      `Cannot lay out sequence: tokenizer '${tokenizer.name}' has no '${family.imageToken}' token; load it with the family's extra special tokens (${
        family.extraSpecialTokens.join(", ") || "none"
      })`,
    );
  }
  for (const t of family.extraSpecialTokens) {
    if (tokenizer.tokenToId(t) === undefined) {
      throw new SequenceLayoutError(
        `Cannot lay out sequence: tokenizer '${tokenizer.name}' has no '${t}' token`,
      );
    }
  }
  let next = 0;
  const segments = family.render(messages, () => family.expandImage(grids[next++]!));
  const text = segments.map((s) => s.text).join("");
  const inputIds = tokenizer.encode(text);
  const labels = new Array<number>(inputIds.length).fill(IGNORE_INDEX);

  // answers: token spans found by encoding the text up to each answer's start and end (the
  // whole text is tokenized once, as the processor does)
  let chars = 0;
  for (const s of segments) {
    const start = chars;
    chars += s.text.length;
    if (!s.supervised) continue;
    const a = spanEnd(tokenizer, text.slice(0, start), inputIds);
    const b = spanEnd(tokenizer, text.slice(0, chars), inputIds);
    for (let i = a; i < b; i++) labels[i] = inputIds[i]!;
  }

  const visualPositions: number[] = [];
  inputIds.forEach((id, i) => {
    if (id === imageTokenId) visualPositions.push(i);
  });
  if (visualPositions.length !== total) {
    throw new SequenceLayoutError(
      `Cannot lay out sequence: image features and image tokens do not match: tokens: ${visualPositions.length}, features: ${total} (does the chat text contain '${family.imageToken}' itself?)`,
    );
  }
  let k = 0;
  for (const im of images) for (const l of im.visionLabels) labels[visualPositions[k++]!] = l;
  return {
    family: family.name,
    inputIds,
    labels,
    visualPositions,
    imageTokenId,
    imageTokens: grids.map((g) => g.tokens),
  };
}

/**
 * {@linkcode buildSequenceLayout} over label sets (one per `<image>` of the chat, in order), as
 * `POST /v1/label` returns them or a dataset export builds them. All must share one geometry,
 * and have been labeled with the tokenizer `tokenizer` was loaded from (its extra special
 * tokens do not change word ids).
 */
export function sequenceFromLabelSets(
  labelSets: readonly LabelSet[],
  messages: readonly ChatMessage[],
  tokenizer: WordTokenizer,
): SequenceLayout {
  const first = labelSets[0];
  if (!first) throw new SequenceLayoutError("Cannot lay out sequence: no label sets given");
  const spec = JSON.stringify(first.geometry.spec);
  for (const [i, ls] of labelSets.entries()) {
    if (JSON.stringify(ls.geometry.spec) !== spec) {
      throw new SequenceLayoutError(
        `Cannot lay out sequence: label set ${i} has geometry ${
          JSON.stringify(ls.geometry.spec)
        }, label set 0 has ${spec}`,
      );
    }
    if (ls.tokenizer.name !== tokenizer.name) {
      throw new SequenceLayoutError(
        `Cannot lay out sequence: label set ${i} was labeled with tokenizer '${ls.tokenizer.name}', not '${tokenizer.name}'`,
      );
    }
  }
  return buildSequenceLayout({
    geometry: first.geometry.spec,
    messages,
    images: labelSets.map((ls) => ({
      width: ls.image.width,
      height: ls.image.height,
      visionLabels: ls.tokens.label,
    })),
    tokenizer,
  });
}

/**
 * Where the text's tokens cross `prefix`'s end: the length of the common prefix of `prefix`'s
 * ids and the whole text's ids. A token straddling the boundary (SentencePiece's "▁Answer"
 * after "ASSISTANT: ") counts as after it, as the HF assistant mask counts it as the answer's.
 */
function spanEnd(tokenizer: WordTokenizer, prefix: string, ids: readonly number[]): number {
  const p = tokenizer.encode(prefix);
  let i = 0;
  while (i < p.length && i < ids.length && p[i] === ids[i]) i++;
  return i;
}

/**
 * The sequence of one labeled image and a chat (what the label CLI writes as
 * `<name>.sequence.json` and `POST /v1/label` returns for `layout: "sequence"`).
 */
export function sequenceOfLabeledImage(
  geometry: GeometrySpec,
  messages: ChatMessage[],
  image: { width: number; height: number; visionLabels: readonly number[] },
  tokenizer: WordTokenizer,
): Pick<SequenceLayout, "family" | "inputIds" | "labels" | "visualPositions"> {
  const { family, inputIds, labels, visualPositions } = buildSequenceLayout({
    geometry,
    messages,
    images: [image],
    tokenizer,
  });
  return { family, inputIds, labels, visualPositions };
}
