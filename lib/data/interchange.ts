/**
 * Datasets in and out of the messages + images JSONL that LLaMA-Factory (sharegpt with
 * `messages`, its `mllm_demo` layout) and ms-swift read. Export derives each image's vision labels
 * for a named geometry and tokenizer, after the trainer's own pixel limits (LLaMA-Factory's
 * `image_max_pixels` / `image_min_pixels` resize the image before the processor sees it), and
 * writes a `dataset_info.json` entry beside the file. Import keeps the chat as it was and attaches
 * words from OCR or a boxes file.
 */
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { type GeometrySpec, GeometrySpecSchema } from "../geometry/mod.ts";
import { buildLabelSet, type WordBox, WordBoxSchema } from "../labels/mod.ts";
import { decodeImage, probeImage, toPng } from "../image/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import { sha256Hex } from "../util/hash.ts";
import { buildSequenceLayout } from "../layout/mod.ts";
import { writeFileAtomic } from "../runs/atomic.ts";
import {
  DatasetError,
  type DatasetItem,
  imageExtension,
  type ItemInput,
  type Manifest,
  type Message,
  readDataset,
  writeDataset,
} from "./dataset.ts";

/** The vision labels of one image, in a shape that is the same for every geometry. */
export const VisionLabelsSchema = z.object({
  /** Preset name (`qwen2-vl`, `llava-1.5`, …). */
  geometry: z.string(),
  /** The full geometry spec as JSON text (a string, so exports of different geometries share one schema). */
  geometry_spec: z.string(),
  tokenizer: z.string(),
  tokenizer_sha256: z.string(),
  /** The image size the labels are for: after the trainer's pixel limits. */
  image_width: z.number().int(),
  image_height: z.number().int(),
  /** The trainer's limits applied before the processor (0: none). */
  image_max_pixels: z.number().int(),
  image_min_pixels: z.number().int(),
  /** One label id or -100 per visual token, in the processor's order. */
  labels: z.array(z.number().int()),
});
export type VisionLabels = z.infer<typeof VisionLabelsSchema>;

/** One line of an export. */
export const ChatLineSchema = z.object({
  messages: z.array(z.object({ role: z.string(), content: z.string() })).min(1),
  images: z.array(z.string()).length(1),
  vision_labels: z.array(VisionLabelsSchema).length(1),
  /** With `layout: "sequence"`: the model's input ids (placeholders expanded) and labels. */
  input_ids: z.array(z.number().int()).optional(),
  labels: z.array(z.number().int()).optional(),
});
export type ChatLine = z.infer<typeof ChatLineSchema>;

/** Options of {@linkcode exportDataset}. */
export interface ExportOptions {
  geometry: GeometrySpec;
  tokenizer: WordTokenizer;
  /** LLaMA-Factory's `image_max_pixels` (0: none). @default 0 */
  imageMaxPixels?: number;
  /** LLaMA-Factory's `image_min_pixels` (0: none). @default 0 */
  imageMinPixels?: number;
  /** Write absolute image paths instead of paths relative to the output file. @default false */
  absolutePaths?: boolean;
  /** The entry's name in `dataset_info.json`. @default the file's stem */
  name?: string;
  /**
   * `sequence`: also write each line's `input_ids` and `labels` in the model's own layout (its
   * placeholder expansion, vision labels at the visual positions, -100 over the prompt). The
   * tokenizer must carry the family's special tokens. @default "labels"
   */
  layout?: "labels" | "sequence";
}

/**
 * The size LLaMA-Factory's image preprocessing gives an image before the processor: scaled down
 * to at most `max` pixels, up to at least `min` (each side truncated to an integer).
 */
export function trainerImageSize(w: number, h: number, max = 0, min = 0): [number, number] {
  if (max > 0 && w * h > max) {
    const f = Math.sqrt(max / (w * h));
    [w, h] = [Math.trunc(w * f), Math.trunc(h * f)];
  }
  if (min > 0 && w * h < min) {
    const f = Math.sqrt(min / (w * h));
    [w, h] = [Math.trunc(w * f), Math.trunc(h * f)];
  }
  return [w, h];
}

/** The chat of an item: its own messages when imported, else its QA turns (`<image>` first). */
export function itemMessages(item: DatasetItem): Message[] {
  if (item.messages) return item.messages;
  return item.qa.flatMap((q, i) => [
    { role: "user" as const, content: `${i === 0 ? "<image>" : ""}${q.question}` },
    { role: "assistant" as const, content: q.answer },
  ]);
}

/** Vision labels of an item for a geometry and tokenizer, after the trainer's pixel limits. */
export async function itemVisionLabels(
  dir: string,
  item: DatasetItem,
  o: ExportOptions,
): Promise<VisionLabels> {
  const max = o.imageMaxPixels ?? 0, min = o.imageMinPixels ?? 0;
  const [w, h] = trainerImageSize(item.width, item.height, max, min);
  const sx = w / item.width, sy = h / item.height;
  const words: WordBox[] = item.words.map((x) => ({
    ...x,
    box: [x.box[0] * sx, x.box[1] * sy, x.box[2] * sx, x.box[3] * sy],
  }));
  const labelSet = buildLabelSet({
    image: {
      sha256: await sha256Hex(await Deno.readFile(join(dir, item.image))),
      width: w,
      height: h,
    },
    words,
    source: item.source,
    tokenizer: o.tokenizer,
    geometry: o.geometry,
    policy: { split: "span", minCellOverlap: 0.1, minWordOverlap: 0.5 },
    minConfidence: 0,
  });
  return {
    geometry: o.geometry.name,
    geometry_spec: JSON.stringify(o.geometry),
    tokenizer: o.tokenizer.name,
    tokenizer_sha256: o.tokenizer.sha256,
    image_width: w,
    image_height: h,
    image_max_pixels: max,
    image_min_pixels: min,
    labels: labelSet.tokens.label,
  };
}

/**
 * Export a dataset as messages + images JSONL with `vision_labels`, one line per item with
 * questions (items without any are counted, not written), and its `dataset_info.json` entry.
 */
export async function exportDataset(
  dir: string,
  outFile: string,
  o: ExportOptions,
): Promise<{ lines: number; skipped: number; datasetInfo: string }> {
  const { items } = await readDataset(dir);
  const outDir = dirname(resolve(outFile));
  await Deno.mkdir(outDir, { recursive: true });
  const lines: string[] = [];
  let skipped = 0;
  for (const item of items) {
    const messages = itemMessages(item);
    if (!messages.length) {
      skipped++;
      continue;
    }
    const image = resolve(dir, item.image);
    const vision = await itemVisionLabels(dir, item, o);
    const line: ChatLine = {
      messages,
      images: [o.absolutePaths ? image : relative(outDir, image)],
      vision_labels: [vision],
    };
    if (o.layout === "sequence") {
      const s = buildSequenceLayout({
        geometry: o.geometry,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        images: [{
          width: vision.image_width,
          height: vision.image_height,
          visionLabels: vision.labels,
        }],
        tokenizer: o.tokenizer,
      });
      line.input_ids = s.inputIds;
      line.labels = s.labels;
    }
    lines.push(JSON.stringify(line));
  }
  await writeFileAtomic(outFile, lines.length ? lines.join("\n") + "\n" : "");
  // LLaMA-Factory's dataset registry: one entry per file, merged with the entries already there
  const infoPath = join(outDir, "dataset_info.json");
  const info = await Deno.readTextFile(infoPath).then((t) => JSON.parse(t)).catch(() => ({}));
  info[o.name ?? basename(outFile, extname(outFile))] = {
    file_name: basename(outFile),
    formatting: "sharegpt",
    columns: { messages: "messages", images: "images" },
    tags: {
      role_tag: "role",
      content_tag: "content",
      user_tag: "user",
      assistant_tag: "assistant",
      system_tag: "system",
    },
  };
  await writeFileAtomic(infoPath, JSON.stringify(info, null, 2) + "\n");
  return { lines: lines.length, skipped, datasetInfo: infoPath };
}

// ---------------------------------------------------------------- import

const RoleMessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});
/** LLaMA-Factory's sharegpt with `conversations` of {from, value}. */
const FromValueSchema = z.object({
  from: z.enum(["system", "human", "gpt"]),
  value: z.string(),
});
const ImportLineSchema = z.union([
  z.object({ messages: z.array(RoleMessageSchema).min(1), images: z.array(z.string()).optional() }),
  z.object({
    conversations: z.array(FromValueSchema).min(1),
    images: z.array(z.string()).optional(),
  }),
]);

/** Options of {@linkcode importChat}. */
export interface ImportOptions {
  /** Image paths resolve against this folder and must stay inside it. @default the file's folder */
  root?: string;
  /** Where each image's words come from. */
  words: "ocr" | "boxes" | "none";
  /** For `words: "ocr"`. */
  ocr?: OcrEngine;
  /** Largest file accepted, in lines. @default 1_000_000 */
  maxLines?: number;
  onItem?: () => void;
}

interface ParsedLine {
  line: number;
  messages: Message[];
  image: string;
}

/** Read the JSONL (or a JSON array, as LLaMA-Factory's `mllm_demo.json`) and check every line. */
async function parseChatFile(file: string, o: ImportOptions): Promise<ParsedLine[]> {
  const text = await Deno.readTextFile(file).catch(() => {
    throw new DatasetError(`Cannot import '${file}': the file cannot be read`);
  });
  let records: Array<{ line: number; value: unknown }>;
  if (text.trimStart().startsWith("[")) {
    let array: unknown[];
    try {
      array = JSON.parse(text);
    } catch (e) {
      throw new DatasetError(`Cannot import '${file}': not valid JSON (${(e as Error).message})`);
    }
    records = array.map((value, i) => ({ line: i + 1, value }));
  } else {
    records = [];
    for (const [i, l] of text.split("\n").entries()) {
      if (!l.trim()) continue;
      try {
        records.push({ line: i + 1, value: JSON.parse(l) });
      } catch {
        throw new DatasetError(`Cannot import '${file}': line ${i + 1} is not valid JSON`);
      }
    }
  }
  const maxLines = o.maxLines ?? 1_000_000;
  if (records.length > maxLines) {
    throw new DatasetError(
      `Cannot import '${file}': ${records.length} lines is over the limit of ${maxLines}`,
    );
  }
  const root = await Deno.realPath(o.root ?? dirname(file));
  const out: ParsedLine[] = [];
  for (const { line, value } of records) {
    const r = ImportLineSchema.safeParse(value);
    if (!r.success) {
      throw new DatasetError(
        `Cannot import '${file}': line ${line}: ${r.error.issues[0]?.path.join(".")} ${
          r.error.issues[0]?.message
        }`,
      );
    }
    const messages: Message[] = "messages" in r.data ? r.data.messages : r.data.conversations.map((
      m,
    ) => ({
      role: m.from === "human" ? "user" : m.from === "gpt" ? "assistant" : "system",
      content: m.value,
    }));
    const images = r.data.images ?? [];
    if (images.length === 0) continue; // a text-only line: nothing to label
    if (images.length > 1) {
      throw new DatasetError(
        `Cannot import '${file}': line ${line} has ${images.length} images; one image per line is supported`,
      );
    }
    const rel = images[0]!;
    const abs = isAbsolute(rel) ? rel : resolve(root, rel);
    let real: string;
    try {
      real = await Deno.realPath(abs);
    } catch {
      throw new DatasetError(
        `Cannot import '${file}': line ${line}: image '${rel}' does not exist`,
      );
    }
    const inside = relative(root, real);
    if (inside.startsWith("..") || isAbsolute(inside)) {
      throw new DatasetError(
        `Cannot import '${file}': line ${line}: image '${rel}' lies outside the data root '${root}'`,
      );
    }
    out.push({ line, messages, image: real });
  }
  return out;
}

/** QA turns of a chat: each user message with the assistant's reply that follows it. */
function chatTurns(messages: Message[]) {
  const qa: DatasetItem["qa"] = [];
  for (let i = 0; i < messages.length - 1; i++) {
    if (messages[i]!.role === "user" && messages[i + 1]!.role === "assistant") {
      qa.push({
        question: messages[i]!.content.replaceAll("<image>", "").trim(),
        answer: messages[i + 1]!.content,
      });
    }
  }
  return qa;
}

/**
 * Import a messages + images file as a dataset in `out`: the chat kept as it was, the image
 * copied in, its words from OCR or a `<image>.boxes.json` file beside it. Every line is checked
 * before anything is written; a failure leaves `out` as it was.
 */
export async function importChat(file: string, out: string, o: ImportOptions): Promise<Manifest> {
  if (o.words === "ocr" && !o.ocr) {
    throw new TypeError("Cannot import: words 'ocr' needs an OCR engine");
  }
  const lines = await parseChatFile(file, o);
  // boxes files and image headers are checked up front, so a bad line fails before any work
  const boxes = new Map<number, WordBox[]>();
  for (const l of lines) {
    const bytes = await Deno.readFile(l.image);
    try {
      probeImage(bytes);
    } catch (e) {
      throw new DatasetError(`Cannot import '${file}': line ${l.line}: ${(e as Error).message}`);
    }
    if (o.words === "boxes") {
      const sidecar = l.image.replace(/\.[^./]+$/, "") + ".boxes.json";
      const parsed = await Deno.readTextFile(sidecar).then((t) =>
        z.array(WordBoxSchema).safeParse(JSON.parse(t))
      ).catch(() => null);
      if (!parsed?.success) {
        throw new DatasetError(
          `Cannot import '${file}': line ${l.line}: no valid boxes file '${sidecar}'`,
        );
      }
      boxes.set(l.line, parsed.data);
    }
  }
  async function* items(): AsyncGenerator<ItemInput> {
    for (const l of lines) {
      const bytes = await Deno.readFile(l.image);
      const img = await decodeImage(bytes).catch((e) => {
        throw new DatasetError(`Cannot import '${file}': line ${l.line}: ${(e as Error).message}`);
      });
      let words: WordBox[] = [];
      let source: DatasetItem["source"] = { kind: "boxes" };
      if (o.words === "ocr") {
        words = await o.ocr!.recognize(img.type === "png" ? bytes : toPng(img.image), {});
        source = { kind: "ocr", engine: o.ocr!.name };
      } else if (o.words === "boxes") words = boxes.get(l.line)!;
      yield {
        id: `${basename(file)}:${l.line}`,
        bytes,
        ext: imageExtension(bytes, extname(l.image)),
        width: img.width,
        height: img.height,
        source,
        words,
        qa: chatTurns(l.messages),
        messages: l.messages,
      };
      o.onItem?.();
    }
  }
  return await writeDataset(out, items(), {
    producer: "import",
    config: { file: basename(file), words: o.words },
  });
}

export { GeometrySpecSchema };
