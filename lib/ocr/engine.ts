/**
 * OCR engines that return words with boxes: tesseract.js (embedded, offline, a pool of
 * workers) and the native `tesseract` CLI (faster, when installed). `auto` picks native; both
 * read English with the same model, and the engine's name says which one read.
 */
import { createWorker, type Worker } from "tesseract.js";
import { fileURLToPath } from "node:url";
import { availableParallelism } from "node:os";
import { Buffer } from "node:buffer";
import type { WordBox } from "../labels/word_box.ts";
import { Limiter } from "../util/limiter.ts";
import { createCanvas, loadImage } from "@napi-rs/canvas";

export type OcrEngineName = "auto" | "native" | "tesseract.js";

export interface OcrEngine {
  /**
   * Engine, version, language, models and the read settings, e.g. `tesseract.js@7.0.0 (eng,
   * upscale to 300 dpi …; models @tesseract.js-data/eng@1.0.0)`: recorded in every label set,
   * so labels made by different engines or settings are never mistaken for each other.
   */
  readonly name: string;
  readonly limiter: Limiter;
  recognize(png: Uint8Array, options?: { dpi?: number }): Promise<WordBox[]>;
  close(): Promise<void>;
}

/** Options of {@linkcode createOcrEngine}. */
export interface OcrEngineOptions {
  /** Parallel pages (workers or processes). @default number of cores */
  concurrency?: number;
  /** Pages allowed to wait; more → QueueFullError. @default Infinity */
  maxQueue?: number;
  /** tesseract.js workers are replaced after this many pages (bounds their memory). @default 200 */
  recycleAfter?: number;
  /** Tesseract language. @default "eng" */
  lang?: string;
  /**
   * Images read at a lower resolution than this (by the `dpi` hint) are upscaled before OCR and
   * their boxes mapped back: Tesseract misreads and drops small text. @default 300
   */
  upscaleToDpi?: number;
  /**
   * Images without a dpi hint whose words' median ink height is under this many pixels are
   * read a second time, upscaled to twice it (0: never). @default 15
   */
  smallTextHeight?: number;
  /** The largest upscale factor. @default 3 */
  maxUpscale?: number;
  /** Upscaled images stay under this many pixels. @default 40_000_000 */
  maxUpscaledPixels?: number;
  /**
   * `line`: each word's box spans its text line's height (ascenders to descenders), as the
   * boxes of a PDF text layer do; `ink`: the word's own ink box. @default "line"
   */
  boxes?: OcrBoxMode;
  /** Words read with less confidence (0–100) are dropped. @default 30 */
  minConfidence?: number;
  /**
   * Lines whose words' mean confidence is lower are dropped whole: texture read as text comes
   * in lines of low confidence, while a real line keeps a high mean around a few hard words
   * (code, names). @default 70
   */
  minLineConfidence?: number;
  /** Words of no letter or digit (`|`, `~`, `“` from edges) need this much. @default 90 */
  minSymbolConfidence?: number;
}

export type OcrBoxMode = "line" | "ink";

/** Settings that change what an engine reads; part of its recorded name. */
export interface ReadSettings {
  upscaleToDpi: number;
  smallTextHeight: number;
  maxUpscale: number;
  maxUpscaledPixels: number;
  boxes: OcrBoxMode;
  minConfidence: number;
  minLineConfidence: number;
  minSymbolConfidence: number;
}

function settingsLabel(lang: string, s: ReadSettings): string {
  return `${lang}, upscale to ${s.upscaleToDpi} dpi or text under ${s.smallTextHeight} px ` +
    `(max ${s.maxUpscale}x), ${s.boxes} boxes, ` +
    `confidence >= ${s.minConfidence} (${s.minSymbolConfidence} without letters or digits, ` +
    `line mean >= ${s.minLineConfidence})`;
}

const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

/** Whether a word read by OCR passes the engine's confidence floors. */
export function keepOcrWord(
  w: { text: string; confidence: number },
  s: { minConfidence: number; minSymbolConfidence: number },
): boolean {
  return w.confidence >= s.minConfidence &&
    (w.confidence >= s.minSymbolConfidence || LETTER_OR_DIGIT.test(w.text));
}

/** The internal scale for an image of `pixels` read at `dpi` (1 when no dpi is known). */
export function ocrScale(dpi: number | undefined, pixels: number, s: ReadSettings): number {
  if (!dpi || dpi >= s.upscaleToDpi) return 1;
  const byDpi = Math.min(s.maxUpscale, s.upscaleToDpi / dpi);
  const byPixels = Math.sqrt(s.maxUpscaledPixels / pixels);
  return Math.max(1, Math.min(byDpi, byPixels));
}

/** PNG → PNG scaled by `scale` (bilinear, high quality), with its pixel size. */
async function upscalePng(png: Uint8Array, scale: number): Promise<Uint8Array> {
  const img = await loadImage(png);
  const c = createCanvas(Math.round(img.width * scale), Math.round(img.height * scale));
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(img, 0, 0, c.width, c.height);
  return new Uint8Array(c.toBuffer("image/png"));
}

function pngPixels(png: Uint8Array): number {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return png.byteLength >= 24 ? v.getUint32(16) * v.getUint32(20) : 0;
}

/** A word as read, with the index of its text line. */
export interface LineWord extends WordBox {
  line: number;
}

/** Scripts written without spaces between words (Han, kana, CJK punctuation, full-width forms). */
const UNSPACED =
  /^[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\u3000-\u303f\uff00-\uffef\u30fc]+$/u;

/**
 * Join neighbouring words of one line (less than two line heights apart: Tesseract's CJK boxes
 * can be short by a glyph) that are both in a script without spaces into one run:
 * Tesseract's word split there is its own dictionary guess with jittery boxes, while the run's
 * box is reliable; the tokenizer then splits the run and its pieces spread over the box by
 * their character counts (full-width glyphs: one advance each). Confidence: the run's lowest;
 * top and bottom: the medians of its words' (one of Tesseract's CJK boxes can be far off).
 */
export function mergeUnspacedRuns(words: LineWord[]): LineWord[] {
  const runs: LineWord[][] = [];
  for (const w of words) {
    const run = runs.at(-1);
    const prev = run?.at(-1);
    const h = Math.max(w.box[3] - w.box[1], prev ? prev.box[3] - prev.box[1] : 0);
    if (
      run && prev && prev.line === w.line && UNSPACED.test(prev.text) && UNSPACED.test(w.text) &&
      w.box[0] - prev.box[2] < 2 * h
    ) run.push(w);
    else runs.push([w]);
  }
  const median = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  return runs.map((run) => {
    if (run.length === 1) return run[0]!;
    // the run's top and bottom: its words' medians, as one word's box can be far off
    return {
      text: run.map((w) => w.text).join(""),
      box: [
        Math.min(...run.map((w) => w.box[0])),
        median(run.map((w) => w.box[1])),
        Math.max(...run.map((w) => w.box[2])),
        median(run.map((w) => w.box[3])),
      ],
      confidence: Math.min(...run.map((w) => w.confidence)),
      line: run[0]!.line,
    };
  });
}

/**
 * Boxes back in the input image's pixels; in `line` mode each word's top and bottom become
 * its line's (the union of the line's word boxes), so a word without ascenders or descenders
 * covers the same rows as its neighbours.
 */
export function finishOcrWords(all: LineWord[], scale: number, s: ReadSettings): WordBox[] {
  const mode = s.boxes;
  // noise is dropped before the line extents, so it cannot stretch a line
  const lineSum = new Map<number, [number, number]>();
  for (const w of all) {
    const e = lineSum.get(w.line) ?? [0, 0];
    lineSum.set(w.line, [e[0] + w.confidence, e[1] + 1]);
  }
  const lineOk = (line: number) => {
    const [sum, n] = lineSum.get(line)!;
    return sum / n >= s.minLineConfidence;
  };
  const words = mergeUnspacedRuns(all.filter((w) => lineOk(w.line) && keepOcrWord(w, s)));
  const extent = new Map<number, [number, number]>();
  if (mode === "line") {
    for (const w of words) {
      const e = extent.get(w.line);
      if (e) extent.set(w.line, [Math.min(e[0], w.box[1]), Math.max(e[1], w.box[3])]);
      else extent.set(w.line, [w.box[1], w.box[3]]);
    }
  }
  const r2 = (v: number) => Math.round((v / scale) * 100) / 100;
  return words.map(({ line, text, box, confidence }) => {
    const [y0, y1] = extent.get(line) ?? [box[1], box[3]];
    return { text, box: [r2(box[0]), r2(y0), r2(box[2]), r2(y1)], confidence };
  });
}

/** Upscale as the settings ask, recognize, and map the words back. */
async function readScaled(
  png: Uint8Array,
  dpi: number | undefined,
  s: ReadSettings,
  recognize: (png: Uint8Array, dpi: number | undefined) => Promise<LineWord[]>,
): Promise<WordBox[]> {
  if (!dpi && s.smallTextHeight > 0) {
    // no resolution known: read once, and again larger when the text came out small
    const first = await recognize(png, undefined);
    const scale = textScale(first, pngPixels(png), s);
    if (scale === 1) return finishOcrWords(first, 1, s);
    return finishOcrWords(await recognize(await upscalePng(png, scale), undefined), scale, s);
  }
  const scale = ocrScale(dpi, pngPixels(png), s);
  const input = scale > 1 ? await upscalePng(png, scale) : png;
  const words = await recognize(input, dpi ? Math.round(dpi * scale) : undefined);
  return finishOcrWords(words, scale, s);
}

/**
 * The scale for a second read of an image of unknown resolution: when the median ink height
 * of its confident words is under `smallTextHeight`, up to twice that height (what 10 pt text
 * is at 300 dpi: about 28 px), at most `maxUpscale` and under the pixel cap; else 1.
 */
export function textScale(words: readonly LineWord[], pixels: number, s: ReadSettings): number {
  const heights = words.filter((w) => w.confidence >= 60).map((w) => w.box[3] - w.box[1])
    .sort((a, b) => a - b);
  if (heights.length < 5) return 1;
  const median = heights[heights.length >> 1]!;
  if (median >= s.smallTextHeight) return 1;
  const byPixels = Math.sqrt(s.maxUpscaledPixels / pixels);
  const scale = Math.min(s.maxUpscale, (2 * s.smallTextHeight) / median, byPixels);
  return scale >= 1.25 ? scale : 1;
}

/** The native CLI's version, or null when it is not installed. */
export async function nativeTesseractVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command("tesseract", {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) return null;
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.match(/tesseract\s+v?([\d.]+)/i)?.[1] ?? "unknown";
  } catch {
    return null;
  }
}

/** Parse tesseract's TSV output (level 5 rows are words; block/par/line number their line). */
export function parseTesseractTsv(tsv: string): Array<WordBox & { line: number }> {
  const words: Array<WordBox & { line: number }> = [];
  const lines = new Map<string, number>();
  for (const line of tsv.split("\n").slice(1)) {
    const f = line.split("\t");
    if (f.length < 12 || f[0] !== "5") continue;
    const [left, top, width, height, conf] = [f[6], f[7], f[8], f[9], f[10]].map(
      Number,
    ) as number[];
    const text = f.slice(11).join("\t").trim();
    if (!text || !(width! > 0 && height! > 0)) continue;
    const key = `${f[1]}/${f[2]}/${f[3]}/${f[4]}`;
    if (!lines.has(key)) lines.set(key, lines.size);
    words.push({
      text,
      box: [left!, top!, left! + width!, top! + height!],
      confidence: Math.max(0, Math.min(100, conf!)),
      line: lines.get(key)!,
    });
  }
  return words;
}

class NativeEngine implements OcrEngine {
  readonly limiter: Limiter;
  readonly name: string;
  constructor(
    version: string,
    concurrency: number,
    maxQueue: number,
    readonly lang: string,
    readonly settings: ReadSettings,
    readonly data: NativeLangData,
  ) {
    this.name = `tesseract-cli@${version} (${
      settingsLabel(lang, settings)
    }; models ${data.source})`;
    this.limiter = new Limiter(concurrency, maxQueue);
  }
  recognize(png: Uint8Array, { dpi }: { dpi?: number } = {}): Promise<WordBox[]> {
    return this.limiter.run(() => readScaled(png, dpi, this.settings, (p, d) => this.#run(p, d)));
  }
  async #run(png: Uint8Array, dpi: number | undefined): Promise<LineWord[]> {
    const args = [
      "stdin",
      "stdout",
      "--tessdata-dir",
      this.data.dir,
      "-l",
      this.lang,
      "--psm",
      "3",
    ];
    if (dpi) args.push("--dpi", String(dpi));
    // the `tsv` config file lives in the default tessdata folder, not in ours
    args.push("-c", "tessedit_create_tsv=1");
    const child = new Deno.Command("tesseract", {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // one thread per process: OpenMP threads on 2 cores are ~10x slower (TOOLCHAIN.md)
      env: { OMP_THREAD_LIMIT: "1" },
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(png);
    await writer.close();
    const out = await child.output();
    if (!out.success) {
      throw new Error(
        `OCR failed: tesseract exited ${out.code}: ${
          new TextDecoder().decode(out.stderr).slice(0, 300)
        }`,
      );
    }
    return parseTesseractTsv(new TextDecoder().decode(out.stdout));
  }
  async close(): Promise<void> {
    if (this.data.temporary) await Deno.remove(this.data.dir, { recursive: true }).catch(() => {});
  }
}

/** The `4.0.0_best_int` English model shipped in the npm package @tesseract.js-data/eng. */
function embeddedLangPath(): string {
  return fileURLToPath(new URL("./4.0.0_best_int", import.meta.resolve("@tesseract.js-data/eng")));
}

/** Where Debian's `tesseract-ocr-<lang>` packages put their models (also read by tesseract.js). */
export const TESSDATA_DIRS = [
  "/usr/share/tesseract-ocr/5/tessdata",
  "/usr/share/tesseract-ocr/4.00/tessdata",
];

export interface LangData {
  langPath: string;
  gzip: boolean;
  /** Where the models came from, recorded in the engine name. */
  source: string;
}

/**
 * The models for `lang` (`eng`, `chi_sim`, `chi_sim+eng`, …): English alone from the npm
 * package; other languages from `TESSDATA_PREFIX` or Debian's tessdata folder, all from one
 * folder. Throws naming the package to install when a model is missing.
 */
export function findLangData(lang: string): LangData {
  if (lang === "eng") {
    return { langPath: embeddedLangPath(), gzip: true, source: "@tesseract.js-data/eng@1.0.0" };
  }
  const langs = lang.split("+");
  if (langs.some((l) => !/^[a-z_]{3,16}$/.test(l))) {
    throw new Error(`Cannot start OCR: language '${lang}' is not like 'eng' or 'chi_sim+eng'`);
  }
  const prefix = Deno.env.get("TESSDATA_PREFIX");
  for (const dir of [...(prefix ? [prefix] : []), ...TESSDATA_DIRS]) {
    const all = langs.every((l) => {
      try {
        return Deno.statSync(`${dir}/${l}.traineddata`).isFile;
      } catch {
        return false;
      }
    });
    if (all) return { langPath: dir, gzip: false, source: dir };
  }
  const pkgs = langs.map((l) => `tesseract-ocr-${l.replaceAll("_", "-")}`).join(" ");
  throw new Error(
    `Cannot start OCR: no model for '${lang}' in ${
      [prefix ?? "(TESSDATA_PREFIX unset)", ...TESSDATA_DIRS].join(", ")
    } (apt-get install ${pkgs})`,
  );
}

export interface NativeLangData {
  dir: string;
  source: string;
  temporary: boolean;
}

/**
 * Models for the CLI. English: the npm package's `4.0.0_best_int` model, unpacked to a
 * temporary folder, so both engines read with the same model (Debian's `eng` is the smaller
 * "fast" one, measured 0.90 vs 0.95 label agreement on a real page at 150 dpi). Other
 * languages: {@linkcode findLangData}'s folder.
 */
export async function nativeLangData(lang: string): Promise<NativeLangData> {
  if (lang !== "eng") {
    const d = findLangData(lang);
    return { dir: d.langPath, source: d.source, temporary: false };
  }
  const dir = await Deno.makeTempDir({ prefix: "dvsft-tessdata-" });
  const gz = await Deno.open(`${embeddedLangPath()}/eng.traineddata.gz`);
  const out = await Deno.open(`${dir}/eng.traineddata`, { write: true, create: true });
  await gz.readable.pipeThrough(new DecompressionStream("gzip")).pipeTo(out.writable);
  return { dir, source: "@tesseract.js-data/eng@1.0.0", temporary: true };
}

interface PooledWorker {
  worker: Worker;
  pages: number;
}

class TesseractJsEngine implements OcrEngine {
  readonly name: string;
  readonly limiter: Limiter;
  #idle: Promise<PooledWorker>[] = [];
  #all = new Set<Promise<PooledWorker>>();
  constructor(
    concurrency: number,
    maxQueue: number,
    readonly recycleAfter: number,
    readonly lang: string,
    readonly settings: ReadSettings,
    readonly data: LangData = findLangData(lang),
  ) {
    this.name = `tesseract.js@7.0.0 (${settingsLabel(lang, settings)}; models ${data.source})`;
    this.limiter = new Limiter(concurrency, maxQueue);
  }
  #spawn(): Promise<PooledWorker> {
    const p = createWorker(this.lang, 1, {
      langPath: this.data.langPath,
      cacheMethod: "none",
      gzip: this.data.gzip,
    })
      .then((worker) => ({ worker, pages: 0 }));
    this.#all.add(p);
    return p;
  }
  recognize(png: Uint8Array, { dpi }: { dpi?: number } = {}): Promise<WordBox[]> {
    return this.limiter.run(() => readScaled(png, dpi, this.settings, (p, d) => this.#run(p, d)));
  }
  async #run(png: Uint8Array, dpi: number | undefined): Promise<LineWord[]> {
    const slot = this.#idle.pop() ?? this.#spawn();
    const pw = await slot;
    let ok = false;
    try {
      if (dpi) await pw.worker.setParameters({ user_defined_dpi: String(dpi) });
      const r = await pw.worker.recognize(
        Buffer.from(png.buffer, png.byteOffset, png.byteLength),
        {},
        { blocks: true },
      );
      const words: LineWord[] = [];
      let line = 0;
      for (const b of r.data.blocks ?? []) {
        for (const p of b.paragraphs) {
          for (const l of p.lines) {
            line++;
            for (const w of l.words) {
              const text = w.text.trim();
              if (!text || !(w.bbox.x1 > w.bbox.x0 && w.bbox.y1 > w.bbox.y0)) continue;
              words.push({
                text,
                box: [w.bbox.x0, w.bbox.y0, w.bbox.x1, w.bbox.y1],
                confidence: Math.max(0, Math.min(100, w.confidence)),
                line,
              });
            }
          }
        }
      }
      ok = true;
      return words;
    } finally {
      pw.pages++;
      if (!ok || pw.pages >= this.recycleAfter) {
        this.#all.delete(slot);
        await pw.worker.terminate().catch(() => {});
      } else {
        this.#idle.push(slot);
      }
    }
  }
  async close(): Promise<void> {
    const all = [...this.#all];
    this.#all.clear();
    this.#idle = [];
    await Promise.all(all.map(async (p) => (await p).worker.terminate().catch(() => {})));
  }
}

/**
 * Make an OCR engine. `auto` → the native CLI when installed, else tesseract.js.
 *
 * @example
 * ```ts
 * const ocr = await createOcrEngine("auto");
 * const words = await ocr.recognize(pngBytes);
 * await ocr.close();
 * ```
 */
export async function createOcrEngine(
  name: OcrEngineName = "auto",
  options: OcrEngineOptions = {},
): Promise<OcrEngine> {
  const {
    concurrency = availableParallelism(),
    maxQueue = Infinity,
    recycleAfter = 200,
    lang = "eng",
    upscaleToDpi = 300,
    smallTextHeight = 15,
    maxUpscale = 3,
    maxUpscaledPixels = 40_000_000,
    boxes = "line",
    minConfidence = 30,
    minLineConfidence = 70,
    minSymbolConfidence = 90,
  } = options;
  const settings: ReadSettings = {
    upscaleToDpi,
    smallTextHeight,
    maxUpscale,
    maxUpscaledPixels,
    boxes,
    minConfidence,
    minLineConfidence,
    minSymbolConfidence,
  };
  if (name !== "tesseract.js") {
    const version = await nativeTesseractVersion();
    if (version) {
      return new NativeEngine(
        version,
        concurrency,
        maxQueue,
        lang,
        settings,
        await nativeLangData(lang),
      );
    }
    if (name === "native") {
      throw new Error(
        "Cannot start OCR: engine 'native' needs the tesseract CLI (apt-get install tesseract-ocr)",
      );
    }
  }
  return new TesseractJsEngine(concurrency, maxQueue, recycleAfter, lang, settings);
}
