/**
 * PDFs → page images and exact word boxes from the text layer, both at one dpi so boxes lie on
 * the image's pixels. The default engine is MuPDF (npm `mupdf`, WebAssembly: no system
 * package); poppler (`pdftoppm` / `pdftotext -bbox`) is used only when asked for. Page count,
 * encryption and the page cap are checked with MuPDF before any page is drawn.
 */
import { z } from "zod";
import type { WordBox } from "../labels/word_box.ts";
import { isPdfBytes, PdfError } from "./errors.ts";
import { MUPDF_ENGINE, MupdfDoc } from "./mupdf.ts";
import { popplerPngs, popplerVersion, popplerWords } from "./poppler.ts";

export type PdfEngineName = "mupdf" | "poppler";

/** A PDF given as a file path or its bytes. */
export type PdfInput = string | Uint8Array;

export interface PdfPageImage {
  /** 1-based page number. */
  page: number;
  png: Uint8Array;
  width: number;
  height: number;
  dpi: number;
  /** The engine that drew it, e.g. `mupdf@1.28.1` or `poppler@22.12.0`. */
  engine: string;
}

export interface PdfPage extends PdfPageImage {
  /** Words of the text layer in the image's pixels (empty for a scan without text). */
  words: WordBox[];
}

export const ReadPdfOptionsSchema = z.strictObject({
  /** Rendering resolution. */
  dpi: z.number().int().min(36).max(600).default(150),
  /** Pages to read, 1-based inclusive. Default: all. */
  firstPage: z.number().int().min(1).optional(),
  lastPage: z.number().int().min(1).optional(),
  /** More pages than this in the asked range → PdfError `too_many_pages` (413). */
  maxPages: z.number().int().min(1).default(50),
  /** A page image over this many pixels → PdfError `page_too_large` (413), before drawing. */
  maxPixels: z.number().int().min(1).default(40_000_000),
  engine: z.enum(["mupdf", "poppler"]).default("mupdf"),
});
export type ReadPdfOptions = z.input<typeof ReadPdfOptionsSchema>;

/** Page count of a PDF (throws PdfError for corrupt or encrypted files). */
export async function pdfPageCount(input: PdfInput): Promise<number> {
  const doc = await MupdfDoc.open(await bytesOf(input));
  try {
    return doc.pageCount;
  } finally {
    doc.close();
  }
}

async function bytesOf(input: PdfInput): Promise<Uint8Array> {
  const bytes = typeof input === "string" ? await Deno.readFile(input) : input;
  if (!isPdfBytes(bytes)) {
    throw new PdfError(
      "not_pdf",
      `Cannot read PDF${
        typeof input === "string" ? ` '${input}'` : ""
      }: it does not start with %PDF`,
    );
  }
  return bytes;
}

function pngSize(png: Uint8Array): { width: number; height: number } {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

/** Let other requests run between pages: MuPDF's calls are synchronous. */
const yieldToLoop = () => new Promise((r) => setTimeout(r, 0));

async function read(input: PdfInput, options: ReadPdfOptions, text: boolean): Promise<PdfPage[]> {
  const o = ReadPdfOptionsSchema.parse(options);
  const bytes = await bytesOf(input);
  const doc = await MupdfDoc.open(bytes);
  try {
    const n = doc.pageCount;
    if (n === 0) throw new PdfError("corrupt_pdf", "Cannot read PDF: it has no pages");
    const first = o.firstPage ?? 1;
    const last = Math.min(o.lastPage ?? n, n);
    if (first > n) {
      throw new PdfError(
        "page_out_of_range",
        `Cannot read PDF: page ${first} was asked but it has ${n} page${n === 1 ? "" : "s"}`,
      );
    }
    if (first > last) {
      throw new PdfError(
        "page_out_of_range",
        `Cannot read PDF: first page ${first} is after last page ${last}`,
      );
    }
    const count = last - first + 1;
    if (count > o.maxPages) {
      throw new PdfError(
        "too_many_pages",
        `Cannot read PDF: pages ${first}-${last} are ${count} pages, over the cap of ${o.maxPages} ` +
          `(page ${first + o.maxPages} is the first past it); ask for a page range`,
      );
    }
    const s = o.dpi / 72;
    for (let p = first; p <= last; p++) {
      const { width, height } = doc.pageSize(p);
      const px = Math.ceil(width * s) * Math.ceil(height * s);
      if (px > o.maxPixels) {
        throw new PdfError(
          "page_too_large",
          `Cannot read PDF: page ${p} (${Math.round(width)}x${
            Math.round(height)
          } pt) at ${o.dpi} ` +
            `dpi is ${px} pixels, over the limit of ${o.maxPixels}`,
        );
      }
    }
    if (o.engine === "poppler") {
      return await readWithPoppler(input, bytes, first, last, o.dpi, text);
    }
    const pages: PdfPage[] = [];
    for (let p = first; p <= last; p++) {
      const img = doc.renderPng(p, o.dpi);
      pages.push({
        page: p,
        ...img,
        dpi: o.dpi,
        engine: MUPDF_ENGINE,
        words: text ? doc.words(p, o.dpi) : [],
      });
      await yieldToLoop();
    }
    return pages;
  } finally {
    doc.close();
  }
}

async function readWithPoppler(
  input: PdfInput,
  bytes: Uint8Array,
  first: number,
  last: number,
  dpi: number,
  text: boolean,
): Promise<PdfPage[]> {
  const version = await popplerVersion();
  if (!version) {
    throw new PdfError(
      "engine_unavailable",
      "Cannot read PDF: engine 'poppler' is not installed (apt-get install poppler-utils)",
    );
  }
  const temp = typeof input === "string" ? null : await Deno.makeTempFile({ suffix: ".pdf" });
  try {
    if (temp) await Deno.writeFile(temp, bytes);
    const path = temp ?? (input as string);
    const pngs = await popplerPngs(path, first, last, dpi);
    const words = text ? await popplerWords(path, first, last, dpi) : null;
    return pngs.map((png, i) => ({
      page: first + i,
      png,
      ...pngSize(png),
      dpi,
      engine: `poppler@${version}`,
      words: words?.[i] ?? [],
    }));
  } finally {
    if (temp) await Deno.remove(temp).catch(() => {});
  }
}

/**
 * Read a born-digital PDF into page images and word boxes in the images' pixels.
 *
 * @example
 * ```ts
 * for (const page of await readPdf("paper.pdf", { dpi: 150 })) console.log(page.words.length);
 * ```
 */
export function readPdf(input: PdfInput, options: ReadPdfOptions = {}): Promise<PdfPage[]> {
  return read(input, options, true);
}

/**
 * Draw a PDF's pages as PNGs at a dpi, without reading text: the input of OCR for scanned
 * PDFs (`--source ocr`). Same page cap and errors as {@linkcode readPdf}.
 *
 * @example
 * ```ts
 * for (const p of await rasterizePdf(bytes, { dpi: 200 })) await ocr.recognize(p.png, { dpi: 200 });
 * ```
 */
export async function rasterizePdf(
  input: PdfInput,
  options: ReadPdfOptions = {},
): Promise<PdfPageImage[]> {
  return (await read(input, options, false)).map(({ words: _, ...img }) => img);
}
