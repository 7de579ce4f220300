/// <reference lib="deno.worker" />
/**
 * One labeling request off the server's event loop: decode, OCR words (asked of the server's
 * OCR pool by message), assignment, overlay, and the response's JSON text. In:
 * `{type: "label", id, ...}` and `{type: "ocr-result" | "ocr-error", call, ...}`. Out:
 * `{type: "result", id, json}`, `{type: "error", id, error}` (status and body, mapped here:
 * error classes do not cross a worker boundary) and `{type: "ocr", id, call, png, dpi}`.
 */
import type { OcrEngine } from "../ocr/mod.ts";
import { labelResponse, type LabelResponseRequest } from "./label_response.ts";
import type { WordBox } from "../labels/mod.ts";
import { decodeBase64 } from "../util/base64.ts";
import { Limiter } from "../util/limiter.ts";
import { ApiError, toErrorResponse } from "./errors.ts";

export interface LabelTask {
  type: "label";
  id: number;
  /** The upload, or its base64 text (decoded here). */
  input: Uint8Array | { base64: string };
  request: LabelResponseRequest;
  maxPixels: number;
  maxPdfPages: number;
  /** Name of the server's OCR engine (source "ocr"). */
  ocrName?: string;
}
export type ErrorResponse = ReturnType<typeof toErrorResponse>;

let calls = 0;
const pending = new Map<number, { resolve: (w: WordBox[]) => void; reject: (e: Error) => void }>();

function ocrProxy(id: number, name: string): OcrEngine {
  return {
    name,
    limiter: new Limiter(1),
    recognize: (png, options) =>
      new Promise((resolve, reject) => {
        const call = ++calls;
        pending.set(call, { resolve, reject });
        // copied, not transferred: the labeling code may still read these bytes
        self.postMessage({ type: "ocr", id, call, png, dpi: options?.dpi });
      }),
    close: () => Promise.resolve(),
  };
}

async function label(t: LabelTask): Promise<string> {
  const engine = t.ocrName ? ocrProxy(t.id, t.ocrName) : undefined;
  const bytes = t.input instanceof Uint8Array ? t.input : decodeBase64(t.input.base64);
  return JSON.stringify(
    await labelResponse(bytes, t.request, {
      ocr: engine ? () => Promise.resolve(engine) : undefined,
      maxPixels: t.maxPixels,
      maxPdfPages: t.maxPdfPages,
    }),
  );
}

self.onmessage = async (e: MessageEvent) => {
  const msg = e.data;
  if (msg.type === "ocr-result" || msg.type === "ocr-error") {
    const p = pending.get(msg.call);
    pending.delete(msg.call);
    if (msg.type === "ocr-result") p?.resolve(msg.words);
    else {
      const { status, body, headers } = msg.error as ErrorResponse;
      p?.reject(
        new ApiError(status, body.error.code, body.error.message, body.error.issues, headers),
      );
    }
    return;
  }
  const t = msg as LabelTask;
  try {
    self.postMessage({ type: "result", id: t.id, json: await label(t) });
  } catch (err) {
    self.postMessage({ type: "error", id: t.id, error: toErrorResponse(err) });
  }
};
