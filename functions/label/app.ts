/**
 * The labeling function: `POST /v1/label`, `GET /v1/geometries`, `GET /v1/tokenizers`.
 * A thin edge: requests are validated here, the work happens in lib/labels.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { decodeBase64 } from "../../lib/util/base64.ts";
import { GEOMETRY_NAMES, GeometrySpecSchema, presetTokenizer } from "../../lib/geometry/mod.ts";
import { ChatSchema } from "../../lib/layout/mod.ts";
import { LabelRequestSchema, LabelSetSchema } from "../../lib/labels/mod.ts";
import { BUILTIN_TOKENIZER_NAMES } from "../../lib/tokenizer/mod.ts";
import { probeImage } from "../../lib/image/mod.ts";
import { labelResponse } from "../../lib/http/label_response.ts";
import { labeledItems, writeDataset } from "../../lib/data/mod.ts";
import { join } from "node:path";
import { createOcrEngine, type OcrEngine, type OcrEngineName } from "../../lib/ocr/mod.ts";
import { ApiError, ErrorBodySchema, LabelPool } from "../../lib/http/mod.ts";
import { type AppEnv, errorsFor, requireContentType } from "../shared/http.ts";

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
  /** Where `dataset` requests write (`<dataRoot>/datasets/<name>`); without it they are 400. */
  dataRoot?: string;
  /**
   * Images up to this many pixels (without overlay) are labeled on the event loop; larger ones,
   * overlays and PDFs in the worker pool. @default 2_000_000 (env DVSFT_LABEL_INLINE_PIXELS)
   */
  inlinePixels?: number;
}

export const LabelRequestOptionsSchema = LabelRequestSchema.extend({
  overlay: z.boolean().default(false).describe("include a base64 overlay PNG per item"),
  layout: z.enum(["labels", "sequence"]).default("labels").describe(
    "sequence: also lay each item out as the model's input_ids and labels for `messages`",
  ),
  messages: ChatSchema.optional().describe(
    "chat for layout 'sequence': one <image> marker (the item's image) and an assistant answer",
  ),
  dataset: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, "a dataset name: letters, digits, . _ -")
    .optional().describe(
      "also keep the input as a new dataset <data root>/datasets/<name> (images or PDF pages + their words) for training, evaluation and export",
    ),
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
    sequence: z.object({
      family: z.string(),
      inputIds: z.array(z.number().int()),
      labels: z.array(z.number().int()),
      visualPositions: z.array(z.number().int()),
    }).optional().describe("layout 'sequence': the model's input ids and labels"),
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

    ...errorsFor(400, 401, 413, 415, 422, 503, 504),
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
            geometries: z.array(z.object({
              name: z.string(),
              defaults: z.unknown(),
              tokenizer: z.string().nullable().describe("the preset's default tokenizer"),
            })),
          }),
        },
      },
    },

    ...errorsFor(401),
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

    ...errorsFor(401),
  },
});

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
  const pool = new LabelPool({ ocr: getOcr });
  const inlinePixels = options.inlinePixels ??
    Number(Deno.env.get("DVSFT_LABEL_INLINE_PIXELS") ?? 2_000_000);
  const isSmall = (input: Uint8Array | { base64: string }) => {
    try {
      // the header is in the first bytes: 64 KiB of base64 is enough for every format's size
      const bytes = input instanceof Uint8Array
        ? input
        : decodeBase64(input.base64.replace(/^data:[^;,]*;base64,/, "").slice(0, 65_536));
      const { width, height } = probeImage(bytes);
      return width * height <= inlinePixels;
    } catch {
      return true; // not an image: labelInput answers with the error at once
    }
  };
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(labelRoute, async (c) => {
    let input: Uint8Array | { base64: string };
    let raw: unknown;
    if ((c.req.header("content-type") ?? "").toLowerCase().startsWith("multipart/form-data")) {
      // both targets are typed as the union of the two bodies; the content type picks one
      const form = c.req.valid("form") as unknown as z.infer<typeof FormBodySchema>;
      input = new Uint8Array(await form.image.arrayBuffer());
      raw = parseOptionsText(form.options);
    } else {
      const { image, ...rest } = c.req.valid("json") as z.infer<typeof JsonBodySchema>;
      // decoded where the work happens (megabytes of base64 are milliseconds of the event loop)
      input = { base64: image };
      raw = rest;
    }
    const parsed = LabelRequestOptionsSchema.safeParse(raw);
    if (!parsed.success) throw parsed.error;
    const { dataset, ...request } = parsed.data;
    if (dataset !== undefined) {
      // kept as a dataset: labeled here, where the page images are at hand
      if (!options.dataRoot) {
        throw new ApiError(400, "invalid_request", "This server keeps no datasets (no data root)");
      }
      const rel = join("datasets", dataset);
      const out = join(options.dataRoot, rel);
      if (await Deno.stat(out).then(() => true, () => false)) {
        throw new ApiError(409, "conflict", `Dataset '${dataset}' exists; pick another name`);
      }
      const bytes = input instanceof Uint8Array ? input : decodeBase64(input.base64);
      const body = await labelResponse(bytes, request, {
        ocr: getOcr,
        maxPixels,
        maxPdfPages,
        onResults: async (results) => {
          const m = await writeDataset(out, labeledItems([["upload", results]]), {
            producer: "label",
            config: { source: request.source, dpi: request.dpi ?? null },
          });
          return { dataset: { path: rel, items: m.shards.reduce((s, x) => s + x.count, 0) } };
        },
      });
      return c.json(body, 200) as never;
    }
    // a small image without overlay is labeled here (tens of ms: a worker's copies would cost
    // more); anything larger, an overlay or a PDF runs in a worker, so the event loop stays free
    if (!request.overlay && request.source !== "pdf" && isSmall(input)) {
      const bytes = input instanceof Uint8Array ? input : decodeBase64(input.base64);
      const body = await labelResponse(bytes, request, { ocr: getOcr, maxPixels, maxPdfPages });
      return c.json(body, 200) as never;
    }
    const json = await pool.label(input, request, { maxPixels, maxPdfPages });
    return c.body(json, 200, { "content-type": "application/json" }) as never;
  });

  app.openapi(geometriesRoute, (c) => {
    const geometries: Array<{ name: string; defaults: unknown; tokenizer: string | null }> =
      GEOMETRY_NAMES.filter((n) => n !== "custom")
        .map((name) => ({
          name,
          defaults: GeometrySpecSchema.parse({ name }),
          tokenizer: presetTokenizer(name),
        }));
    geometries.push({
      name: "custom",
      defaults: { patchSize: "required", merge: 1, resize: "smart | fixed | pad-square" },
      tokenizer: presetTokenizer("custom"),
    });
    return c.json({ geometries }, 200);
  });

  app.openapi(tokenizersRoute, (c) => c.json({ tokenizers: [...BUILTIN_TOKENIZER_NAMES] }, 200));

  return {
    app,
    close: async () => {
      pool.close();
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
