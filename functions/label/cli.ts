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
import { GeometrySpecSchema } from "../../lib/geometry/mod.ts";
import {
  drawOverlay,
  type LabeledImage,
  labelImage,
  LabelOptionsSchema,
  LabelSetSchema,
  WordBoxSchema,
} from "../../lib/labels/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";
import { createOcrEngine, type OcrEngine } from "../../lib/ocr/mod.ts";
import { readPdf } from "../../lib/pdf/mod.ts";
import { renderPage } from "../../lib/render/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";
import { zodIssues } from "../../lib/http/mod.ts";
import { availableParallelism } from "node:os";

const USAGE = `Usage: deno task label [inputs…] [options]

Inputs: image files (png, jpg, webp, gif), folders of them, PDF files (--source pdf).

Options:
  --source ocr|render|pdf|boxes   where words come from (default ocr; render draws --n pages itself)
  --geometry NAME|JSON            qwen2-vl (default), qwen2.5-vl, llava-1.5, internvl, or a JSON spec
  --tokenizer NAME|PATH           qwen2 (default) or a path to a tokenizer.json
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
  -h, --help`;

const FlagsSchema = z.strictObject({
  source: z.enum(["ocr", "render", "pdf", "boxes"]).default("ocr"),
  geometry: z.string().default("qwen2-vl"),
  tokenizer: z.string().default("qwen2"),
  out: z.string().default("out/labels"),
  policy: z.enum(["span", "first"]).default("span"),
  "min-confidence": z.coerce.number().min(0).max(100).default(0),
  "ocr-engine": z.enum(["auto", "native", "tesseract.js"]).default("auto"),
  concurrency: z.coerce.number().int().min(1).max(256).default(availableParallelism()),
  dpi: z.coerce.number().int().min(36).max(600).default(150),
  n: z.coerce.number().int().min(1).max(1_000_000).default(8),
  seed: z.coerce.number().int().default(0),
  shard: ShardSchema.optional(),
  overlay: z.boolean().default(false),
  force: z.boolean().default(false),
  help: z.boolean().default(false),
});

function parseGeometry(text: string) {
  return GeometrySpecSchema.parse(text.trim().startsWith("{") ? JSON.parse(text) : { name: text });
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

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
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
  run: (ocr?: OcrEngine) => Promise<LabeledImage[]>;
}

/** Run the CLI; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      source: { type: "string" },
      geometry: { type: "string" },
      tokenizer: { type: "string" },
      out: { type: "string" },
      policy: { type: "string" },
      "min-confidence": { type: "string" },
      "ocr-engine": { type: "string" },
      concurrency: { type: "string" },
      dpi: { type: "string" },
      n: { type: "string" },
      seed: { type: "string" },
      shard: { type: "string" },
      overlay: { type: "boolean" },
      force: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
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
  const options = LabelOptionsSchema.parse({
    geometry: parseGeometry(f.geometry),
    policy: { split: f.policy },
    minConfidence: f["min-confidence"],
  });
  const tokenizer = await getTokenizer(f.tokenizer, { allowPaths: true });
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
        if (f.source === "pdf") {
          const pages = await readPdf(file, { dpi: f.dpi });
          return await Promise.all(
            pages.map((p) =>
              labelImage({ bytes: p.png, source: "pdf", words: p.words, tokenizer, options })
            ),
          );
        }
        const bytes = await Deno.readFile(file);
        if (f.source === "boxes") {
          const sidecar = file.replace(/\.[^.]+$/, ".boxes.json");
          const words = z.array(WordBoxSchema).parse(JSON.parse(await Deno.readTextFile(sidecar)));
          return [await labelImage({ bytes, source: "boxes", words, tokenizer, options })];
        }
        return [await labelImage({ bytes, source: "ocr", tokenizer, options, ocr, dpi: f.dpi })];
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
        for (const [p, r] of results.entries()) {
          const stem = results.length > 1 ? `${job.name}-p${p + 1}` : job.name;
          await writeAtomic(join(f.out, `${stem}.labels.json`), JSON.stringify(r.labelSet));
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
