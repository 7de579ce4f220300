/**
 * MuPDF (the npm package `mupdf`, WebAssembly): page images and the text layer's characters
 * with their quads, grouped into words. Needs no system library. The module (10 MB of wasm) is
 * loaded on first use, not when this file is imported.
 */
import type { WordBox } from "../labels/word_box.ts";
import { PdfError } from "./errors.ts";

type Mupdf = typeof import("mupdf");
type MupdfDocument = InstanceType<Mupdf["Document"]>;
type MupdfPage = ReturnType<MupdfDocument["loadPage"]>;

export const MUPDF_ENGINE = "mupdf@1.28.1";

let loaded: Promise<Mupdf> | undefined;
/** Warnings MuPDF logs while a document is read: counted, the first few kept. */
let sink: { count: number; first: string[] } | null = null;

function loadMupdf(): Promise<Mupdf> {
  return loaded ??= import("mupdf").then((m) => {
    // MuPDF prints warnings for broken files (one per bad object): a crafted file can make
    // millions. Route them to the current document's capped sink instead of the console.
    m.setLog((message: string) => {
      if (!sink) return;
      sink.count++;
      if (sink.first.length < 5) sink.first.push(message.slice(0, 200));
    });
    return m;
  });
}

/** An open document; all calls are synchronous inside MuPDF. Call {@linkcode close}. */
export class MupdfDoc {
  readonly warnings = { count: 0, first: [] as string[] };
  private constructor(private readonly m: Mupdf, private readonly doc: MupdfDocument) {}

  /** Open PDF bytes; throws PdfError for encrypted or unreadable files. */
  static async open(bytes: Uint8Array): Promise<MupdfDoc> {
    const m = await loadMupdf();
    const warnings = { count: 0, first: [] as string[] };
    sink = warnings;
    let doc: MupdfDocument;
    try {
      doc = m.Document.openDocument(bytes, "application/pdf");
    } catch (e) {
      throw new PdfError(
        "corrupt_pdf",
        `Cannot read PDF: not a readable PDF (${String((e as Error)?.message ?? e).slice(0, 200)})`,
      );
    } finally {
      sink = null;
    }
    const d = new MupdfDoc(m, doc);
    Object.assign(d.warnings, warnings);
    if (doc.needsPassword()) {
      d.close();
      throw new PdfError("encrypted", "Cannot read PDF: it is encrypted with a password");
    }
    return d;
  }

  #run<T>(what: string, f: () => T): T {
    sink = this.warnings;
    try {
      return f();
    } catch (e) {
      if (e instanceof PdfError) throw e;
      throw new PdfError(
        "corrupt_pdf",
        `Cannot read PDF: ${what} failed (${String((e as Error)?.message ?? e).slice(0, 200)})`,
      );
    } finally {
      sink = null;
    }
  }

  get pageCount(): number {
    return this.#run("counting pages", () => this.doc.countPages());
  }

  #page<T>(page: number, what: string, f: (p: MupdfPage) => T): T {
    return this.#run(`${what} of page ${page}`, () => {
      const p = this.doc.loadPage(page - 1);
      try {
        return f(p);
      } finally {
        p.destroy();
      }
    });
  }

  /** Page size in points (1/72 in). */
  pageSize(page: number): { width: number; height: number } {
    return this.#page(page, "reading the size", (p) => {
      const [x0, y0, x1, y1] = p.getBounds();
      return { width: x1 - x0, height: y1 - y0 };
    });
  }

  /** PNG of a page at `dpi` (RGB, no alpha, annotations drawn). */
  renderPng(page: number, dpi: number): { png: Uint8Array; width: number; height: number } {
    return this.#page(page, "rendering", (p) => {
      const s = dpi / 72;
      const pix = p.toPixmap(this.m.Matrix.scale(s, s), this.m.ColorSpace.DeviceRGB, false, true);
      try {
        return { png: pix.asPNG(), width: pix.getWidth(), height: pix.getHeight() };
      } finally {
        pix.destroy();
      }
    });
  }

  /**
   * Words of the text layer in pixels of the page image at `dpi`: characters of one line
   * joined until whitespace (MuPDF inserts a space where the glyphs leave a word-sized gap).
   */
  words(page: number, dpi: number): WordBox[] {
    return this.#page(page, "reading the text", (p) => {
      const s = dpi / 72;
      const [bx, by] = p.getBounds();
      const out: WordBox[] = [];
      let text = "";
      let box = [0, 0, 0, 0];
      const flush = () => {
        if (text && box[2]! > box[0]! && box[3]! > box[1]!) {
          const px = [
            (box[0]! - bx) * s,
            (box[1]! - by) * s,
            (box[2]! - bx) * s,
            (box[3]! - by) * s,
          ].map((v) => Math.round(v * 100) / 100) as WordBox["box"];
          out.push({ text, box: px, confidence: 100 });
        }
        text = "";
      };
      const st = p.toStructuredText("preserve-whitespace");
      try {
        st.walk({
          beginLine: flush,
          endLine: flush,
          onChar(c, _origin, _font, _size, q) {
            if (/^\s*$/u.test(c)) return flush();
            const x0 = Math.min(q[0], q[2], q[4], q[6]);
            const x1 = Math.max(q[0], q[2], q[4], q[6]);
            const y0 = Math.min(q[1], q[3], q[5], q[7]);
            const y1 = Math.max(q[1], q[3], q[5], q[7]);
            if (!text) box = [x0, y0, x1, y1];
            else {
              box = [
                Math.min(box[0]!, x0),
                Math.min(box[1]!, y0),
                Math.max(box[2]!, x1),
                Math.max(box[3]!, y1),
              ];
            }
            text += c;
          },
        });
      } finally {
        st.destroy();
      }
      flush();
      return out;
    });
  }

  close(): void {
    this.doc.destroy();
  }
}
