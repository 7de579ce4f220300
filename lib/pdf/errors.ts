/**
 * The one error class of PDF reading. It carries an HTTP status so the edges answer 4xx for
 * bad uploads (encrypted, corrupt, over the page cap) instead of 500.
 */

export type PdfErrorCode =
  | "not_pdf"
  | "encrypted"
  | "corrupt_pdf"
  | "too_many_pages"
  | "page_out_of_range"
  | "page_too_large"
  | "output_too_large"
  | "engine_unavailable";

const STATUS: Record<PdfErrorCode, number> = {
  not_pdf: 415,
  encrypted: 422,
  corrupt_pdf: 422,
  too_many_pages: 413,
  page_out_of_range: 422,
  page_too_large: 413,
  output_too_large: 413,
  // the server was asked for an engine it does not have: not the client's fault
  engine_unavailable: 501,
};

/** A PDF that cannot be read as asked (corrupt, encrypted, too big, engine missing). */
export class PdfError extends Error {
  override name = "PdfError";
  readonly status: number;
  constructor(readonly code: PdfErrorCode, message: string) {
    super(message);
    this.status = STATUS[code];
  }
}

/** True when the bytes start with the PDF magic `%PDF`. */
export function isPdfBytes(bytes: Uint8Array): boolean {
  return bytes[0] === 0x25 && bytes[1] === 0x50 && bytes[2] === 0x44 && bytes[3] === 0x46;
}
