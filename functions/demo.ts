/**
 * The quick-start job: draw a few documents, label them for Qwen2-VL from their exact boxes
 * and from OCR, write label sets and overlay PNGs, print a summary. No server, no GPU.
 */
import { join } from "node:path";
import { drawOverlay, labelAgreement, labelImage, LabelOptionsSchema } from "../lib/labels/mod.ts";
import { type RenderOptions, renderPage } from "../lib/render/mod.ts";
import { getTokenizer } from "../lib/tokenizer/mod.ts";
import { createOcrEngine } from "../lib/ocr/mod.ts";

const PAGES: RenderOptions[] = [
  { seed: 1, font: "DejaVu Sans", fontSize: 24, width: 896, height: 560 },
  { seed: 2, font: "DejaVu Serif", fontSize: 28, width: 700, height: 700 },
  { seed: 3, font: "DejaVu Sans Mono", fontSize: 20, width: 1000, height: 700 },
  { seed: 4, font: "DejaVu Sans Condensed", fontSize: 32, width: 1200, height: 400 },
];

export async function demo(outDir = "out/demo"): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  const tokenizer = await getTokenizer("qwen2");
  const options = LabelOptionsSchema.parse({ geometry: { name: "qwen2-vl" } });
  const ocr = await createOcrEngine("auto", { concurrency: 2 });
  console.log(
    `dvsft demo: ${PAGES.length} rendered pages → Qwen2-VL label sets (tokenizer qwen2, OCR ${ocr.name})\n`,
  );
  const rows: string[][] = [[
    "page",
    "font",
    "image",
    "tokens",
    "words",
    "exact labeled",
    "ocr labeled",
    "ocr conf",
    "agreement",
  ]];
  try {
    await Promise.all(PAGES.map(async (spec, k) => {
      const page = renderPage(spec);
      const name = `page-${k + 1}`;
      await Deno.writeFile(join(outDir, `${name}.png`), page.png);
      const exact = await labelImage({
        bytes: page.png,
        source: "render",
        words: page.words,
        tokenizer,
        options,
      });
      const read = await labelImage({ bytes: page.png, source: "ocr", tokenizer, options, ocr });
      for (const [kind, r] of [["exact", exact], ["ocr", read]] as const) {
        await Deno.writeTextFile(
          join(outDir, `${name}.${kind}.labels.json`),
          JSON.stringify(r.labelSet),
        );
        await Deno.writeFile(
          join(outDir, `${name}.${kind}.overlay.png`),
          drawOverlay(r.image.image, r.labelSet),
        );
      }
      const e = exact.labelSet.stats;
      const o = read.labelSet.stats;
      rows[k + 1] = [
        name,
        spec.font ?? "",
        `${page.width}x${page.height}`,
        String(e.tokens),
        String(e.words),
        `${(e.labeledFraction * 100).toFixed(1)}%`,
        `${(o.labeledFraction * 100).toFixed(1)}%`,
        String(o.meanConfidence ?? "-"),
        labelAgreement(exact.labelSet, read.labelSet).rate.toFixed(3),
      ];
    }));
  } finally {
    await ocr.close();
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));
  console.log(`\nwrote label sets (*.labels.json) and overlays (*.overlay.png) to ${outDir}/`);
}
