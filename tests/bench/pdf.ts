/**
 * `deno task bench:pdf [files.pdf...]`: the default PDF engine (MuPDF, wasm) against poppler
 * (`pdftoppm` + `pdftotext -bbox`, when installed) on the same pages, same run: pages/s of
 * page image + words, and the share of poppler's words MuPDF gives with the same text and a
 * box of IoU ≥ 0.5. Default file: the Debian manual in tests/fixtures/pdf.
 *
 *   --dpi N   rendering resolution (default 150)
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { pdfPageCount, popplerVersion, readPdf, wordBoxAgreement } from "../../lib/pdf/mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { dpi: { type: "string" } },
  allowPositionals: true,
});
const flags = z.strictObject({ dpi: z.coerce.number().int().min(36).max(600).default(150) })
  .parse(values);
const files = positionals.length
  ? positionals
  : [new URL("../fixtures/pdf/shared-mime-info-spec.pdf", import.meta.url).pathname];
const poppler = await popplerVersion();
const fmt = (x: number, d = 2) => x.toFixed(d);

console.log(
  `PDF engines at ${flags.dpi} dpi (page PNG + text-layer words), one core; reference: ${
    poppler ? `poppler ${poppler}` : "none (poppler-utils not installed)"
  }`,
);
let totalMatched = 0, totalRef = 0, muPages = 0, muSec = 0, popSec = 0;
for (const file of files) {
  const pages = await pdfPageCount(file);
  const opts = { dpi: flags.dpi, maxPages: pages };
  await readPdf(file, { ...opts, lastPage: 1 }); // load the wasm module outside the timing
  let t0 = performance.now();
  const mu = await readPdf(file, opts);
  const mus = (performance.now() - t0) / 1000;
  muPages += pages;
  muSec += mus;
  let line = `  ${file.split("/").pop()} (${pages} pages): mupdf ${fmt(pages / mus)} pages/s`;
  if (poppler) {
    t0 = performance.now();
    const pop = await readPdf(file, { ...opts, engine: "poppler" });
    const ps = (performance.now() - t0) / 1000;
    popSec += ps;
    let matched = 0, ref = 0, got = 0, iou = 0;
    pop.forEach((p, i) => {
      const a = wordBoxAgreement(p.words, mu[i]!.words);
      matched += a.matched;
      ref += a.reference;
      got += a.got;
      iou += a.meanIoU * a.matched;
    });
    totalMatched += matched;
    totalRef += ref;
    line += `, poppler ${fmt(pages / ps)} pages/s (mupdf ${fmt(ps / mus)}x); ` +
      `words matched ${matched}/${ref} = ${fmt(matched / ref, 4)} ` +
      `(mupdf gives ${got} words, mean IoU of matches ${fmt(iou / matched, 3)})`;
  }
  console.log(line);
}
if (poppler) {
  console.log(
    `total: mupdf ${fmt(muPages / muSec)} pages/s, poppler ${fmt(muPages / popSec)} pages/s; ` +
      `word-box agreement with poppler (same text, IoU >= 0.5) ${fmt(totalMatched / totalRef, 4)}`,
  );
}
