/**
 * One image → one label set, from any word source. The HTTP and CLI edges call this.
 */
import { type DecodedImage, decodeImage, type DecodeImageOptions, toPng } from "../image/mod.ts";
import type { OcrEngine } from "../ocr/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import {
  buildLabelSet,
  type LabelOptions,
  type LabelSet,
  type Source,
  type WordBox,
} from "./label_set.ts";

export interface LabelImageInput {
  bytes: Uint8Array;
  source: Source;
  /** Words with boxes: required for `boxes` (and given by the renderer / PDF reader). */
  words?: readonly WordBox[];
  tokenizer: WordTokenizer;
  options: LabelOptions;
  /** Required for `ocr`. */
  ocr?: OcrEngine;
  /** OCR resolution hint. */
  dpi?: number;
  limits?: DecodeImageOptions;
}

export interface LabeledImage {
  labelSet: LabelSet;
  image: DecodedImage;
  /** Milliseconds spent in OCR (0 for other sources), and in everything after it. */
  ocrMs: number;
  labelMs: number;
}

/** Raised for inputs that cannot be labeled as asked (maps to HTTP 400). */
export class LabelInputError extends Error {
  override name = "LabelInputError";
}

/** Decode, find words (OCR when asked), assign, and build the label set. */
export async function labelImage(input: LabelImageInput): Promise<LabeledImage> {
  const image = await decodeImage(input.bytes, input.limits);
  let words = input.words;
  let engine: string | undefined;
  let ocrMs = 0;
  if (input.source === "ocr") {
    if (!input.ocr) {
      throw new LabelInputError("Cannot label image: source 'ocr' needs an OCR engine");
    }
    const t0 = performance.now();
    // non-PNG inputs (JPEG, WebP, GIF) are handed to the engines as PNG
    words = await input.ocr.recognize(image.type === "png" ? image.bytes : toPng(image.image), {
      dpi: input.dpi,
    });
    ocrMs = performance.now() - t0;
    engine = input.ocr.name;
  } else if (!words) {
    throw new LabelInputError(
      `Cannot label image: source '${input.source}' needs words with boxes`,
    );
  }
  const t1 = performance.now();
  for (const [i, w] of words.entries()) {
    const [x0, y0, x1, y1] = w.box;
    if (x1 <= 0 || y1 <= 0 || x0 >= image.width || y0 >= image.height) {
      throw new LabelInputError(
        `Cannot label image: word ${i} ('${w.text}') box [${
          w.box.join(", ")
        }] lies outside the ${image.width}x${image.height} image`,
      );
    }
  }
  const labelSet = buildLabelSet({
    image,
    words,
    source: engine ? { kind: input.source, engine } : { kind: input.source },
    tokenizer: input.tokenizer,
    geometry: input.options.geometry,
    policy: input.options.policy,
    minConfidence: input.options.minConfidence,
  });
  return { labelSet, image, ocrMs, labelMs: performance.now() - t1 };
}

/** Stable serialization: same label set → same bytes. */
export function serializeLabelSet(ls: LabelSet): string {
  return JSON.stringify(ls);
}
