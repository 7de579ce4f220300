/**
 * Training sequences in Qwen2-VL's input layout (DESIGN.md "Labels in the model's input layout"):
 * the image expanded to `<|vision_start|> <|image_pad|>×N <|vision_end|>` with N = (H/28)·(W/28),
 * the prompt, the answer and `<|im_end|>`, padded with `<|endoftext|>`; labels of the same length
 * (vision labels at the `<|image_pad|>` positions in raster order, -100 over the prompt, the
 * answer ids and `<|im_end|>` over the answer). `chat` wraps it in Qwen's chat template
 * (`<|im_start|>user\n … <|im_end|>\n<|im_start|>assistant\n …`, no system turn), as the instruct
 * models expect.
 */
import type { WordTokenizer } from "../../tokenizer/mod.ts";
import type { QwenVLConfig } from "./config.ts";

/** Qwen2 tokenizer ids outside config.json. */
export const QWEN_IM_START = 151644;
export const QWEN_IM_END = 151645;
export const QWEN_ENDOFTEXT = 151643;

const IGNORE = -100;

/** Options of {@linkcode buildQwenSequence}. */
export interface QwenSequenceOptions {
  /** Image side lengths in pixels (multiples of patch × merge). */
  height: number;
  width: number;
  question: string;
  answer: string;
  /** One label per visual token in raster order (-100 where unlabeled); SFT: all -100. */
  visionLabels: readonly number[];
  /** Pad to this length (no padding when absent). */
  length?: number;
  /** @default "plain" */
  template?: "plain" | "chat";
}

/** A sequence, its labels and where its visual block and prompt end lie. */
export interface QwenSequence {
  inputIds: Int32Array;
  labels: Int32Array;
  /** [start, end) of the `<|image_pad|>` tokens: the joint loss's vision range. */
  vision: [number, number];
  promptEnd: number;
}

/** Build one training sequence; null when it does not fit `length`. */
export function buildQwenSequence(
  config: QwenVLConfig,
  tokenizer: WordTokenizer,
  options: QwenSequenceOptions,
): QwenSequence | null {
  const { height, width, question, answer, visionLabels, length, template = "plain" } = options;
  const unit = config.vision.patchSize * config.vision.mergeSize;
  if (height % unit || width % unit || height < unit || width < unit) {
    throw new RangeError(
      `Cannot build sequence: image ${width}×${height} must have sides that are multiples of ${unit}`,
    );
  }
  const N = (height / unit) * (width / unit);
  if (visionLabels.length !== N) {
    throw new RangeError(
      `Cannot build sequence: ${visionLabels.length} vision labels for ${N} visual tokens`,
    );
  }
  const nl = tokenizer.encode("\n");
  const head = template === "chat" ? [QWEN_IM_START, ...tokenizer.encode("user"), ...nl] : [];
  const afterPrompt = template === "chat"
    ? [QWEN_IM_END, ...nl, QWEN_IM_START, ...tokenizer.encode("assistant"), ...nl]
    : [];
  const prompt = tokenizer.encode(question);
  const answerIds = [...tokenizer.encode(answer), QWEN_IM_END];
  const ids = [
    ...head,
    config.visionStartTokenId,
    ...Array<number>(N).fill(config.imageTokenId),
    config.visionEndTokenId,
    ...prompt,
    ...afterPrompt,
  ];
  const promptEnd = ids.length;
  const labels = [...Array<number>(ids.length).fill(IGNORE), ...answerIds];
  ids.push(...answerIds);
  const v0 = head.length + 1;
  labels.splice(v0, N, ...visionLabels);
  const T = length ?? ids.length;
  if (ids.length > T) return null;
  const inputIds = new Int32Array(T).fill(QWEN_ENDOFTEXT);
  inputIds.set(ids);
  const out = new Int32Array(T).fill(IGNORE);
  out.set(labels);
  return { inputIds, labels: out, vision: [v0, v0 + N], promptEnd };
}
