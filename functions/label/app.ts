/**
 * The labeling function: `POST /v1/label`, `GET /v1/geometries`, `GET /v1/tokenizers`.
 * A thin edge: requests are validated here, the work happens in lib/labels.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { decodeBase64, encodeBase64 } from "../../lib/util/base64.ts";
import { GEOMETRY_NAMES, GeometrySpecSchema } from "../../lib/geometry/mod.ts";
import {
  AssignOptionsSchema,
  drawOverlay,
  type LabeledImage,
  labelImage,
  LabelOptionsSchema,
  LabelSetSchema,
  WordBoxSchema,
} from "../../lib/labels/mod.ts";
import { BUILTIN_TOKENIZERS, getTokenizer } from "../../lib/tokenizer/mod.ts";
import { createOcrEngine, type OcrEngine, type OcrEngineName } from "../../lib/ocr/mod.ts";
import {
  isPdfBytes,
  PdfError,
  type PdfPage,
  type PdfPageImage,
  rasterizePdf,
  readPdf,
} from "../../lib/pdf/mod.ts";
import { ApiError, ErrorBodySchema } from "../../lib/http/mod.ts";
import { type AppEnv, errorResponses, requireContentType } from "../shared/http.ts";

/** Options of {@linkcode createLabelApp}. */
export interface LabelAppOptions {
  /** OCR engine for `source: "ocr"`. @default "auto" */
  ocrEngine?: OcrEngineName;
  /** Parallel OCR pages. @default cores */
  ocrConcurrency?: number;
  /** OCR pages allowed to wait before 503. @default 32 */
  ocrMaxQueue?: number;
  /** @default 40_000_000 */
  maxPixels?: number;
  /** A PDF with more pages → 413 (ask for fewer with a smaller file). @default 50 */
  maxPdfPages?: number;
}

export const LabelRequestOptionsSchema = z.strictObject({
  source: z.enum(["ocr", "boxes", "pdf"]).default("ocr")
    .describe(
      "ocr: read words from the image (a PDF upload: its pages drawn at `dpi`); boxes: use `words`; " +
        "pdf: the upload is a born-digital PDF",
    ),
  tokenizer: z.string().default("qwen2").describe(
    `one of: ${Object.keys(BUILTIN_TOKENIZERS).join(", ")}`,
  ),
  geometry: GeometrySpecSchema.default({ name: "qwen2-vl", minPixels: 3136, maxPixels: 12845056 }),
  policy: AssignOptionsSchema.default({ split: "span", minCellOverlap: 0.1, minWordOverlap: 0.5 }),
  minConfidence: z.number().min(0).max(100).default(0),
  words: z.array(WordBoxSchema).max(50_000).optional().describe("word boxes for source 'boxes'"),
  dpi: z.number().int().min(36).max(600).default(150).describe(
    "PDF rendering resolution; for an image, its resolution if known (OCR upscales text read " +
      "below 300 dpi)",
  ),
  overlay: z.boolean().default(false).describe("include a base64 overlay PNG per item"),
});
export type LabelRequestOptions = z.infer<typeof LabelRequestOptionsSchema>;

const JsonBodySchema = LabelRequestOptionsSchema.extend({
  image: z.string().min(1).describe("base64 of the image (or of the PDF for source 'pdf')"),
}).openapi("LabelJsonRequest");

const FormBodySchema = z.object({
  image: z.instanceof(File).openapi({ type: "string", format: "binary" }),
  options: z.string().optional().describe("JSON text of the options (everything but `image`)"),
}).openapi("LabelFormRequest");

export const LabelResponseSchema = z.object({
  items: z.array(z.object({
    page: z.number().int().optional(),
    labelSet: LabelSetSchema,
    overlay: z.string().optional().describe("base64 PNG"),
  })),
  timing: z.object({ ocrMs: z.number(), labelMs: z.number() }),
}).openapi("LabelResponse");

const labelRoute = createRoute({
  method: "post",
  path: "/v1/label",
  summary: "Label an image (or PDF) with patch-word labels for a model geometry and tokenizer",
  middleware: [requireContentType(["application/json", "multipart/form-data"])] as const,
  request: {
    body: {
      // not `required`: with it, @hono/zod-openapi runs the JSON *and* the form validator on
      // every request; requireContentType above already refuses bodies of other types
      required: false,
      content: {
        "application/json": { schema: JsonBodySchema },
        "multipart/form-data": { schema: FormBodySchema },
      },
    },
  },
  responses: {
    200: {
      description: "Label sets",
      content: { "application/json": { schema: LabelResponseSchema } },
    },
    ...errorResponses,
  },
});

const geometriesRoute = createRoute({
  method: "get",
  path: "/v1/geometries",
  summary: "Model geometry presets and their options",
  responses: {
    200: {
      description: "Presets",
      content: {
        "application/json": {
          schema: z.object({
            geometries: z.array(z.object({ name: z.string(), defaults: z.unknown() })),
          }),
        },
      },
    },
  },
});

const tokenizersRoute = createRoute({
  method: "get",
  path: "/v1/tokenizers",
  summary: "Tokenizers the API can label with",
  responses: {
    200: {
      description: "Tokenizers",
      content: { "application/json": { schema: z.object({ tokenizers: z.array(z.string()) }) } },
    },
  },
});

/** PDF errors carry their own 4xx status (encrypted 422, over the page cap 413, ...). */
async function pdfOrApiError<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof PdfError) throw new ApiError(e.status, e.code, e.message);
    throw e;
  }
}

function parseOptionsText(text: string | undefined): unknown {
  if (text === undefined || text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_request", "Field 'options' is not valid JSON");
  }
}

/** Build the labeling sub-app. Call `close()` on the result's engine holder when done. */
export function createLabelApp(
  options: LabelAppOptions = {},
): {
  app: OpenAPIHono<AppEnv>;
  close: () => Promise<void>;
  /** OCR pool use, for /metrics (zeros until the first OCR request starts the pool). */
  ocrStats: () => { active: number; queued: number; workers: number };
} {
  const {
    ocrEngine = "auto",
    ocrConcurrency,
    ocrMaxQueue = 32,
    maxPixels = 40_000_000,
    maxPdfPages = 50,
  } = options;
  let ocr: Promise<OcrEngine> | undefined;
  let engine: OcrEngine | null = null;
  const getOcr = () => (ocr ??= createOcrEngine(ocrEngine, {
    concurrency: ocrConcurrency,
    maxQueue: ocrMaxQueue,
  }).then((e) => (engine = e)));
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(labelRoute, async (c) => {
    let bytes: Uint8Array;
    let raw: unknown;
    if ((c.req.header("content-type") ?? "").toLowerCase().startsWith("multipart/form-data")) {
      // both targets are typed as the union of the two bodies; the content type picks one
      const form = c.req.valid("form") as unknown as z.infer<typeof FormBodySchema>;
      bytes = new Uint8Array(await form.image.arrayBuffer());
      raw = parseOptionsText(form.options);
    } else {
      const { image, ...rest } = c.req.valid("json") as z.infer<typeof JsonBodySchema>;
      bytes = decodeBase64(image);
      raw = rest;
    }
    const dpiGiven = typeof raw === "object" && raw !== null && "dpi" in raw;
    const parsed = LabelRequestOptionsSchema.safeParse(raw);
    if (!parsed.success) throw parsed.error;
    const o = parsed.data;
    if (o.source === "boxes" && !o.words) {
      throw new ApiError(400, "invalid_request", "Source 'boxes' needs 'words'");
    }
    if (o.source !== "boxes" && o.words) {
      throw new ApiError(
        400,
        "invalid_request",
        `Field 'words' is only for source 'boxes' (source is '${o.source}')`,
      );
    }
    const tokenizer = await getTokenizer(o.tokenizer);
    const labelOptions = LabelOptionsSchema.parse({
      geometry: o.geometry,
      policy: o.policy,
      minConfidence: o.minConfidence,
    });
    const limits = { maxPixels };
    const results: Array<LabeledImage & { page?: number }> = [];
    if (o.source === "pdf" && !isPdfBytes(bytes)) {
      throw new ApiError(
        415,
        "unsupported_pdf",
        "Cannot read PDF: the upload does not start with %PDF",
      );
    }
    if (isPdfBytes(bytes) && (o.source === "pdf" || o.source === "ocr")) {
      // pdf: the text layer's words; ocr: the pages drawn at `dpi` and read (scanned PDFs)
      const pages: Array<PdfPageImage & Partial<Pick<PdfPage, "words">>> = await pdfOrApiError(() =>
        o.source === "pdf"
          ? readPdf(bytes, { dpi: o.dpi, maxPages: maxPdfPages, maxPixels })
          : rasterizePdf(bytes, { dpi: o.dpi, maxPages: maxPdfPages, maxPixels })
      );
      const ocrEngine = o.source === "ocr" ? await getOcr() : undefined;
      for (const p of pages) {
        const r = await labelImage({
          bytes: p.png,
          source: o.source,
          words: p.words,
          tokenizer,
          options: labelOptions,
          ocr: ocrEngine,
          dpi: o.dpi,
          limits,
        });
        results.push({ ...r, page: p.page });
      }
    } else {
      results.push(
        await labelImage({
          bytes,
          source: o.source,
          words: o.words,
          tokenizer,
          options: labelOptions,
          ocr: o.source === "ocr" ? await getOcr() : undefined,
          // an image's dpi only when the client gave it: OCR upscales images read below 300 dpi,
          // and the 150 default (meant for drawing PDFs) would double every photo
          dpi: dpiGiven ? o.dpi : undefined,
          limits,
        }),
      );
    }
    return c.json({
      items: results.map((r) => ({
        ...(r.page !== undefined ? { page: r.page } : {}),
        labelSet: r.labelSet,
        ...(o.overlay ? { overlay: encodeBase64(drawOverlay(r.image.image, r.labelSet)) } : {}),
      })),
      timing: {
        ocrMs: Math.round(results.reduce((s, r) => s + r.ocrMs, 0)),
        labelMs: Math.round(results.reduce((s, r) => s + r.labelMs, 0)),
      },
    }, 200);
  });

  app.openapi(geometriesRoute, (c) => {
    const geometries: Array<{ name: string; defaults: unknown }> = GEOMETRY_NAMES.filter((n) =>
      n !== "custom"
    )
      .map((name) => ({ name, defaults: GeometrySpecSchema.parse({ name }) }));
    geometries.push({
      name: "custom",
      defaults: { patchSize: "required", merge: 1, resize: "smart | fixed | pad-square" },
    });
    return c.json({ geometries }, 200);
  });

  app.openapi(tokenizersRoute, (c) => c.json({ tokenizers: Object.keys(BUILTIN_TOKENIZERS) }, 200));

  return {
    app,
    close: async () => {
      if (ocr) await (await ocr).close();
    },
    ocrStats: () => ({
      active: engine?.limiter.active ?? 0,
      queued: engine?.limiter.queued ?? 0,
      workers: engine?.limiter.concurrency ?? 0,
    }),
  };
}

export { ErrorBodySchema };
