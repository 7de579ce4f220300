/**
 * Training samples for the small model: a rendered image of a few words, a question about
 * them, the answer, and the image's exact vision labels from the same label pipeline as
 * `POST /v1/label` (qwen2-vl geometry on the model's image size). Deterministic from
 * (seed, index).
 *
 * Sequence: [vision_start] v1 … vN [vision_end] prompt answer [eos] [pad]…
 * Labels:   -100  (vision labels)     -100       -100   answer  eos   -100
 */
import { exactVisionLabels } from "../labels/mod.ts";
import { buildSequence, rgbaToPixels, type Sample } from "./sequence.ts";

export type { Sample };
import { renderPageRaw } from "../render/mod.ts";
import { WORDS } from "../render/words.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import { Rng } from "../util/rng.ts";
import { type ModelConfig, numVisualTokens } from "../model/config.ts";

export interface SampleOptions {
  config: ModelConfig;
  tokenizer: WordTokenizer;
  seed: number;
  /** @default "DejaVu Sans" */
  font?: string;
}

const SHORT_WORDS = WORDS.filter((w) => w.length <= 7);

function mix(seed: number, index: number): number {
  // a well-spread 32-bit seed per (seed, index)
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 13;
  return Math.imul(h, 0x27d4eb2f) >>> 0;
}

/** Make sample `index` of the reading task. */
export function makeReadingSample(index: number, options: SampleOptions): Sample {
  const { config, tokenizer, seed, font = "DejaVu Sans" } = options;
  const S = config.imageSize;
  const cells = S / 28;
  const N = numVisualTokens(config);
  const rng = new Rng(mix(seed, index));
  for (let attempt = 0;; attempt++) {
    const nLines = cells <= 2 ? 1 : rng.int(2, Math.min(3, Math.floor(cells / 2)));
    const perLine = cells <= 2 ? 1 : rng.int(1, 2);
    const text = Array.from(
      { length: nLines },
      () => Array.from({ length: perLine }, () => rng.pick(SHORT_WORDS)).join(" "),
    )
      .join("\n");
    const fontSize = cells <= 2 ? 14 : rng.pick([18, 20, 22]);
    const page = renderPageRaw({
      text,
      width: S,
      height: S,
      margin: 4,
      fontSize,
      lineHeight: 1.35,
      font,
    });
    if (page.words.length === 0) continue;
    const words = page.words.map((w) => w.text);
    const byLine = new Map<number, string[]>();
    page.lines.forEach((l, k) => (byLine.get(l) ?? byLine.set(l, []).get(l)!).push(words[k]!));
    const lineTexts = [...byLine.values()].map((ws) => ws.join(" "));
    let prompt: string;
    let answer: string;
    const kind = rng.next();
    if (kind < 0.4 || lineTexts.length === 1) {
      prompt = "read the text";
      answer = words.join(" ");
    } else if (kind < 0.75 || words.length < 2) {
      const k = rng.int(0, lineTexts.length - 1);
      prompt = `read line ${k + 1}`;
      answer = lineTexts[k]!;
    } else {
      const k = rng.int(0, words.length - 2);
      prompt = `word after ${words[k]}`;
      answer = words[k + 1]!;
    }
    const visionLabels = exactVisionLabels(page, page.words, tokenizer);
    if (visionLabels.length !== N) {
      throw new RangeError(`Label grid has ${visionLabels.length} tokens, model has ${N}`);
    }
    const sample = buildSequence(
      config,
      tokenizer,
      rgbaToPixels(page.rgba, S),
      prompt,
      answer,
      visionLabels,
      { words },
    );
    if (sample) return sample;
    if (attempt > 20) {
      throw new RangeError(
        `Cannot make sample ${index}: answer too long for maxTextLen ${config.maxTextLen}`,
      );
    }
  }
}
