/**
 * Born-digital PDFs: page images (poppler's `pdftoppm`) and exact word boxes from the
 * text layer (`pdftotext -bbox`), both at the same dpi so boxes line up with pixels.
 */
import type { WordBox } from "../labels/mod.ts";

export interface PdfPage {
  page: number;
  png: Uint8Array;
  words: WordBox[];
}

/** Options of {@linkcode readPdf}. */
export interface ReadPdfOptions {
  /** Rendering resolution. @default 150 */
  dpi?: number;
  /** Pages to read, 1-based inclusive. @default all */
  firstPage?: number;
  lastPage?: number;
}

async function run(cmd: string, args: string[]): Promise<Uint8Array> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot read PDF: '${cmd}' is not installed (apt-get install poppler-utils)`);
    }
    throw e;
  }
  if (!out.success) {
    throw new PdfError(
      `Cannot read PDF: ${cmd} failed: ${
        new TextDecoder().decode(out.stderr).trim().slice(0, 300)
      }`,
    );
  }
  return out.stdout;
}

/** A PDF that poppler rejects (corrupt, encrypted, not a PDF). */
export class PdfError extends Error {
  override name = "PdfError";
}

const decodeEntities = (s: string) =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");

/** Parse `pdftotext -bbox` XHTML into pages of words in PDF points. */
export function parsePdftotextBbox(
  xhtml: string,
): Array<{ width: number; height: number; words: WordBox[] }> {
  const pages: Array<{ width: number; height: number; words: WordBox[] }> = [];
  const pageRe = /<page width="([\d.]+)" height="([\d.]+)">([\s\S]*?)<\/page>/g;
  const wordRe =
    /<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([\s\S]*?)<\/word>/g;
  for (const pm of xhtml.matchAll(pageRe)) {
    const words: WordBox[] = [];
    for (const wm of pm[3]!.matchAll(wordRe)) {
      const [x0, y0, x1, y1] = [wm[1], wm[2], wm[3], wm[4]].map(Number) as [
        number,
        number,
        number,
        number,
      ];
      const text = decodeEntities(wm[5]!).trim();
      if (text && x1 > x0 && y1 > y0) words.push({ text, box: [x0, y0, x1, y1], confidence: 100 });
    }
    pages.push({ width: Number(pm[1]), height: Number(pm[2]), words });
  }
  return pages;
}

/**
 * Read a PDF file into page images and word boxes in the images' pixels.
 *
 * @example
 * ```ts
 * for (const page of await readPdf("paper.pdf", { dpi: 150 })) console.log(page.words.length);
 * ```
 */
export async function readPdf(path: string, options: ReadPdfOptions = {}): Promise<PdfPage[]> {
  const { dpi = 150, firstPage, lastPage } = options;
  const range = [
    ...(firstPage ? ["-f", String(firstPage)] : []),
    ...(lastPage ? ["-l", String(lastPage)] : []),
  ];
  const xhtml = new TextDecoder().decode(await run("pdftotext", ["-bbox", ...range, path, "-"]));
  const layout = parsePdftotextBbox(xhtml);
  const dir = await Deno.makeTempDir({ prefix: "dvsft-pdf-" });
  try {
    await run("pdftoppm", ["-r", String(dpi), "-png", ...range, path, `${dir}/p`]);
    const files = [];
    for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".png")) files.push(e.name);
    files.sort((a, b) => Number(a.match(/(\d+)\.png$/)![1]) - Number(b.match(/(\d+)\.png$/)![1]));
    if (files.length !== layout.length) {
      throw new PdfError(
        `Cannot read PDF: ${files.length} page images but ${layout.length} text layers`,
      );
    }
    const scale = dpi / 72;
    return await Promise.all(files.map(async (f, i) => ({
      page: (firstPage ?? 1) + i,
      png: await Deno.readFile(`${dir}/${f}`),
      words: layout[i]!.words.map((w) => ({
        ...w,
        box: w.box.map((v) => Math.round(v * scale * 100) / 100) as WordBox["box"],
      })),
    })));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
