/**
 * Turn (image pixels, question, answer, vision labels) into the model's sequence and labels
 * (docs/ARCHITECTURE.md "Sequence and loss"), and make such samples from a suite or a dataset.
 */
import { createCanvas, loadImage } from "@napi-rs/canvas";
import { exactVisionLabels, IGNORE_INDEX } from "../labels/mod.ts";
import type { WordTokenizer } from "../tokenizer/mod.ts";
import {
  EOS_ID,
  IMAGE_PAD_ID,
  PAD_ID,
  VISION_END_ID,
  VISION_START_ID,
} from "../tokenizer/small.ts";
import { type ModelConfig, numVisualTokens, sequenceLength } from "../model/config.ts";
import type { Sample } from "./reading.ts";
import { generateSample } from "./generate.ts";
import type { Item } from "./dataset.ts";

/** RGBA bytes → [S·S·3] floats in [0, 1]. */
export function rgbaToPixels(rgba: Uint8ClampedArray | Uint8Array, S: number): Float32Array {
  const px = new Float32Array(S * S * 3);
  for (let i = 0, j = 0; i < S * S; i++, j += 4) {
    px[i * 3] = rgba[j]! / 255;
    px[i * 3 + 1] = rgba[j + 1]! / 255;
    px[i * 3 + 2] = rgba[j + 2]! / 255;
  }
  return px;
}

/** Build the sequence; null when prompt + answer do not fit the model's text length. */
export function buildSequence(
  config: ModelConfig,
  tokenizer: WordTokenizer,
  pixels: Float32Array,
  question: string,
  answer: string,
  visionLabels: number[],
  meta: Pick<Sample, "words"> = { words: [] },
): Sample | null {
  const N = numVisualTokens(config), T = sequenceLength(config);
  if (visionLabels.length !== N) {
    throw new RangeError(
      `Vision labels have ${visionLabels.length} tokens; the model has ${N} visual tokens`,
    );
  }
  const promptIds = tokenizer.encode(question);
  const answerIds = tokenizer.encode(answer);
  if (N + 2 + promptIds.length + answerIds.length + 1 > T) return null;
  const inputIds = new Int32Array(T).fill(PAD_ID);
  const labels = new Int32Array(T).fill(IGNORE_INDEX);
  inputIds[0] = VISION_START_ID;
  inputIds.fill(IMAGE_PAD_ID, 1, N + 1);
  inputIds[N + 1] = VISION_END_ID;
  labels.set(visionLabels, 1);
  let p = N + 2;
  for (const id of promptIds) inputIds[p++] = id;
  const promptEnd = p;
  for (const id of answerIds) {
    inputIds[p] = id;
    labels[p++] = id;
  }
  inputIds[p] = EOS_ID;
  labels[p] = EOS_ID;
  return { pixels, inputIds, labels, promptEnd, prompt: question, answer, words: meta.words };
}

/** All (question, answer) samples of a suite item, drawn at the model's size and labeled exactly. */
export async function suiteSamples(
  suite: string,
  index: number,
  config: ModelConfig,
  tokenizer: WordTokenizer,
): Promise<Sample[]> {
  const g = await generateSample(suite, index, config.imageSize);
  const visionLabels = exactVisionLabels(g, g.words, tokenizer);
  const rgba = g.canvas.getContext("2d").getImageData(0, 0, g.width, g.height).data;
  const pixels = rgbaToPixels(rgba, config.imageSize);
  const words = g.words.map((w) => w.text);
  return g.qa.map((q) =>
    buildSequence(config, tokenizer, pixels, q.question, q.answer, visionLabels, { words })
  ).filter((s): s is Sample => s !== null);
}

/** A dataset item as a sample; the image must be the model's size and the labels its tokenizer's. */
export async function itemSample(
  item: Item,
  config: ModelConfig,
  tokenizer: WordTokenizer,
): Promise<Sample | null> {
  if (item.tokenizerSha256 !== tokenizer.sha256) {
    throw new RangeError(
      `Item ${item.image}: vision labels were made with another tokenizer (sha256 ${
        item.tokenizerSha256.slice(0, 12)
      }…, the model's is ${tokenizer.sha256.slice(0, 12)}…)`,
    );
  }
  const img = await loadImage(await Deno.readFile(item.image));
  if (img.width !== config.imageSize || img.height !== config.imageSize) {
    throw new RangeError(
      `Item ${item.image}: ${img.width}x${img.height}, the model takes ${config.imageSize}x${config.imageSize}`,
    );
  }
  const c = createCanvas(img.width, img.height);
  c.getContext("2d").drawImage(img, 0, 0);
  const pixels = rgbaToPixels(
    c.getContext("2d").getImageData(0, 0, img.width, img.height).data,
    config.imageSize,
  );
  return buildSequence(config, tokenizer, pixels, item.question, item.answer, item.visionLabels);
}
