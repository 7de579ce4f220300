/**
 * `deno task data generate --suite train --n 20000 --shard-size 1000 --out out/data/train [--shard i/N]`
 * `deno task data export --in out/data/train --out train.sharegpt.jsonl`
 * `deno task data preview --suite charts [--n 12] [--out out/preview-charts.png]`
 */
import { parseArgs } from "node:util";
import { runMain, ShardSchema } from "../shared/cli.ts";
import { z } from "zod";
import { createCanvas } from "@napi-rs/canvas";
import { exportShareGpt, generateDataset, generateSample, SUITES } from "../../lib/data/mod.ts";
import { GeometrySpecSchema } from "../../lib/geometry/mod.ts";
import { createOcrEngine } from "../../lib/ocr/mod.ts";
import { ensureFonts } from "../../lib/render/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";
import { zodIssues } from "../../lib/http/mod.ts";

const USAGE = `Usage:
  deno task data generate --suite NAME --n N --out DIR [--shard-size 1000] [--size 448]
                          [--tokenizer dvsft-small|qwen2|PATH] [--geometry NAME|JSON]
                          [--label-source render|ocr] [--shard i/N]
  deno task data export --in DIR --out FILE.jsonl          (sharegpt messages + images + vision_labels)
  deno task data preview --suite NAME [--n 12] [--size 448] [--out FILE.png]

Suites: ${Object.entries(SUITES).map(([k, s]) => `${k} (${s.domain})`).join(", ")}`;

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      suite: { type: "string" },
      n: { type: "string" },
      out: { type: "string" },
      in: { type: "string" },
      "shard-size": { type: "string" },
      size: { type: "string" },
      tokenizer: { type: "string" },
      geometry: { type: "string" },
      "label-source": { type: "string" },
      shard: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !command || command === "help") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (command === "generate") {
    const f = z.object({
      suite: z.string(),
      n: z.coerce.number().int().min(1),
      out: z.string(),
      "shard-size": z.coerce.number().int().min(1).default(1000),
      size: z.coerce.number().int().default(448),
      tokenizer: z.string().default("dvsft-small"),
      geometry: z.string().default("qwen2-vl"),
      "label-source": z.enum(["render", "ocr"]).default("render"),
      shard: ShardSchema.optional(),
    }).safeParse(values);
    if (!f.success) {
      for (const i of zodIssues(f.error)) console.error(`error: --${i.path}: ${i.message}`);
      return 2;
    }
    const v = f.data;
    const geometry = GeometrySpecSchema.parse(
      v.geometry.trim().startsWith("{") ? JSON.parse(v.geometry) : { name: v.geometry },
    );
    const ocr = v["label-source"] === "ocr" ? await createOcrEngine("auto") : undefined;
    let bar: ReturnType<typeof startProgress> | null = null;
    const t0 = performance.now();
    let made = 0;
    try {
      const manifest = await generateDataset(
        {
          suite: v.suite,
          n: v.n,
          shardSize: v["shard-size"],
          size: v.size,
          tokenizer: v.tokenizer,
          geometry,
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
    if (!values.in || !values.out) throw new Error("export needs --in DIR and --out FILE");
    const n = await exportShareGpt(values.in, values.out);
    console.log(`wrote ${n} lines → ${values.out}`);
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
