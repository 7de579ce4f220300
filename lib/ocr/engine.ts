/**
 * OCR engines that return words with boxes: tesseract.js (embedded, offline, a pool of
 * workers) and the native `tesseract` CLI (faster, when installed). `auto` picks native.
 */
import { createWorker, type Worker } from "tesseract.js";
import { fileURLToPath } from "node:url";
import { availableParallelism } from "node:os";
import { Buffer } from "node:buffer";
import type { WordBox } from "../labels/mod.ts";
import { Limiter } from "../util/limiter.ts";

export type OcrEngineName = "auto" | "native" | "tesseract.js";

export interface OcrEngine {
  /** `tesseract.js@7` or `tesseract-cli@5.3.0`: recorded in label sets. */
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

/** Parse tesseract's TSV output (level 5 rows are words). */
export function parseTesseractTsv(tsv: string): WordBox[] {
  const words: WordBox[] = [];
  for (const line of tsv.split("\n").slice(1)) {
    const f = line.split("\t");
    if (f.length < 12 || f[0] !== "5") continue;
    const [left, top, width, height, conf] = [f[6], f[7], f[8], f[9], f[10]].map(
      Number,
    ) as number[];
    const text = f.slice(11).join("\t").trim();
    if (!text || !(width! > 0 && height! > 0)) continue;
    words.push({
      text,
      box: [left!, top!, left! + width!, top! + height!],
      confidence: Math.max(0, Math.min(100, conf!)),
    });
  }
  return words;
}

class NativeEngine implements OcrEngine {
  readonly limiter: Limiter;
  constructor(readonly name: string, concurrency: number, maxQueue: number, readonly lang: string) {
    this.limiter = new Limiter(concurrency, maxQueue);
  }
  recognize(png: Uint8Array, { dpi }: { dpi?: number } = {}): Promise<WordBox[]> {
    return this.limiter.run(async () => {
      const args = ["stdin", "stdout", "-l", this.lang, "--psm", "3"];
      if (dpi) args.push("--dpi", String(dpi));
      args.push("tsv");
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
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The `4.0.0_best_int` English model shipped in the npm package @tesseract.js-data/eng. */
function embeddedLangPath(): string {
  return fileURLToPath(new URL("./4.0.0_best_int", import.meta.resolve("@tesseract.js-data/eng")));
}

interface PooledWorker {
  worker: Worker;
  pages: number;
}

class TesseractJsEngine implements OcrEngine {
  readonly name = "tesseract.js@7";
  readonly limiter: Limiter;
  #idle: Promise<PooledWorker>[] = [];
  #all = new Set<Promise<PooledWorker>>();
  constructor(
    concurrency: number,
    maxQueue: number,
    readonly recycleAfter: number,
    readonly lang: string,
  ) {
    this.limiter = new Limiter(concurrency, maxQueue);
  }
  #spawn(): Promise<PooledWorker> {
    const p = createWorker(this.lang, 1, {
      langPath: embeddedLangPath(),
      cacheMethod: "none",
      gzip: true,
    })
      .then((worker) => ({ worker, pages: 0 }));
    this.#all.add(p);
    return p;
  }
  recognize(png: Uint8Array, { dpi }: { dpi?: number } = {}): Promise<WordBox[]> {
    return this.limiter.run(async () => {
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
        const words: WordBox[] = [];
        for (const b of r.data.blocks ?? []) {
          for (const p of b.paragraphs) {
            for (const l of p.lines) {
              for (const w of l.words) {
                const text = w.text.trim();
                if (!text || !(w.bbox.x1 > w.bbox.x0 && w.bbox.y1 > w.bbox.y0)) continue;
                words.push({
                  text,
                  box: [w.bbox.x0, w.bbox.y0, w.bbox.x1, w.bbox.y1],
                  confidence: Math.max(0, Math.min(100, w.confidence)),
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
    });
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
  } = options;
  if (name !== "tesseract.js") {
    const version = await nativeTesseractVersion();
    if (version) return new NativeEngine(`tesseract-cli@${version}`, concurrency, maxQueue, lang);
    if (name === "native") {
      throw new Error(
        "Cannot start OCR: engine 'native' needs the tesseract CLI (apt-get install tesseract-ocr)",
      );
    }
  }
  return new TesseractJsEngine(concurrency, maxQueue, recycleAfter, lang);
}
