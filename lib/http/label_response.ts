/**
 * The `POST /v1/label` response for one input: the request's checks that need more than its
 * schema, its tokenizer (the geometry preset's own unless named; the family's special tokens for
 * `layout: "sequence"`), `labelInput`, and per item the label set, the overlay and the sequence.
 * Run on the event loop for small images and in a label worker for the rest: one code path.
 */
import {
  drawOverlay,
  type LabeledInput,
  labelInput,
  type LabelRequest,
  requestTokenizerName,
} from "../labels/mod.ts";
import {
  type ChatMessage,
  SequenceLayoutError,
  sequenceOfLabeledImage,
  sequenceTokenizerFor,
} from "../layout/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { encodeBase64 } from "../util/base64.ts";
import { ApiError } from "./errors.ts";

/** The label request with the response options of the HTTP route. */
export interface LabelResponseRequest extends LabelRequest {
  overlay: boolean;
  layout: "labels" | "sequence";
  messages?: ChatMessage[];
}

/** Sequence-layout refusals are the caller's to fix: 400 with the reason. */
function sequenceOrBadRequest<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SequenceLayoutError) throw new ApiError(400, "invalid_sequence", e.message);
    throw e;
  }
}

export async function labelResponse(
  bytes: Uint8Array,
  request: LabelResponseRequest,
  ctx: {
    ocr?: () => Promise<OcrEngine>;
    maxPixels: number;
    maxPdfPages: number;
    /** Sees the label results before the response is built (e.g. to keep them as a dataset). */
    onResults?: (results: LabeledInput[]) => Promise<Record<string, unknown>>;
  },
): Promise<Record<string, unknown>> {
  const { overlay, layout, messages, ...o } = request;
  if (layout === "sequence" && !messages) {
    throw new ApiError(400, "invalid_request", "Layout 'sequence' needs 'messages'");
  }
  if (layout !== "sequence" && messages) {
    throw new ApiError(400, "invalid_request", "Field 'messages' is only for layout 'sequence'");
  }
  const extraSpecialTokens = layout === "sequence"
    ? sequenceOrBadRequest(() => sequenceTokenizerFor(o.geometry.name)).extraSpecialTokens
    : [];
  const tokenizer = await getTokenizer(requestTokenizerName(o), { extraSpecialTokens });
  const results = await labelInput(bytes, o, {
    tokenizer,
    ocr: ctx.ocr,
    limits: { maxPixels: ctx.maxPixels },
    maxPdfPages: ctx.maxPdfPages,
  });
  const extra = ctx.onResults ? await ctx.onResults(results) : {};
  const sequenceOf = (r: LabeledInput) => {
    if (!messages) return {};
    const sequence = sequenceOrBadRequest(() =>
      sequenceOfLabeledImage(o.geometry, messages, {
        width: r.image.width,
        height: r.image.height,
        visionLabels: r.labelSet.tokens.label,
      }, tokenizer)
    );
    return { sequence };
  };
  return {
    items: results.map((r) => ({
      ...(r.page !== undefined ? { page: r.page } : {}),
      labelSet: r.labelSet,
      ...(overlay ? { overlay: encodeBase64(drawOverlay(r.image.image, r.labelSet)) } : {}),
      ...sequenceOf(r),
    })),
    timing: {
      ocrMs: Math.round(results.reduce((s, r) => s + r.ocrMs, 0)),
      labelMs: Math.round(results.reduce((s, r) => s + r.labelMs, 0)),
    },
    ...extra,
  };
}
