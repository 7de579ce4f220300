/**
 * `deno task label <files|folders|pdfs> --geometry qwen2-vl --tokenizer qwen2 --source ocr --out out/labels`
 *
 * Writes `<name>.labels.json` per image (per page for PDFs), `<name>.overlay.png` with
 * --overlay, and `summary.json`; prints a progress bar and a summary.
 */
import { parseArgs } from "node:util";
import { runMain, ShardSchema } from "../shared/cli.ts";
import { removeStale } from "../../lib/util/stale.ts";
import { basename, extname, join } from "node:path";
import { z } from "zod";
import {
  drawOverlay,
  LABEL_DEFAULTS,
  type LabeledInput,
  labelImage,
  labelInput,
  LabelOptionsSchema,
  LabelRequestSchema,
  LabelSetSchema,
  requestTokenizerName,
  WordBoxSchema,
} from "../../lib/labels/mod.ts";
import { writeFileAtomic } from "../../lib/runs/atomic.ts";
import { ChatSchema, sequenceOfLabeledImage, sequenceTokenizerFor } from "../../lib/layout/mod.ts";
import { labeledItems, writeDataset } from "../../lib/data/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";
import { createOcrEngine, type OcrEngine } from "../../lib/ocr/mod.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";
import { zodIssues } from "../../lib/http/mod.ts";
import { availableParallelism } from "node:os";

const USAGE = `Usage: deno task label [inputs…] [options]

Inputs: image files (png, jpg, webp, gif), folders of them, PDF files (--source pdf).

Options:
  --source ocr|render|pdf|boxes   where words come from (default ocr; render draws --n pages itself)
  --geometry NAME|JSON            qwen2-vl (default), qwen2.5-vl, llava-1.5, internvl, or a JSON spec
  --tokenizer NAME|PATH           a built-in name or a path to a tokenizer.json (default: the geometry's own)
  --out DIR                       output folder (default out/labels)
  --policy span|first             how a split word spreads over its cells (default span)
  --min-confidence N              drop OCR words below N (0-100, default 0)
  --ocr-engine auto|native|tesseract.js   (default auto: native tesseract when installed)
  --concurrency N                 parallel OCR pages (default: cores)
  --dpi N                         PDF render / OCR resolution (default 150)
  --n N --seed S                  pages to draw for --source render (default 8, seed 0)
  --shard i/N                     process only every N-th input starting at i (scale-out)
  --overlay                       also write <name>.overlay.png
  --force                         relabel images whose label set already exists (default: skip them)
  --layout sequence --messages F  also write <name>.sequence.json: the chat in F (JSON messages with one
                                  <image>) as the model's input_ids and labels, vision labels in place
  --dataset DIR                   also write the inputs as a dataset (images or PDF pages + their words),
                                  for deno task train (data.task "dataset") and deno task data export
  -h, --help`;

/** Every flag, once: parseArgs' options are derived from this schema. */
const FlagsSchema = z.strictObject({
  source: z.enum(["ocr", "render", "pdf", "boxes"]).default(LABEL_DEFAULTS.source),
  geometry: z.string().optional(),
  tokenizer: z.string().optional(),
  out: z.string().default("out/labels"),
  policy: z.enum(["span", "first"]).optional(),
  "min-confidence": z.coerce.number().optional(),
  "ocr-engine": z.enum(["auto", "native", "tesseract.js"]).default("auto"),
  concurrency: z.coerce.number().int().min(1).max(256).default(availableParallelism()),
  dpi: z.coerce.number().optional(),
  n: z.coerce.number().int().min(1).max(1_000_000).default(8),
  seed: z.coerce.number().int().default(0),
  shard: ShardSchema.optional(),
  overlay: z.boolean().default(false),
  force: z.boolean().default(false),
  dataset: z.string().optional(),
  layout: z.enum(["labels", "sequence"]).default("labels"),
  messages: z.string().optional(),
  help: z.boolean().default(false),
});
const BOOLEAN_FLAGS = new Set(["overlay", "force", "help"]);
const PARSE_OPTIONS = Object.fromEntries(
  Object.keys(FlagsSchema.shape).map((k) => [
    k,
    BOOLEAN_FLAGS.has(k)
      ? { type: "boolean" as const, ...(k === "help" ? { short: "h" } : {}) }
      : { type: "string" as const },
  ]),
);

function parseGeometry(text: string | undefined) {
  if (text === undefined) return undefined;
  return text.trim().startsWith("{") ? JSON.parse(text) : { name: text };
}

const IMAGE_EXT = new Set([".png", ".jpg", ".jpeg", ".webp", ".gif"]);

async function expandInputs(paths: string[], source: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const st = await Deno.stat(p).catch(() => null);
    if (!st) throw new Error(`Cannot read input: '${p}' does not exist`);
    if (st.isDirectory) {
      const names: string[] = [];
      for await (const e of Deno.readDir(p)) {
        const ext = extname(e.name).toLowerCase();
        if (e.isFile && (source === "pdf" ? ext === ".pdf" : IMAGE_EXT.has(ext))) {
          names.push(join(p, e.name));
        }
      }
      out.push(...names.sort());
    } else out.push(p);
  }
  return out;
}

async function isValidLabelFile(path: string): Promise<boolean> {
  try {
    return LabelSetSchema.safeParse(JSON.parse(await Deno.readTextFile(path))).success;
  } catch {
    return false;
  }
}

interface Job {
  name: string;
  run: (ocr?: OcrEngine) => Promise<LabeledInput[]>;
}

/** Run the CLI; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: PARSE_OPTIONS,
  });
  const parsed = FlagsSchema.safeParse(values);
  if (!parsed.success) {
    for (const i of zodIssues(parsed.error)) console.error(`error: --${i.path}: ${i.message}`);
    return 2;
  }
  const f = parsed.data;
  if (f.help) {
    console.log(USAGE);
    return 0;
  }
  // the flags as the request every labeling edge takes (lib/labels: one set of defaults)
  const requested = LabelRequestSchema.safeParse({
    source: f.source === "render" ? "boxes" : f.source,
    tokenizer: f.tokenizer,
    geometry: parseGeometry(f.geometry),
    policy: f.policy ? { split: f.policy } : undefined,
    minConfidence: f["min-confidence"],
    dpi: f.dpi,
  });
  if (!requested.success) {
    for (const i of zodIssues(requested.error)) console.error(`error: ${i.path}: ${i.message}`);
    return 2;
  }
  const request = requested.data;
  const options = LabelOptionsSchema.parse({
    geometry: request.geometry,
    policy: request.policy,
    minConfidence: request.minConfidence,
  });
  if ((f.layout === "sequence") !== (f.messages !== undefined)) {
    console.error("error: --layout sequence and --messages FILE go together");
    return 2;
  }
  const messages = f.messages
    ? ChatSchema.parse(JSON.parse(await Deno.readTextFile(f.messages)))
    : undefined;
  const tokenizer = await getTokenizer(requestTokenizerName(request), {
    allowPaths: true,
    extraSpecialTokens: messages
      ? sequenceTokenizerFor(request.geometry.name).extraSpecialTokens
      : [],
  });
  await Deno.mkdir(f.out, { recursive: true });
  await removeStale(f.out, ".tmp-", 60_000); // half-written files of a killed run

  let jobs: Job[] = [];
  if (f.source === "render") {
    if (positionals.length) throw new Error("--source render draws its own pages: give no inputs");
    jobs = Array.from({ length: f.n }, (_, k) => ({
      name: `render-${String(f.seed + k).padStart(6, "0")}`,
      run: async () => {
        const page = renderPage({ seed: f.seed + k });
        return [
          await labelImage({
            bytes: page.png,
            source: "render",
            words: page.words,
            tokenizer,
            options,
          }),
        ];
      },
    }));
  } else {
    if (!positionals.length) throw new Error("No inputs: give image files or folders (see --help)");
    const files = await expandInputs(positionals, f.source);
    jobs = files.map((file) => ({
      name: basename(file, extname(file)),
      run: async (ocr) => {
        const bytes = await Deno.readFile(file);
        const words = request.source === "boxes"
          ? z.array(WordBoxSchema).parse(
            JSON.parse(await Deno.readTextFile(file.replace(/\.[^.]+$/, ".boxes.json"))),
          )
          : undefined;
        return await labelInput(bytes, { ...request, words }, {
          tokenizer,
          ocr: ocr ? () => Promise.resolve(ocr) : undefined,
          maxPdfPages: Number.MAX_SAFE_INTEGER, // local files: every page
        });
      },
    }));
  }
  if (f.shard) jobs = jobs.filter((_, k) => k % f.shard!.n === f.shard!.i);

  const ocr = f.source === "ocr"
    ? await createOcrEngine(f["ocr-engine"], { concurrency: f.concurrency })
    : undefined;
  const bar = startProgress(`label (${ocr?.name ?? f.source})`, jobs.length, ["labeled"]);
  const t0 = performance.now();
  let images = 0, tokens = 0, labeled = 0, confSum = 0, confN = 0, failed = 0, skipped = 0;
  const failures: Array<{ input: string; error: string }> = [];
  const datasetItems = new Map<string, LabeledInput[]>();
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      try {
        // a rerun after a kill skips what is done (each file is written whole, then renamed)
        if (
          !f.force && f.source !== "pdf" &&
          (await isValidLabelFile(join(f.out, `${job.name}.labels.json`)))
        ) {
          skipped++;
          bar.tick({ labeled: tokens ? `${((100 * labeled) / tokens).toFixed(1)}%` : "-" });
          continue;
        }
        const results = await job.run(ocr);
        if (f.dataset) datasetItems.set(job.name, results);
        for (const [p, r] of results.entries()) {
          const stem = results.length > 1 ? `${job.name}-p${p + 1}` : job.name;
          await writeFileAtomic(join(f.out, `${stem}.labels.json`), JSON.stringify(r.labelSet));
          if (messages) {
            const seq = sequenceOfLabeledImage(request.geometry, messages, {
              width: r.image.width,
              height: r.image.height,
              visionLabels: r.labelSet.tokens.label,
            }, tokenizer);
            await writeFileAtomic(join(f.out, `${stem}.sequence.json`), JSON.stringify(seq));
          }
          if (f.overlay) {
            await Deno.writeFile(
              join(f.out, `${stem}.overlay.png`),
              drawOverlay(r.image.image, r.labelSet),
            );
          }
          images++;
          tokens += r.labelSet.stats.tokens;
          labeled += r.labelSet.stats.labeled;
          if (r.labelSet.stats.meanConfidence !== null) {
            confSum += r.labelSet.stats.meanConfidence * r.labelSet.stats.words;
            confN += r.labelSet.stats.words;
          }
        }
      } catch (e) {
        failed++;
        failures.push({ input: job.name, error: (e as Error).message });
      }
      bar.tick({ labeled: tokens ? `${((100 * labeled) / tokens).toFixed(1)}%` : "-" });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, ocr ? f.concurrency : 1) }, worker));
  } finally {
    bar.stop();
    await ocr?.close();
  }
  if (f.dataset) {
    if (failed > 0) {
      console.error(`dataset not written: ${failed} input(s) failed (see below)`);
    } else {
      // in input order, whatever order the workers finished in
      const order = jobs.map((j) => j.name).filter((n) => datasetItems.has(n));
      const m = await writeDataset(
        f.dataset,
        labeledItems(order.map((n) => [n, datasetItems.get(n)!])),
        {
          producer: "label",
          config: { ...request, words: undefined, inputs: order.length },
        },
      );
      console.log(`dataset: ${m.shards.reduce((s, x) => s + x.count, 0)} items → ${f.dataset}`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    images,
    skipped,
    failed,
    tokens,
    labeled,
    labeledFraction: tokens ? Math.round((labeled / tokens) * 1e4) / 1e4 : 0,
    meanConfidence: confN ? Math.round((confSum / confN) * 100) / 100 : null,
    seconds: Math.round(seconds * 100) / 100,
    imagesPerSecond: Math.round((images / seconds) * 100) / 100,
    geometry: options.geometry.name,
    tokenizer: tokenizer.name,
    source: f.source,
    engine: ocr?.name,
    failures,
  };
  await Deno.writeTextFile(join(f.out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  console.log(
    `labeled ${images} image(s), ${skipped} already done, ${failed} failed: ${tokens} tokens, ${
      (summary.labeledFraction * 100).toFixed(1)
    }% labeled, ` +
      `mean confidence ${
        summary.meanConfidence ?? "-"
      }, ${summary.seconds} s (${summary.imagesPerSecond}/s) → ${f.out}`,
  );
  for (const x of failures) console.error(`failed: ${x.input}: ${x.error}`);
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) await runMain(main);
