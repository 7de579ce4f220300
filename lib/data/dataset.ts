/**
 * Datasets on disk, built on words and boxes. An item is an image (or a PDF page) with its words
 * (text, box in the stored image's pixels, confidence; where they came from) and zero or more
 * question–answer turns. Vision labels are not stored: each consumer derives them for its own
 * geometry and tokenizer (`itemLabelSet`). Every producer — the synthetic generator, the label
 * CLI, `data import` — writes this one format.
 *
 * A dataset folder holds shards (`shard-00000/`: the images, `records.jsonl`, `done.json` with
 * the records' SHA-256) and a `manifest.json`. A shard is written under a temporary name and
 * renamed into place, so a killed run leaves no half shard that reads as good; a rerun skips
 * complete shards; `shard: {i, n}` lets N processes split one generation job.
 */
import { extname, join } from "node:path";
import { z } from "zod";
import type { GeometrySpec } from "../geometry/mod.ts";
import {
  AssignOptionsSchema,
  buildLabelSet,
  type LabeledInput,
  type LabelSet,
  SOURCES,
  type WordBox,
} from "../labels/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import { sha256Hex } from "../util/hash.ts";
import { removeStale } from "../util/stale.ts";
import { writeDirAtomic, writeFileAtomic } from "../runs/atomic.ts";
import { generateSample, GENERATOR_VERSION, SUITES } from "./generate.ts";

export const DATASET_FORMAT = "dvsft-dataset-2";

/** One chat message, kept as the source file had it (`data export` writes it back unchanged). */
export const MessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});
export type Message = z.infer<typeof MessageSchema>;

export const QATurnSchema = z.object({
  question: z.string(),
  answer: z.string(),
  /** All accepted answers (benchmarks with several references); `answer` is the first. */
  answers: z.array(z.string()).optional(),
  /** What the question asks (the generator's question kind), when known. */
  kind: z.string().optional(),
});
export type QATurn = z.infer<typeof QATurnSchema>;

export const DatasetWordSchema = z.object({
  text: z.string(),
  box: z.tuple([z.number(), z.number(), z.number(), z.number()]),
  confidence: z.number(),
});

export const DatasetItemSchema = z.object({
  id: z.string(),
  /** The image, relative to the dataset folder. */
  image: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** 1-based page of the PDF the image was rendered from. */
  page: z.number().int().positive().optional(),
  /** Where the words came from: render (exact), ocr (engine named), pdf (text layer), boxes. */
  source: z.object({ kind: z.enum(SOURCES), engine: z.string().optional() }),
  words: z.array(DatasetWordSchema),
  qa: z.array(QATurnSchema),
  /** The chat as the imported file had it (absent for items made here). */
  messages: z.array(MessageSchema).optional(),
  meta: z.record(z.string(), z.string()).optional(),
});
export type DatasetItem = z.infer<typeof DatasetItemSchema>;

export const ManifestSchema = z.object({
  format: z.literal(DATASET_FORMAT),
  /** What made it: `generate`, `label`, `import`. */
  producer: z.string(),
  /** The producer's settings (the generator's config, the label command's options, …). */
  config: z.record(z.string(), z.unknown()),
  shards: z.array(z.object({ name: z.string(), count: z.number().int(), sha256: z.string() })),
  expectedShards: z.number().int(),
  complete: z.boolean(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

const DoneSchema = z.object({ count: z.number().int(), sha256: z.string() });

export const shardName = (s: number) => `shard-${String(s).padStart(5, "0")}`;

/** Raised when a dataset folder or its records do not check out; names the file and line. */
export class DatasetError extends Error {
  override name = "DatasetError";
}

/** The shard's record count and hash, or null when it is missing or does not check out. */
async function verifiedShard(dir: string): Promise<z.infer<typeof DoneSchema> | null> {
  try {
    const done = DoneSchema.parse(JSON.parse(await Deno.readTextFile(join(dir, "done.json"))));
    const records = await Deno.readFile(join(dir, "records.jsonl"));
    return (await sha256Hex(records)) === done.sha256 ? done : null;
  } catch {
    return null;
  }
}

/** An item's image, as a producer hands it to {@linkcode writeShard}. */
export interface ItemInput extends Omit<DatasetItem, "image"> {
  /** Encoded image (PNG, JPEG, WebP, GIF). */
  bytes: Uint8Array;
  /** File extension of `bytes`, with the dot. @default ".png" */
  ext?: string;
}

/** Write shard `index` of `out` whole (images + records + done.json), replacing a bad leftover. */
export async function writeShard(
  out: string,
  index: number,
  items: AsyncIterable<ItemInput> | Iterable<ItemInput>,
): Promise<number> {
  const name = shardName(index);
  let count = 0;
  await writeDirAtomic(join(out, name), async (tmp) => {
    const lines: string[] = [];
    for await (const it of items) {
      const file = `${String(count).padStart(6, "0")}${it.ext ?? ".png"}`;
      await Deno.writeFile(join(tmp, file), it.bytes);
      const { bytes: _b, ext: _e, ...rest } = it;
      lines.push(JSON.stringify(DatasetItemSchema.parse({ ...rest, image: `${name}/${file}` })));
      count++;
    }
    const records = new TextEncoder().encode(lines.length ? lines.join("\n") + "\n" : "");
    await Deno.writeFile(join(tmp, "records.jsonl"), records);
    await Deno.writeTextFile(
      join(tmp, "done.json"),
      JSON.stringify({ count, sha256: await sha256Hex(records) }),
    );
  });
  return count;
}

/** (Re)write the manifest from the shards on disk. */
export async function writeManifest(
  out: string,
  info: { producer: string; config: Record<string, unknown>; expectedShards: number },
): Promise<Manifest> {
  const shards: Manifest["shards"] = [];
  for (let s = 0; s < info.expectedShards; s++) {
    const done = await verifiedShard(join(out, shardName(s)));
    if (done) shards.push({ name: shardName(s), count: done.count, sha256: done.sha256 });
  }
  const manifest: Manifest = {
    format: DATASET_FORMAT,
    producer: info.producer,
    config: info.config,
    shards,
    expectedShards: info.expectedShards,
    complete: shards.length === info.expectedShards,
  };
  await writeFileAtomic(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

/**
 * Write a whole dataset from a stream of items (the label CLI, `data import`): shards of
 * `shardSize` items, then the manifest. A dataset already in `out` is replaced only when the
 * writing succeeds; nothing half-written is left under a trusted name.
 */
export async function writeDataset(
  out: string,
  items: AsyncIterable<ItemInput>,
  info: { producer: string; config: Record<string, unknown>; shardSize?: number },
): Promise<Manifest> {
  const shardSize = info.shardSize ?? 1000;
  const parent = join(out, "..");
  await Deno.mkdir(parent, { recursive: true });
  let manifest: Manifest | null = null;
  await writeDirAtomic(out, async (tmp) => {
    let shard = 0;
    let batch: ItemInput[] = [];
    for await (const it of items) {
      batch.push(it);
      if (batch.length === shardSize) {
        await writeShard(tmp, shard++, batch);
        batch = [];
      }
    }
    if (batch.length || shard === 0) await writeShard(tmp, shard++, batch);
    manifest = await writeManifest(tmp, { ...info, expectedShards: shard });
  });
  return manifest!;
}

/** Read a complete dataset: manifest and items (shard hashes checked, every record validated). */
export async function readDataset(
  dir: string,
): Promise<{ manifest: Manifest; items: DatasetItem[] }> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, "manifest.json"));
  } catch {
    throw new DatasetError(
      `Cannot read dataset '${dir}': no manifest.json (make one with \`deno task data generate\`, \`deno task label --dataset\` or \`deno task data import\`)`,
    );
  }
  const parsed = ManifestSchema.safeParse((() => {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  })());
  if (!parsed.success) {
    const legacy = text.includes('"dvsft-dataset-1"');
    throw new DatasetError(
      `Cannot read dataset '${dir}': ${
        legacy
          ? "format dvsft-dataset-1 (vision labels baked in at one size) is no longer read; generate it again"
          : `bad manifest.json (${parsed.error.issues[0]?.message})`
      }`,
    );
  }
  const manifest = parsed.data;
  if (!manifest.complete) {
    throw new DatasetError(
      `Cannot read dataset '${dir}': ${manifest.shards.length}/${manifest.expectedShards} shards are complete`,
    );
  }
  const items: DatasetItem[] = [];
  for (const s of manifest.shards) {
    const bytes = await Deno.readFile(join(dir, s.name, "records.jsonl"));
    if ((await sha256Hex(bytes)) !== s.sha256) {
      throw new DatasetError(`Cannot read dataset '${dir}': ${s.name} does not match its hash`);
    }
    for (const [k, line] of new TextDecoder().decode(bytes).split("\n").entries()) {
      if (!line.trim()) continue;
      const r = DatasetItemSchema.safeParse(JSON.parse(line));
      if (!r.success) {
        throw new DatasetError(
          `Cannot read dataset '${dir}': ${s.name}/records.jsonl line ${k + 1}: ${
            r.error.issues[0]?.message
          }`,
        );
      }
      if (r.data.image.includes("..") || r.data.image.startsWith("/")) {
        throw new DatasetError(
          `Cannot read dataset '${dir}': ${s.name}/records.jsonl line ${
            k + 1
          }: image path '${r.data.image}' leaves the dataset`,
        );
      }
      items.push(r.data);
    }
  }
  return { manifest, items };
}

/** The item's image file. */
export const itemImagePath = (dir: string, item: DatasetItem) => join(dir, item.image);

/**
 * The item's label set for a consumer's geometry and tokenizer, from its stored words — the
 * same computation as `POST /v1/label` on the item's image with these words.
 */
export function itemLabelSet(
  item: DatasetItem,
  imageSha256: string,
  geometry: GeometrySpec,
  tokenizer: WordTokenizer,
  policy = AssignOptionsSchema.parse({}),
  minConfidence = 0,
): LabelSet {
  return buildLabelSet({
    image: { sha256: imageSha256, width: item.width, height: item.height },
    words: item.words as WordBox[],
    source: item.source,
    tokenizer,
    geometry,
    policy,
    minConfidence,
  });
}

// ---------------------------------------------------------------- the synthetic producer

export const DatasetConfigSchema = z.strictObject({
  suite: z.string().refine((s) => Object.hasOwn(SUITES, s), {
    message: `suite must be one of ${Object.keys(SUITES).join(", ")}`,
  }),
  n: z.number().int().min(1).max(10_000_000),
  /**
   * The suite's first item index: items start … start + n − 1 (e.g. the training stream after
   * what a base model saw).
   */
  start: z.number().int().min(0).max(1_000_000_000).default(0),
  shardSize: z.number().int().min(1).max(100_000).default(1000),
  /** Image side in pixels (the model's input size: 224 for `small`, 56 for `tiny`). */
  size: z.number().int().min(56).max(2048).default(224),
  /** render: the exact word boxes; ocr: words read back by OCR (to measure what OCR labels cost). */
  labelSource: z.enum(["render", "ocr"]).default("render"),
});
export type DatasetConfig = z.infer<typeof DatasetConfigSchema>;

export interface GenerateOptions {
  out: string;
  shard?: { i: number; n: number };
  ocr?: OcrEngine;
  onSample?: () => void;
  /** Called once with the number of samples this process will make. */
  onPlan?: (samples: number) => void;
}

/** Generate (or finish) a synthetic dataset. Returns the manifest as it stands after this process. */
export async function generateDataset(
  input: z.input<typeof DatasetConfigSchema>,
  options: GenerateOptions,
): Promise<Manifest> {
  const config = DatasetConfigSchema.parse(input);
  const { out, shard = { i: 0, n: 1 } } = options;
  if (config.labelSource === "ocr" && !options.ocr) {
    throw new TypeError("Cannot generate: labelSource 'ocr' needs an OCR engine");
  }
  await Deno.mkdir(out, { recursive: true });
  const shards = Math.ceil(config.n / config.shardSize);
  const mine = Array.from({ length: shards }, (_, s) => s).filter((s) => s % shard.n === shard.i);
  const todo: number[] = [];
  for (const s of mine) if (!(await verifiedShard(join(out, shardName(s))))) todo.push(s);
  options.onPlan?.(
    todo.reduce((sum, s) => sum + Math.min(config.shardSize, config.n - s * config.shardSize), 0),
  );
  for (const s of todo) {
    const end = Math.min(config.n, (s + 1) * config.shardSize);
    const items = async function* (): AsyncGenerator<ItemInput> {
      for (let k = s * config.shardSize; k < end; k++) {
        const g = await generateSample(config.suite, config.start + k, config.size);
        const png = new Uint8Array(await g.canvas.encode("png"));
        let words: WordBox[] = g.words;
        let source: DatasetItem["source"] = { kind: "render" };
        if (config.labelSource === "ocr") {
          words = await options.ocr!.recognize(png, {});
          source = { kind: "ocr", engine: options.ocr!.name };
        }
        yield {
          id: `${config.suite}:${config.start + k}`,
          bytes: png,
          width: g.width,
          height: g.height,
          source,
          words,
          qa: g.qa,
          meta: { suite: config.suite, layout: g.layout, font: g.font },
        };
        options.onSample?.();
      }
    };
    await writeShard(out, s, items());
  }
  await removeStale(out, ".tmp-shard-", 3_600_000); // leftovers of killed runs
  return await writeManifest(out, {
    producer: "generate",
    config: { ...config, generatorVersion: GENERATOR_VERSION, suiteId: SUITES[config.suite]!.id },
    expectedShards: shards,
  });
}

/** Image extension from the first bytes (what `writeShard` names the file). */
export function imageExtension(bytes: Uint8Array, fallback = ".png"): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return ".png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return ".jpg";
  if (bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[8] === 0x57) return ".webp";
  if (bytes[0] === 0x47 && bytes[1] === 0x49) return ".gif";
  return extname(fallback) || ".png";
}

/**
 * Label results as dataset items: each image (or PDF page) kept with its words, no questions yet
 * (`name#pN` for PDF pages). What the label CLI and `POST /v1/label` write with `--dataset`.
 */
export async function* labeledItems(
  inputs: Iterable<[name: string, results: LabeledInput[]]>,
): AsyncGenerator<ItemInput> {
  for (const [name, results] of inputs) {
    for (const r of results) {
      const ls = r.labelSet;
      yield {
        id: r.page !== undefined ? `${name}#p${r.page}` : name,
        bytes: r.image.bytes,
        ext: imageExtension(r.image.bytes),
        width: ls.image.width,
        height: ls.image.height,
        ...(r.page !== undefined ? { page: r.page } : {}),
        source: ls.source,
        words: ls.words.map((w) => ({ text: w.text, box: w.box, confidence: w.confidence })),
        qa: [],
      };
    }
  }
}

export type { WordBox };
