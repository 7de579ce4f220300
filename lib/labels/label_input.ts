/**
 * The one labeling entry point: an input (an image or a PDF, with words for `boxes`) and one
 * options object → label sets, one per image or PDF page. The HTTP function, the CLI and the
 * dataset producers all call {@linkcode labelInput} with {@linkcode LabelRequestSchema}'s
 * options, so sources, checks and defaults are written once, here.
 */
import { z } from "zod";
import type { DecodeImageOptions } from "../image/mod.ts";
import { checkGeometrySpec, presetTokenizer } from "../geometry/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import { isPdfBytes, type PdfPage, type PdfPageImage, rasterizePdf, readPdf } from "../pdf/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import { LabelOptionsSchema, WordBoxSchema } from "./label_set.ts";
import { type LabeledImage, labelImage } from "./pipeline.ts";

/**
 * Defaults of every labeling edge (geometry, policy and confidence: LabelOptionsSchema's; the
 * tokenizer: the geometry preset's own, see {@linkcode requestTokenizerName}).
 */
export const LABEL_DEFAULTS = { source: "ocr", dpi: 150 } as const;

/** The tokenizer a request labels with: the one it names, else its geometry preset's own. */
export function requestTokenizerName(r: Pick<LabelRequest, "tokenizer" | "geometry">): string {
  const name = r.tokenizer ?? presetTokenizer(r.geometry.name);
  if (name === null) {
    throw new LabelRequestError(
      `Geometry '${r.geometry.name}' has no built-in tokenizer: give 'tokenizer'`,
    );
  }
  return name;
}

export const LabelRequestSchema = LabelOptionsSchema.extend({
  source: z.enum(["ocr", "boxes", "pdf"]).default(LABEL_DEFAULTS.source)
    .describe(
      "ocr: read words from the image; boxes: use `words`; pdf: the upload is a born-digital PDF",
    ),
  tokenizer: z.string().max(200).optional().describe(
    "a built-in tokenizer name (GET /v1/tokenizers); default: the geometry preset's own",
  ),
  words: z.array(WordBoxSchema).max(50_000).optional().describe("word boxes for source 'boxes'"),
  dpi: z.number().int().min(36).max(600).optional().describe(
    "PDF rendering resolution (default 150); for an image, its resolution if known (OCR upscales text read below 300 dpi)",
  ),
});
export type LabelRequest = z.infer<typeof LabelRequestSchema>;

/** What {@linkcode labelInput} needs besides the request. */
export interface LabelContext {
  tokenizer: WordTokenizer;
  /** The OCR engine, asked for only when the source is `ocr`. */
  ocr?: () => Promise<OcrEngine>;
  limits?: DecodeImageOptions;
  /** Pages of a PDF read at most. @default 50 */
  maxPdfPages?: number;
}

/** A label set with the PDF page it came from (1-based; absent for images). */
export type LabeledInput = LabeledImage & { page?: number };

/** Raised when the bytes are not what the source needs (maps to HTTP 415). */
export class UnsupportedInputError extends Error {
  override name = "UnsupportedInputError";
}

/** Raised when the options contradict each other (maps to HTTP 400). */
export class LabelRequestError extends Error {
  override name = "LabelRequestError";
}

/** Label one input as the request says. */
export async function labelInput(
  bytes: Uint8Array,
  request: LabelRequest,
  ctx: LabelContext,
): Promise<LabeledInput[]> {
  const o = request;
  if (o.source === "boxes" && !o.words) throw new LabelRequestError("Source 'boxes' needs 'words'");
  if (o.source !== "boxes" && o.words) {
    throw new LabelRequestError(
      `Field 'words' is only for source 'boxes' (source is '${o.source}')`,
    );
  }
  // bounds of the geometry's own numbers before any decoding or OCR (RangeError → 422)
  checkGeometrySpec(o.geometry);
  const options = LabelOptionsSchema.parse({
    geometry: o.geometry,
    policy: o.policy,
    minConfidence: o.minConfidence,
  });
  const { tokenizer, limits } = ctx;
  if (o.source === "pdf" && !isPdfBytes(bytes)) {
    throw new UnsupportedInputError("Cannot read PDF: the input does not start with %PDF");
  }
  if (isPdfBytes(bytes) && (o.source === "pdf" || o.source === "ocr")) {
    // pdf: the text layer's words; ocr: the pages drawn at `dpi` and read (scanned PDFs)
    const pdfOptions = {
      dpi: o.dpi ?? LABEL_DEFAULTS.dpi,
      maxPages: ctx.maxPdfPages ?? 50,
      ...(limits?.maxPixels ? { maxPixels: limits.maxPixels } : {}),
    };
    const pages: Array<PdfPageImage & Partial<Pick<PdfPage, "words">>> = o.source === "pdf"
      ? await readPdf(bytes, pdfOptions)
      : await rasterizePdf(bytes, pdfOptions);
    const ocr = o.source === "ocr" ? await ctx.ocr?.() : undefined;
    const out: LabeledInput[] = [];
    for (const p of pages) {
      const r = await labelImage({
        bytes: p.png,
        source: o.source,
        words: p.words,
        tokenizer,
        options,
        ocr,
        dpi: pdfOptions.dpi,
        limits,
      });
      out.push({ ...r, page: p.page });
    }
    return out;
  }
  return [
    await labelImage({
      bytes,
      source: o.source,
      words: o.words,
      tokenizer,
      options,
      ocr: o.source === "ocr" ? await ctx.ocr?.() : undefined,
      dpi: o.dpi,
      limits,
    }),
  ];
}
