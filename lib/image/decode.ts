/**
 * Image intake: type and size are read from the header and checked *before* decoding
 * (a 100 kB PNG can claim 50 000 × 50 000 pixels), the file's structure is checked for
 * truncation (decoders silently return half-grey pictures), then it is decoded.
 */
import { type Canvas, createCanvas, type Image, loadImage } from "@napi-rs/canvas";
import { imageSize } from "image-size";
import { sha256Hex } from "../util/hash.ts";

export type ImageErrorCode =
  | "empty_image"
  | "unsupported_image"
  | "corrupt_image"
  | "image_too_large";

/** A rejected image. `status` is the HTTP status an API answers with. */
export class ImageError extends Error {
  override name = "ImageError";
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    readonly status: 400 | 413 | 415 | 422,
  ) {
    super(message);
  }
}

export const SUPPORTED_IMAGE_TYPES = ["png", "jpg", "webp", "gif"] as const;

/** Options of {@linkcode decodeImage}. */
export interface DecodeImageOptions {
  /** Largest width × height accepted. @default 40_000_000 */
  maxPixels?: number;
  /** Largest side accepted. @default 20_000 */
  maxSide?: number;
}

export interface DecodedImage {
  type: string;
  width: number;
  height: number;
  sha256: string;
  bytes: Uint8Array;
  image: Image;
}

/** Header-only look: type and size, or an ImageError. Cheap; never decodes pixels. */
export function probeImage(bytes: Uint8Array): { type: string; width: number; height: number } {
  if (bytes.length === 0) {
    throw new ImageError("empty_image", "Cannot read image: the body is empty", 400);
  }
  let info: { type?: string; width?: number; height?: number };
  try {
    info = imageSize(bytes);
  } catch {
    const magic = sniffType(bytes);
    if (magic) {
      throw new ImageError(
        "corrupt_image",
        `Cannot read image: the ${magic} header is truncated or corrupt`,
        422,
      );
    }
    throw new ImageError(
      "unsupported_image",
      `Cannot read image: not a supported image (expected ${
        SUPPORTED_IMAGE_TYPES.join(", ")
      }; first bytes ${hexHead(bytes)})`,
      415,
    );
  }
  const type = info.type ?? "unknown";
  if (!(SUPPORTED_IMAGE_TYPES as readonly string[]).includes(type)) {
    throw new ImageError(
      "unsupported_image",
      `Cannot read image: type '${type}' is not supported (expected ${
        SUPPORTED_IMAGE_TYPES.join(", ")
      })`,
      415,
    );
  }
  const { width = 0, height = 0 } = info;
  if (!(width > 0 && height > 0)) {
    throw new ImageError(
      "corrupt_image",
      `Cannot read image: header gives size ${width}x${height}`,
      422,
    );
  }
  return { type, width, height };
}

/** The type the first bytes announce, for the supported types. */
function sniffType(b: Uint8Array): string | null {
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b[0] === 0x89 && ascii(1, 4) === "PNG") return "png";
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpg";
  if (ascii(0, 4) === "GIF8") return "gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "webp";
  return null;
}

function hexHead(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** True when the container's structure is complete (no truncation; PNG chunk CRCs hold). */
export function isStructurallyComplete(type: string, b: Uint8Array): boolean {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (type) {
    case "png": {
      // walk the chunks: each is length(4) type(4) data crc(4); must end at IEND
      let p = 8;
      while (p + 12 <= b.length) {
        const len = dv.getUint32(p);
        if (p + 12 + len > b.length) return false;
        const kind = String.fromCharCode(b[p + 4]!, b[p + 5]!, b[p + 6]!, b[p + 7]!);
        if (crc32(b.subarray(p + 4, p + 8 + len)) !== dv.getUint32(p + 8 + len)) return false;
        p += 12 + len;
        if (kind === "IEND") return true;
      }
      return false;
    }
    case "jpg": {
      // the end-of-image marker must be present near the end (trailing padding is tolerated)
      for (let i = b.length - 2; i >= Math.max(0, b.length - 4096); i--) {
        if (b[i] === 0xff && b[i + 1] === 0xd9) return true;
      }
      return false;
    }
    case "webp":
      return b.length >= 12 && dv.getUint32(4, true) + 8 <= b.length;
    case "gif":
      return b.includes(0x3b, Math.max(0, b.length - 16));
    default:
      return true;
  }
}

/**
 * Check and decode an image.
 *
 * @example
 * ```ts
 * const img = await decodeImage(await Deno.readFile("page.png"));
 * img.width; img.sha256;
 * ```
 */
export async function decodeImage(
  bytes: Uint8Array,
  options: DecodeImageOptions = {},
): Promise<DecodedImage> {
  const { maxPixels = 40_000_000, maxSide = 20_000 } = options;
  const { type, width, height } = probeImage(bytes);
  if (width * height > maxPixels || width > maxSide || height > maxSide) {
    throw new ImageError(
      "image_too_large",
      `Cannot read image: ${width}x${height} exceeds the limit of ${maxPixels} pixels or ${maxSide} px a side (refused before decoding)`,
      413,
    );
  }
  if (!isStructurallyComplete(type, bytes)) {
    throw new ImageError(
      "corrupt_image",
      `Cannot read image: the ${type} file is truncated or corrupt`,
      422,
    );
  }
  let image: Image;
  try {
    image = await loadImage(bytes);
  } catch (e) {
    throw new ImageError(
      "corrupt_image",
      `Cannot read image: decoding the ${type} failed: ${(e as Error).message}`,
      422,
    );
  }
  if (image.width !== width || image.height !== height) {
    // EXIF orientation or a lying header: trust what was decoded, but keep the limits
    if (image.width * image.height > maxPixels) {
      throw new ImageError(
        "image_too_large",
        `Cannot read image: decoded size ${image.width}x${image.height} is over the limit`,
        413,
      );
    }
  }
  return {
    type,
    width: image.width,
    height: image.height,
    sha256: await sha256Hex(bytes),
    bytes,
    image,
  };
}

/** Draw a decoded image on a fresh canvas (white behind transparency). */
export function toCanvas(img: Image): Canvas {
  const canvas = createCanvas(img.width, img.height);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, img.width, img.height);
  ctx.drawImage(img, 0, 0);
  return canvas;
}

/** PNG bytes of an image (what the OCR engines read). */
export function toPng(img: Image): Uint8Array {
  return new Uint8Array(toCanvas(img).toBuffer("image/png"));
}
