/**
 * Datasets on disk: a folder of shards (`shard-00000/`: PNG images + `records.jsonl` +
 * `done.json` with hashes) and a `manifest.json`. A shard is written in a temporary folder
 * and renamed into place, so a killed run leaves no half shard that reads as good; a rerun
 * skips complete shards. `shard: {i, n}` lets N processes split one job.
 */
import { writeDirAtomic, writeFileAtomic } from "../runs/atomic.ts";
import { join } from "node:path";
import { z } from "zod";
import { type GeometrySpec, GeometrySpecSchema } from "../geometry/mod.ts";
import {
  AssignOptionsSchema,
  exactVisionLabels,
  labelImage,
  LabelOptionsSchema,
  type WordBox,
} from "../labels/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { sha256Hex } from "../util/hash.ts";
import { removeStale } from "../util/stale.ts";
import { generateSample, GENERATOR_VERSION, type QA, SUITES } from "./generate.ts";

export const DatasetConfigSchema = z.strictObject({
  suite: z.string().refine((s) => s in SUITES, {
    message: `suite must be one of ${Object.keys(SUITES).join(", ")}`,
  }),
  n: z.number().int().min(1).max(10_000_000),
  shardSize: z.number().int().min(1).max(100_000).default(1000),
  /** Image side in pixels (the model's input size). */
  size: z.number().int().min(56).max(2048).default(448),
  geometry: GeometrySpecSchema.default({ name: "qwen2-vl", minPixels: 3136, maxPixels: 12845056 }),
  tokenizer: z.string().default("dvsft-small"),
  policy: AssignOptionsSchema.default({ split: "span", minCellOverlap: 0.1, minWordOverlap: 0.5 }),
  /** render: labels from the exact boxes; ocr: from OCR of the image (to measure what OCR labels cost). */
  labelSource: z.enum(["render", "ocr"]).default("render"),
});
export type DatasetConfig = z.infer<typeof DatasetConfigSchema>;

export const DatasetRecordSchema = z.object({
  id: z.string(),
  image: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  layout: z.string(),
  font: z.string(),
  words: z.array(
    z.object({
      text: z.string(),
      box: z.tuple([z.number(), z.number(), z.number(), z.number()]),
      confidence: z.number(),
    }),
  ),
  qa: z.array(z.object({ question: z.string(), answer: z.string(), kind: z.string() })),
  /** One label id (or -100) per visual token, for the dataset's geometry and tokenizer. */
  visionLabels: z.array(z.number().int()),
});
export type DatasetRecord = z.infer<typeof DatasetRecordSchema>;

export const ManifestSchema = z.object({
  format: z.literal("dvsft-dataset-1"),
  generatorVersion: z.number(),
  suiteId: z.string(),
  config: DatasetConfigSchema,
  tokenizer: z.object({ name: z.string(), sha256: z.string() }),
  shards: z.array(z.object({ name: z.string(), count: z.number().int(), sha256: z.string() })),
  expectedShards: z.number().int(),
  complete: z.boolean(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

const DoneSchema = z.object({ count: z.number().int(), sha256: z.string() });

const shardName = (s: number) => `shard-${String(s).padStart(5, "0")}`;

/** The shard's records and image hashes, or null when it is missing or does not check out. */
async function verifiedShard(dir: string): Promise<z.infer<typeof DoneSchema> | null> {
  try {
    const done = DoneSchema.parse(JSON.parse(await Deno.readTextFile(join(dir, "done.json"))));
    const records = await Deno.readFile(join(dir, "records.jsonl"));
    return (await sha256Hex(records)) === done.sha256 ? done : null;
  } catch {
    return null;
  }
}

export interface GenerateOptions {
  out: string;
  shard?: { i: number; n: number };
  ocr?: OcrEngine;
  onSample?: () => void;
  /** Called once with the number of samples this process will make. */
  onPlan?: (samples: number) => void;
}

/** Generate (or finish) a dataset. Returns the manifest as it stands after this process. */
export async function generateDataset(
  input: z.input<typeof DatasetConfigSchema>,
  options: GenerateOptions,
): Promise<Manifest> {
  const config = DatasetConfigSchema.parse(input);
  const { out, shard = { i: 0, n: 1 } } = options;
  await Deno.mkdir(out, { recursive: true });
  const tokenizer = await getTokenizer(config.tokenizer, { allowPaths: true });
  const shards = Math.ceil(config.n / config.shardSize);
  const mine = Array.from({ length: shards }, (_, s) => s).filter((s) => s % shard.n === shard.i);
  const todo: number[] = [];
  for (const s of mine) if (!(await verifiedShard(join(out, shardName(s))))) todo.push(s);
  options.onPlan?.(
    todo.reduce((sum, s) => sum + Math.min(config.shardSize, config.n - s * config.shardSize), 0),
  );
  const labelOptions = LabelOptionsSchema.parse({
    geometry: config.geometry,
    policy: config.policy,
  });
  for (const s of todo) {
    // an unverifiable leftover of that name is replaced
    await writeDirAtomic(join(out, shardName(s)), async (tmp) => {
      const lines: string[] = [];
      // PNG encoding runs on skia's thread pool: keep a few in flight while the next samples draw
      const pending: Promise<void>[] = [];
      for (let k = s * config.shardSize; k < Math.min(config.n, (s + 1) * config.shardSize); k++) {
        const g = await generateSample(config.suite, k, config.size);
        const file = `${String(k).padStart(7, "0")}.png`;
        let vision: number[];
        if (config.labelSource === "ocr") {
          if (!options.ocr) throw new Error("labelSource 'ocr' needs an OCR engine");
          const png = new Uint8Array(await g.canvas.encode("png"));
          await Deno.writeFile(join(tmp, file), png);
          vision = (await labelImage({
            bytes: png,
            source: "ocr",
            tokenizer,
            options: labelOptions,
            ocr: options.ocr,
          })).labelSet.tokens.label;
        } else {
          pending.push(g.canvas.encode("png").then((png) => Deno.writeFile(join(tmp, file), png)));
          if (pending.length >= 4) await pending.shift();
          vision = exactVisionLabels(g, g.words, tokenizer, {
            geometry: config.geometry,
            policy: config.policy,
          });
        }
        const record: DatasetRecord = {
          id: `${config.suite}:${k}`,
          image: `${shardName(s)}/${file}`,
          width: g.width,
          height: g.height,
          layout: g.layout,
          font: g.font,
          words: g.words,
          qa: g.qa,
          visionLabels: vision,
        };
        lines.push(JSON.stringify(record));
        options.onSample?.();
      }
      await Promise.all(pending);
      const records = new TextEncoder().encode(lines.join("\n") + "\n");
      await Deno.writeFile(join(tmp, "records.jsonl"), records);
      await Deno.writeTextFile(
        join(tmp, "done.json"),
        JSON.stringify({ count: lines.length, sha256: await sha256Hex(records) }),
      );
    });
  }
  await removeStale(out, ".tmp-shard-", 3_600_000); // leftovers of killed runs
  return await writeManifest(out, config, { name: tokenizer.name, sha256: tokenizer.sha256 });
}

async function writeManifest(
  out: string,
  config: DatasetConfig,
  tokenizer: { name: string; sha256: string },
): Promise<Manifest> {
  const expected = Math.ceil(config.n / config.shardSize);
  const shards: Manifest["shards"] = [];
  for (let s = 0; s < expected; s++) {
    const done = await verifiedShard(join(out, shardName(s)));
    if (done) shards.push({ name: shardName(s), count: done.count, sha256: done.sha256 });
  }
  const manifest: Manifest = {
    format: "dvsft-dataset-1",
    generatorVersion: GENERATOR_VERSION,
    suiteId: SUITES[config.suite]!.id,
    config,
    tokenizer,
    shards,
    expectedShards: expected,
    complete: shards.length === expected,
  };
  await writeFileAtomic(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

/** Read a complete dataset's manifest and records (shard hashes are checked). */
export async function readDataset(
  dir: string,
): Promise<{ manifest: Manifest; records: DatasetRecord[] }> {
  let manifest: Manifest;
  try {
    manifest = ManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(join(dir, "manifest.json"))),
    );
  } catch (e) {
    throw new Error(
      `Cannot read dataset '${dir}': no valid manifest.json (${
        (e as Error).message.slice(0, 200)
      })`,
    );
  }
  if (!manifest.complete) {
    throw new Error(
      `Cannot read dataset '${dir}': ${manifest.shards.length}/${manifest.expectedShards} shards are complete`,
    );
  }
  const records: DatasetRecord[] = [];
  for (const s of manifest.shards) {
    const bytes = await Deno.readFile(join(dir, s.name, "records.jsonl"));
    if ((await sha256Hex(bytes)) !== s.sha256) {
      throw new Error(`Cannot read dataset '${dir}': ${s.name} does not match its hash`);
    }
    for (const line of new TextDecoder().decode(bytes).split("\n")) {
      if (line.trim()) records.push(DatasetRecordSchema.parse(JSON.parse(line)));
    }
  }
  return { manifest, records };
}

/** One line per (image, question) in the messages + images JSONL that LLaMA-Factory (sharegpt) and ms-swift read. */
export const ShareGptLineSchema = z.object({
  messages: z.array(z.object({ role: z.enum(["user", "assistant"]), content: z.string() })).length(
    2,
  ),
  images: z.array(z.string()).length(1),
  /** dvsft's extra field: the vision labels of images[i] (one id or -100 per visual token). */
  vision_labels: z.array(
    z.object({
      geometry: GeometrySpecSchema,
      tokenizer: z.string(),
      tokenizer_sha256: z.string(),
      labels: z.array(z.number().int()),
    }),
  ).length(1),
});
export type ShareGptLine = z.infer<typeof ShareGptLineSchema>;

/** Export a dataset as sharegpt-style JSONL (image paths absolute). Returns the line count. */
export async function exportShareGpt(dir: string, outFile: string): Promise<number> {
  const { manifest, records } = await readDataset(dir);
  const abs = await Deno.realPath(dir);
  const lines: string[] = [];
  for (const r of records) {
    for (const q of r.qa) {
      const line: ShareGptLine = {
        messages: [{ role: "user", content: `<image>${q.question}` }, {
          role: "assistant",
          content: q.answer,
        }],
        images: [join(abs, r.image)],
        vision_labels: [{
          geometry: manifest.config.geometry,
          tokenizer: manifest.tokenizer.name,
          tokenizer_sha256: manifest.tokenizer.sha256,
          labels: r.visionLabels,
        }],
      };
      lines.push(JSON.stringify(line));
    }
  }
  await Deno.writeTextFile(outFile, lines.join("\n") + "\n");
  return lines.length;
}

/** A training/eval item: an image file, a question, its answer, the image's vision labels. */
export interface Item {
  image: string;
  question: string;
  answer: string;
  visionLabels: number[];
  tokenizerSha256: string;
  geometry: GeometrySpec;
  meta?: { id: string; kind: string; layout: string };
}

/** Items of a dataset folder or of a sharegpt JSONL file (what training and evaluation read). */
export async function readItems(path: string): Promise<Item[]> {
  const st = await Deno.stat(path);
  if (st.isDirectory) {
    const { manifest, records } = await readDataset(path);
    return records.flatMap((r) =>
      r.qa.map((q: QA) => ({
        image: join(path, r.image),
        question: q.question,
        answer: q.answer,
        visionLabels: r.visionLabels,
        tokenizerSha256: manifest.tokenizer.sha256,
        geometry: manifest.config.geometry,
        meta: { id: r.id, kind: q.kind, layout: r.layout },
      }))
    );
  }
  const items: Item[] = [];
  for (const [k, line] of (await Deno.readTextFile(path)).split("\n").entries()) {
    if (!line.trim()) continue;
    const parsed = ShareGptLineSchema.safeParse(JSON.parse(line));
    if (!parsed.success) {
      throw new Error(`Cannot read '${path}' line ${k + 1}: ${parsed.error.issues[0]?.message}`);
    }
    const l = parsed.data;
    items.push({
      image: l.images[0]!,
      question: l.messages[0]!.content.replace(/^<image>/, ""),
      answer: l.messages[1]!.content,
      visionLabels: l.vision_labels[0]!.labels,
      tokenizerSha256: l.vision_labels[0]!.tokenizer_sha256,
      geometry: l.vision_labels[0]!.geometry,
    });
  }
  return items;
}

export type { WordBox };
