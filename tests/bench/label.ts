/**
 * `deno task bench:label`: label quality and throughput on rendered pages whose exact boxes
 * are the ground truth. Prints figures and ratios measured in the same run.
 *
 *   --pages N   OCR pages (default 8)      --samples N   rendered samples (default 200)
 *   --real-pages 2,3   pages of the Debian manual in tests/fixtures/pdf for the real-page
 *                      section (its text layer is the truth; OCR at 100 and 150 dpi)
 *   --real-file F.pdf  another born-digital PDF for that section (e.g. apt libtasn1-doc's
 *                      /usr/share/doc/libtasn1-doc/libtasn1.pdf, pages 5,12: API identifiers)
 *   --only real        run only the real-page section
 */
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { z } from "zod";
import {
  labelAgreement,
  labelImage,
  LabelOptionsSchema,
  type LabelSet,
} from "../../lib/labels/mod.ts";
import { type RenderedPage, renderPage } from "../../lib/render/mod.ts";
import { getTokenizer } from "../../lib/tokenizer/mod.ts";
import {
  createOcrEngine,
  nativeLangData,
  nativeTesseractVersion,
  type OcrEngineOptions,
} from "../../lib/ocr/mod.ts";
import { readPdf } from "../../lib/pdf/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    pages: { type: "string" },
    samples: { type: "string" },
    "real-pages": { type: "string" },
    "real-file": { type: "string" },
    only: { type: "string" },
  },
});
const flags = z.strictObject({
  pages: z.coerce.number().int().min(1).default(8),
  samples: z.coerce.number().int().min(1).default(200),
  "real-pages": z.string().regex(/^\d+(,\d+)*$/).default("2,3"),
  "real-file": z.string().optional(),
  only: z.enum(["real"]).optional(),
}).parse(values);
const cores = availableParallelism();
const tokenizer = await getTokenizer("qwen2");
const options = LabelOptionsSchema.parse({});
const fmt = (x: number, d = 2) => x.toFixed(d);

// 3. a real born-digital page: the PDF text layer's labels are the truth for OCR of its image
async function realPages() {
  const file = flags["real-file"] ??
    new URL("../fixtures/pdf/shared-mime-info-spec.pdf", import.meta.url).pathname;
  const pageNumbers = flags["real-pages"].split(",").map(Number);
  const former: OcrEngineOptions = {
    upscaleToDpi: 1,
    smallTextHeight: 0,
    boxes: "ink",
    minConfidence: 0,
    minLineConfidence: 0,
    minSymbolConfidence: 0,
  };
  const configs: Array<[string, "native" | "tesseract.js", OcrEngineOptions, boolean?]> = [
    ["tesseract.js, defaults", "tesseract.js", {}],
    ["tesseract.js, defaults, no dpi hint (text-size rule)", "tesseract.js", {}, true],
    ["tesseract.js, former: no upscale, ink boxes, no floor", "tesseract.js", former],
  ];
  if (await nativeTesseractVersion()) {
    configs.push(["tesseract CLI, defaults", "native", {}]);
    configs.push(["tesseract CLI, former settings", "native", former]);
  }
  console.log(
    `\nReal born-digital pages (${file.split("/").slice(-3).join("/")} pages ${
      pageNumbers.join(",")
    }): OCR labels vs the PDF text layer's, per cell, geometry qwen2-vl:`,
  );
  for (const dpi of [100, 150]) {
    const pdfPages = await Promise.all(
      pageNumbers.map(async (n) => (await readPdf(file, { dpi, firstPage: n, lastPage: n }))[0]!),
    );
    const truth = await Promise.all(
      pdfPages.map(async (p) =>
        (await labelImage({ bytes: p.png, source: "pdf", words: p.words, tokenizer, options }))
          .labelSet
      ),
    );
    for (const [what, engine, cfg, noHint] of configs) {
      const ocr = await createOcrEngine(engine, { concurrency: cores, ...cfg });
      try {
        const t0 = performance.now();
        const read = await Promise.all(
          pdfPages.map((p) =>
            labelImage({
              bytes: p.png,
              source: "ocr",
              tokenizer,
              options,
              ocr,
              dpi: noHint ? undefined : p.dpi,
            })
          ),
        );
        const s = (performance.now() - t0) / 1000;
        let agree = 0, total = 0;
        read.forEach((r, k) => {
          const a = labelAgreement(truth[k]!, r.labelSet);
          agree += a.agree;
          total += a.total;
        });
        console.log(
          `  ${dpi} dpi, ${what.padEnd(52)} agreement ${fmt(agree / total, 4)} (${total} cells), ` +
            `${fmt(pdfPages.length / s, 3)} pages/s`,
        );
      } finally {
        await ocr.close();
      }
    }
  }
}

if (flags.only === "real") {
  await realPages();
  Deno.exit(0);
}

// 1. rendered + exactly labeled samples (448x448, the size of the synthetic-data suites)
{
  const t0 = performance.now();
  let tokens = 0;
  for (let k = 0; k < flags.samples; k++) {
    const p = renderPage({ seed: k, width: 448, height: 448, fontSize: 18, margin: 16 });
    tokens +=
      (await labelImage({ bytes: p.png, source: "render", words: p.words, tokenizer, options }))
        .labelSet.stats.tokens;
  }
  const s = (performance.now() - t0) / 1000;
  console.log(
    `render+label (exact boxes): ${flags.samples} samples of 448x448 in ${fmt(s)} s = ${
      fmt(flags.samples / s, 1)
    } samples/s on one core (${tokens / flags.samples} tokens each)`,
  );
}

// 2. OCR: clean pages at 150 dpi (half an A4 page: 1240x877 px, 11 pt text = 23 px)
const pages: RenderedPage[] = Array.from(
  { length: flags.pages },
  (_, k) =>
    renderPage({
      seed: 1000 + k,
      width: 1240,
      height: 877,
      fontSize: 23,
      margin: 90,
      lineHeight: 1.5,
    }),
);
const exact: LabelSet[] = [];
for (const p of pages) {
  exact.push(
    (await labelImage({ bytes: p.png, source: "render", words: p.words, tokenizer, options }))
      .labelSet,
  );
}

async function ocrRun(engineName: "native" | "tesseract.js") {
  const ocr = await createOcrEngine(engineName, { concurrency: cores });
  try {
    await ocr.recognize(pages[0]!.png); // warm up (workers load the model)
    const t0 = performance.now();
    const results = await Promise.all(
      pages.map((p) => labelImage({ bytes: p.png, source: "ocr", tokenizer, options, ocr })),
    );
    const s = (performance.now() - t0) / 1000;
    let agree = 0, total = 0, ocrMs = 0, labelMs = 0;
    results.forEach((r, k) => {
      const a = labelAgreement(exact[k]!, r.labelSet);
      agree += a.agree;
      total += a.total;
      ocrMs += r.ocrMs;
      labelMs += r.labelMs;
    });
    return {
      name: ocr.name,
      pagesPerSecond: pages.length / s,
      agreement: agree / total,
      afterOcrShare: labelMs / (ocrMs + labelMs),
    };
  } finally {
    await ocr.close();
  }
}

async function cliAlone(): Promise<number> {
  const dir = await Deno.makeTempDir();
  // the model the native engine reads with (the npm package's), so the ratio is like for like
  const models = await nativeLangData("eng");
  try {
    const files = await Promise.all(pages.map(async (p, k) => {
      const f = `${dir}/p${k}.png`;
      await Deno.writeFile(f, p.png);
      return f;
    }));
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: cores }, async () => {
      while (next < files.length) {
        const f = files[next++]!;
        const out = await new Deno.Command("tesseract", {
          args: [
            f,
            "stdout",
            "--tessdata-dir",
            models.dir,
            "-l",
            "eng",
            "--psm",
            "3",
            "-c",
            "tessedit_create_tsv=1",
          ],
          env: { OMP_THREAD_LIMIT: "1" },
          stdout: "piped",
          stderr: "null",
        }).output();
        if (!out.success) throw new Error(`tesseract failed on ${f}`);
      }
    }));
    return pages.length / ((performance.now() - t0) / 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
    if (models.temporary) await Deno.remove(models.dir, { recursive: true });
  }
}

console.log(
  `\nOCR labeling, ${pages.length} clean pages of 1240x877 at 150 dpi, ${cores} in parallel, geometry qwen2-vl:`,
);
const rows: string[] = [];
if (await nativeTesseractVersion()) {
  const cli = await cliAlone();
  const nat = await ocrRun("native");
  rows.push(`  tesseract CLI alone           ${fmt(cli, 3)} pages/s`);
  rows.push(
    `  dvsft native engine           ${fmt(nat.pagesPerSecond, 3)} pages/s  = ${
      fmt(nat.pagesPerSecond / cli)
    }x the CLI alone; ` +
      `token-label agreement with exact ${fmt(nat.agreement, 4)}; time after OCR ${
        fmt(nat.afterOcrShare * 100)
      }%`,
  );
  const js = await ocrRun("tesseract.js");
  rows.push(
    `  dvsft tesseract.js pool       ${fmt(js.pagesPerSecond, 3)} pages/s  = ${
      fmt(js.pagesPerSecond / cli)
    }x the CLI alone; ` +
      `token-label agreement with exact ${fmt(js.agreement, 4)}; time after OCR ${
        fmt(js.afterOcrShare * 100)
      }%`,
  );
} else {
  const js = await ocrRun("tesseract.js");
  rows.push(`  (native tesseract not installed: no CLI reference)`);
  rows.push(
    `  dvsft tesseract.js pool       ${fmt(js.pagesPerSecond, 3)} pages/s; agreement ${
      fmt(js.agreement, 4)
    }; after OCR ${fmt(js.afterOcrShare * 100)}%`,
  );
}
console.log(rows.join("\n"));
await realPages();
