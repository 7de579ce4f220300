/**
 * `deno task data generate --suite train --n 20000 --shard-size 1000 --out out/data/train [--shard i/N]`
 * `deno task data import data.jsonl --out out/data/mine [--words ocr|boxes|none]`
 * `deno task data export --in out/data/train --out train.jsonl --geometry qwen2-vl --tokenizer qwen2`
 * `deno task data preview --suite charts [--n 12] [--out out/preview-charts.png]`
 */
import { parseArgs } from "node:util";
import { runMain, ShardSchema } from "../shared/cli.ts";
import { z } from "zod";
import { createCanvas } from "@napi-rs/canvas";
import {
  exportDataset,
  generateDataset,
  generateSample,
  importChat,
  SUITES,
} from "../../lib/data/mod.ts";
import { MODEL_PRESETS } from "../../lib/model/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";
import { sequenceTokenizerFor } from "../../lib/layout/mod.ts";
import { GeometrySpecSchema, presetTokenizer } from "../../lib/geometry/mod.ts";
import { createOcrEngine } from "../../lib/ocr/mod.ts";
import { ensureFonts } from "../../lib/render/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";
import { zodIssues } from "../../lib/http/mod.ts";

const USAGE = `Usage:
  deno task data generate --suite NAME --n N --out DIR [--model small|tiny | --size PX] [--start K]
                          [--shard-size 1000] [--label-source render|ocr] [--shard i/N]
  deno task data import FILE.jsonl|FILE.json --out DIR [--words ocr|boxes|none] [--root DIR]
                          (LLaMA-Factory / ms-swift messages + images; words: OCR, or <image>.boxes.json)
  deno task data export --in DIR --out FILE.jsonl [--geometry NAME|JSON] [--tokenizer NAME|PATH]
                          [--image-max-pixels N] [--image-min-pixels N] [--absolute] [--name NAME]
                          [--layout labels|sequence]
                          (messages + images + vision_labels, and a dataset_info.json entry;
                          sequence: also input_ids + labels in the model's own layout;
                          tokenizer default: the geometry's own)
  deno task data preview --suite NAME [--n 12] [--size 448] [--out FILE.png]

A dataset is images + their words with boxes + QA turns; vision labels are derived for the
geometry and tokenizer of whatever consumes it (training, export).

Suites: ${Object.entries(SUITES).map(([k, s]) => `${k} (${s.domain})`).join(", ")}`;

const FLAGS = {
  suite: { type: "string" },
  n: { type: "string" },
  out: { type: "string" },
  in: { type: "string" },
  model: { type: "string" },
  "shard-size": { type: "string" },
  size: { type: "string" },
  tokenizer: { type: "string" },
  geometry: { type: "string" },
  "label-source": { type: "string" },
  shard: { type: "string" },
  start: { type: "string" },
  words: { type: "string" },
  root: { type: "string" },
  "image-max-pixels": { type: "string" },
  "image-min-pixels": { type: "string" },
  absolute: { type: "boolean" },
  name: { type: "string" },
  layout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function printIssues(e: z.ZodError): 2 {
  for (const i of zodIssues(e)) console.error(`error: --${i.path}: ${i.message}`);
  return 2;
}

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, options: FLAGS, allowPositionals: true });
  if (values.help || !command || command === "help") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (command === "generate") {
    const f = z.object({
      suite: z.string(),
      n: z.coerce.number().int().min(1),
      start: z.coerce.number().int().min(0).default(0),
      out: z.string(),
      "shard-size": z.coerce.number().int().min(1).default(1000),
      model: z.enum(["tiny", "small"]).default("small"),
      size: z.coerce.number().int().optional(),
      "label-source": z.enum(["render", "ocr"]).default("render"),
      shard: ShardSchema.optional(),
    }).safeParse(values);
    if (!f.success) return printIssues(f.error);
    const v = f.data;
    // the chosen model's input size unless a size is given
    const size = v.size ?? MODEL_PRESETS[v.model].imageSize;
    const ocr = v["label-source"] === "ocr" ? await createOcrEngine("auto") : undefined;
    let bar: ReturnType<typeof startProgress> | null = null;
    const t0 = performance.now();
    let made = 0;
    try {
      const manifest = await generateDataset(
        {
          suite: v.suite,
          n: v.n,
          start: v.start,
          shardSize: v["shard-size"],
          size,
          labelSource: v["label-source"],
        },
        {
          out: v.out,
          shard: v.shard,
          ocr,
          onPlan: (
            n,
          ) => (bar = startProgress(
            `data ${v.suite}${v.shard ? ` ${v.shard.i}/${v.shard.n}` : ""}`,
            n,
            [],
          )),
          onSample: () => {
            made++;
            bar?.tick();
          },
        },
      );
      (bar as ReturnType<typeof startProgress> | null)?.stop();
      const s = (performance.now() - t0) / 1000;
      console.log(
        `${made} samples made in ${s.toFixed(1)} s (${
          (made / s).toFixed(1)
        }/s); ${manifest.shards.length}/${manifest.expectedShards} shards complete → ${v.out}`,
      );
    } finally {
      await ocr?.close();
    }
    return 0;
  }
  if (command === "export") {
    const f = z.object({
      in: z.string({ error: "export needs --in DIR (a dataset folder)" }),
      out: z.string({ error: "export needs --out FILE.jsonl" }),
      geometry: z.string().default("qwen2-vl"),
      tokenizer: z.string().optional(),
      "image-max-pixels": z.coerce.number().int().min(0).max(1e9).default(0),
      "image-min-pixels": z.coerce.number().int().min(0).max(1e9).default(0),
      absolute: z.boolean().default(false),
      name: z.string().regex(/^[\w.-]+$/).optional(),
      layout: z.enum(["labels", "sequence"]).default("labels"),
    }).safeParse(values);
    if (!f.success) return printIssues(f.error);
    const v = f.data;
    const geometry = GeometrySpecSchema.parse(
      v.geometry.trim().startsWith("{") ? JSON.parse(v.geometry) : { name: v.geometry },
    );
    const extraSpecialTokens = v.layout === "sequence"
      ? sequenceTokenizerFor(geometry.name).extraSpecialTokens
      : [];
    const r = await exportDataset(v.in, v.out, {
      geometry,
      layout: v.layout,
      tokenizer: await getTokenizer(v.tokenizer ?? presetTokenizer(geometry.name) ?? "qwen2", {
        allowPaths: true,
        extraSpecialTokens,
      }),
      imageMaxPixels: v["image-max-pixels"],
      imageMinPixels: v["image-min-pixels"],
      absolutePaths: v.absolute,
      name: v.name,
    });
    console.log(
      `wrote ${r.lines} lines → ${v.out}${
        r.skipped ? ` (${r.skipped} items without questions left out)` : ""
      }; entry in ${r.datasetInfo}`,
    );
    return 0;
  }
  if (command === "import") {
    const f = z.object({
      file: z.string({ error: "import needs a FILE.jsonl (or .json)" }),
      out: z.string({ error: "import needs --out DIR" }),
      words: z.enum(["ocr", "boxes", "none"]).default("ocr"),
      root: z.string().optional(),
    }).safeParse({ ...values, file: positionals[0] });
    if (!f.success) return printIssues(f.error);
    const v = f.data;
    const ocr = v.words === "ocr" ? await createOcrEngine("auto") : undefined;
    try {
      let n = 0;
      const m = await importChat(v.file, v.out, {
        words: v.words,
        ocr,
        root: v.root,
        onItem: () => n++,
      });
      console.log(`imported ${n} items (${m.shards.length} shard(s)) → ${v.out}`);
    } finally {
      await ocr?.close();
    }
    return 0;
  }
  if (command === "preview") {
    const suite = values.suite ?? "train";
    const n = Number(values.n ?? 12), size = Number(values.size ?? 448);
    const cell = 300, cols = 4, rows = Math.ceil(n / cols), caption = 70;
    ensureFonts();
    const sheet = createCanvas(cols * cell, rows * (cell + caption));
    const ctx = sheet.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, sheet.width, sheet.height);
    for (let k = 0; k < n; k++) {
      const g = await generateSample(suite, k, size);
      const x = (k % cols) * cell,
        y = Math.floor(k / cols) * (cell + caption),
        sc = (cell - 10) / size;
      ctx.drawImage(g.canvas, x + 5, y + 5, size * sc, size * sc);
      ctx.strokeStyle = "rgba(220,30,30,0.8)";
      ctx.lineWidth = 1;
      for (const w of g.words) {
        ctx.strokeRect(
          x + 5 + w.box[0] * sc,
          y + 5 + w.box[1] * sc,
          (w.box[2] - w.box[0]) * sc,
          (w.box[3] - w.box[1]) * sc,
        );
      }
      ctx.fillStyle = "#222";
      ctx.font = `11px "DejaVu Sans"`;
      ctx.fillText(`${g.layout} · ${g.font}`, x + 5, y + cell + 12, cell - 10);
      g.qa.slice(0, 3).forEach((q, i) =>
        ctx.fillText(`Q: ${q.question} → ${q.answer}`, x + 5, y + cell + 28 + i * 14, cell - 10)
      );
    }
    const out = values.out ?? `out/preview-${suite}.png`;
    await Deno.mkdir(out.split("/").slice(0, -1).join("/") || ".", { recursive: true });
    await Deno.writeFile(out, sheet.toBuffer("image/png"));
    console.log(`wrote ${out}`);
    return 0;
  }
  console.error(`Unknown command '${command}'\n${USAGE}`);
  return 2;
}

if (import.meta.main) await runMain(main);
