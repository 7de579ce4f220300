/**
 * Turn (image pixels, question, answer, vision labels) into the model's sequence and labels
 * (docs/ARCHITECTURE.md "Sequence and loss"), and make such samples from a suite or a dataset.
 */
import { createCanvas, type SKRSContext2D } from "@napi-rs/canvas";
import { join } from "node:path";
import { decodeImage } from "../image/mod.ts";
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
import { generateSample } from "./generate.ts";
import { DatasetError, type DatasetItem, readDataset } from "./dataset.ts";

/** A training or evaluation sample of the built-in model. */
export interface Sample {
  /** [S·S·3] in [0, 1], row-major RGB. */
  pixels: Float32Array;
  /** [T] the full sequence (prompt + answer + eos, padded). */
  inputIds: Int32Array;
  /** [T] answer ids at their positions, the vision labels at 1…N, -100 elsewhere. */
  labels: Int32Array;
  /** Where the prompt ends (the answer starts): greedy decoding starts here. */
  promptEnd: number;
  prompt: string;
  answer: string;
  words: string[];
}

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

export interface SequenceOptions {
  /**
   * Cut a prompt + answer that do not fit the model's text length instead of returning null:
   * the prompt keeps its last tokens, the answer its first (evaluation of long benchmark
   * questions). @default false
   */
  truncate?: boolean;
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
  options: SequenceOptions = {},
): Sample | null {
  const N = numVisualTokens(config), T = sequenceLength(config);
  if (visionLabels.length !== N) {
    throw new RangeError(
      `Vision labels have ${visionLabels.length} tokens; the model has ${N} visual tokens`,
    );
  }
  let promptIds = tokenizer.encode(question);
  let answerIds = tokenizer.encode(answer);
  const room = T - N - 2 - 1; // text tokens after the visual block, before EOS
  if (promptIds.length + answerIds.length > room) {
    if (!options.truncate) return null;
    // the prompt keeps its end (trainers truncate on the left), the answer keeps up to half
    const answerKeep = Math.min(answerIds.length, Math.floor(room / 2));
    promptIds = promptIds.slice(Math.max(0, promptIds.length - (room - answerKeep)));
    answerIds = answerIds.slice(0, room - promptIds.length);
  }
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

/** One (item, question) of a dataset: what a training or evaluation stream draws. */
export interface DatasetTurn {
  dir: string;
  item: DatasetItem;
  /** Index into `item.qa`; -1 for an item without questions (its vision labels only). */
  turn: number;
}

/** Every (item, question) of a dataset folder, in order; items without QA give one turn −1. */
export async function readDatasetTurns(dir: string): Promise<DatasetTurn[]> {
  const { items } = await readDataset(dir);
  return items.flatMap((item) =>
    item.qa.length ? item.qa.map((_, turn) => ({ dir, item, turn })) : [{ dir, item, turn: -1 }]
  );
}

/**
 * Fit an image of any size into the model's S×S input: scaled to fit the longer side and centred
 * on white (documents), so text keeps its shape. Returns the pixels and the map of a box in the
 * image's pixels to the model input's.
 */
export function fitToSquare(
  image: Parameters<SKRSContext2D["drawImage"]>[0] & { width: number; height: number },
  S: number,
): { pixels: Float32Array; mapBox: (b: readonly number[]) => [number, number, number, number] } {
  const scale = S / Math.max(image.width, image.height);
  const w = image.width * scale, h = image.height * scale;
  const ox = (S - w) / 2, oy = (S - h) / 2;
  const c = createCanvas(S, S);
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, S, S);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, ox, oy, w, h);
  return {
    pixels: rgbaToPixels(ctx.getImageData(0, 0, S, S).data, S),
    mapBox: (b) => [ox + b[0]! * scale, oy + b[1]! * scale, ox + b[2]! * scale, oy + b[3]! * scale],
  };
}

/**
 * A dataset turn as a sample for the built-in model: the image fitted into the model's input
 * with its word boxes following, vision labels derived there for the model's geometry and
 * tokenizer. Null when prompt + answer do not fit the model's text length.
 */
export async function datasetSample(
  t: DatasetTurn,
  config: ModelConfig,
  tokenizer: WordTokenizer,
  options: SequenceOptions = {},
): Promise<Sample | null> {
  const path = join(t.dir, t.item.image);
  const decoded = await decodeImage(await Deno.readFile(path)).catch((e) => {
    throw new DatasetError(`Item '${t.item.id}' (${path}): ${(e as Error).message}`);
  });
  if (decoded.width !== t.item.width || decoded.height !== t.item.height) {
    throw new DatasetError(
      `Item '${t.item.id}': the image is ${decoded.width}x${decoded.height}, its record says ${t.item.width}x${t.item.height}`,
    );
  }
  const S = config.imageSize;
  const { pixels, mapBox } = fitToSquare(decoded.image, S);
  const words = t.item.words.map((w) => ({ ...w, box: mapBox(w.box) }));
  const visionLabels = exactVisionLabels({ width: S, height: S }, words, tokenizer);
  const qa = t.turn >= 0 ? t.item.qa[t.turn]! : { question: "", answer: "" };
  return buildSequence(config, tokenizer, pixels, qa.question, qa.answer, visionLabels, {
    words: words.map((w) => w.text),
  }, options);
}
