/**
 * Poppler's `pdftoppm` / `pdftotext -bbox` (apt poppler-utils), used only when asked for:
 * a reference for the default MuPDF engine. Output is streamed and capped.
 */
import type { WordBox } from "../labels/word_box.ts";
import { PdfError } from "./errors.ts";
import { runCapped } from "./subprocess.ts";

/** Poppler's version (from `pdftotext -v`), or null when it is not installed. */
export async function popplerVersion(): Promise<string | null> {
  try {
    const out = await runCapped("pdftotext", ["-v"], { maxStdout: 1 << 16 });
    const text = new TextDecoder().decode(out.stdout) + out.stderr;
    return text.match(/pdftotext version ([\d.]+)/)?.[1] ?? "unknown";
  } catch {
    return null;
  }
}

async function run(cmd: string, args: string[], ignoreStdout = false): Promise<Uint8Array> {
  let out;
  try {
    out = await runCapped(cmd, args, { ignoreStdout, maxStdout: 256 << 20 });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PdfError(
        "engine_unavailable",
        `Cannot read PDF: engine 'poppler' needs '${cmd}' (apt-get install poppler-utils)`,
      );
    }
    throw e;
  }
  if (out.stdoutOverflow) {
    throw new PdfError("output_too_large", `Cannot read PDF: ${cmd} printed over 256 MiB`);
  }
  if (!out.success) {
    throw new PdfError(
      "corrupt_pdf",
      `Cannot read PDF: ${cmd} failed (exit ${out.code}, ${out.stderrLines} lines on stderr): ${
        out.stderr.trim().slice(0, 300)
      }`,
    );
  }
  return out.stdout;
}

const decodeEntities = (s: string) =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");

/** Parse `pdftotext -bbox` XHTML into pages of words in PDF points. */
export function parsePdftotextBbox(
  xhtml: string,
): Array<{ width: number; height: number; words: WordBox[] }> {
  const pages: Array<{ width: number; height: number; words: WordBox[] }> = [];
  const pageRe = /<page width="([\d.]+)" height="([\d.]+)">([\s\S]*?)<\/page>/g;
  const wordRe =
    /<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([\s\S]*?)<\/word>/g;
  for (const pm of xhtml.matchAll(pageRe)) {
    const words: WordBox[] = [];
    for (const wm of pm[3]!.matchAll(wordRe)) {
      const [x0, y0, x1, y1] = [wm[1], wm[2], wm[3], wm[4]].map(Number) as [
        number,
        number,
        number,
        number,
      ];
      const text = decodeEntities(wm[5]!).trim();
      if (text && x1 > x0 && y1 > y0) words.push({ text, box: [x0, y0, x1, y1], confidence: 100 });
    }
    pages.push({ width: Number(pm[1]), height: Number(pm[2]), words });
  }
  return pages;
}

/** Words of pages `first..last` (1-based) in pixels at `dpi`. */
export async function popplerWords(
  path: string,
  first: number,
  last: number,
  dpi: number,
): Promise<WordBox[][]> {
  const xhtml = new TextDecoder().decode(
    await run("pdftotext", ["-bbox", "-f", String(first), "-l", String(last), path, "-"]),
  );
  const layout = parsePdftotextBbox(xhtml);
  if (layout.length !== last - first + 1) {
    throw new PdfError(
      "corrupt_pdf",
      `Cannot read PDF: pdftotext gave ${layout.length} pages for pages ${first}-${last}`,
    );
  }
  const s = dpi / 72;
  return layout.map((p) =>
    p.words.map((w) => ({
      ...w,
      box: w.box.map((v) => Math.round(v * s * 100) / 100) as WordBox["box"],
    }))
  );
}

/** PNGs of pages `first..last` at `dpi`. */
export async function popplerPngs(
  path: string,
  first: number,
  last: number,
  dpi: number,
): Promise<Uint8Array[]> {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-pdf-" });
  try {
    await run(
      "pdftoppm",
      ["-r", String(dpi), "-png", "-f", String(first), "-l", String(last), path, `${dir}/p`],
      true,
    );
    const files: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".png")) files.push(e.name);
    files.sort((a, b) => Number(a.match(/(\d+)\.png$/)![1]) - Number(b.match(/(\d+)\.png$/)![1]));
    if (files.length !== last - first + 1) {
      throw new PdfError(
        "corrupt_pdf",
        `Cannot read PDF: pdftoppm gave ${files.length} images for pages ${first}-${last}`,
      );
    }
    return await Promise.all(files.map((f) => Deno.readFile(`${dir}/${f}`)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
