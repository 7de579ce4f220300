import { Buffer } from "node:buffer";

/** Raised for text that is not base64. */
export class Base64Error extends Error {
  override name = "Base64Error";
}

/** Strict base64 (data-URL prefix allowed) → bytes. */
export function decodeBase64(text: string): Uint8Array {
  const body = text.replace(/^data:[^;,]*;base64,/, "").replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 === 1) {
    throw new Base64Error(
      "Cannot decode base64: the text contains characters outside the base64 alphabet",
    );
  }
  return new Uint8Array(Buffer.from(body, "base64"));
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}
