/**
 * safetensors files (Hugging Face's weight format): an 8-byte little-endian header length, a JSON
 * header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {…}}`, then the raw
 * little-endian tensor bytes. Reading goes tensor by tensor through file offsets (a checkpoint
 * is never read whole); floating dtypes (F64, F32, F16, BF16) come back as Float32Array, integer
 * dtypes as Int32Array. Sharded checkpoints (`model.safetensors.index.json`) are in
 * `checkpoint.ts`.
 */
import { z } from "zod";

/** The dtypes this reader understands, with their byte widths. */
export const DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;
export type Dtype = keyof typeof DTYPE_BYTES;
const DtypeSchema = z.enum(Object.keys(DTYPE_BYTES) as [Dtype, ...Dtype[]]);

/** Dtypes this writer stores (floating only: weights). */
export type WriteDtype = "F32" | "F16" | "BF16";

/** A header larger than this is refused before it is read (real checkpoints: < 2 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const TensorEntrySchema = z.strictObject({
  dtype: DtypeSchema,
  shape: z.array(z.number().int().min(0)).max(16),
  data_offsets: z.tuple([z.number().int().min(0), z.number().int().min(0)]),
});

/** Where one tensor lives in its file. */
export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  byteLength: number;
}

/** A tensor read from a file: floats as f32, integers as i32. */
export interface LoadedTensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Raised when a file is not a valid safetensors file; the message names the file and the fault. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function readExactly(file: Deno.FsFile, at: number, n: number, path: string) {
  const buf = new Uint8Array(n);
  await file.seek(at, Deno.SeekMode.Start);
  let got = 0;
  while (got < n) {
    const k = await file.read(buf.subarray(got));
    if (k === null) {
      throw new SafetensorsError(
        `Cannot read '${path}': file ends at byte ${at + got} of ${at + n}`,
      );
    }
    got += k;
  }
  return buf;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// f16 → f32 by table: 65 536 entries cover every half-precision bit pattern
let halfTable: Float32Array | null = null;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24; // subnormal
    else if (e === 31) t[h] = m ? NaN : s * Infinity;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  halfTable = t;
  return t;
}

/** Decode raw little-endian bytes of `dtype` into f32 (floats) or i32 (integers). */
export function decodeTensorBytes(
  bytes: Uint8Array,
  dtype: Dtype,
  count: number,
  what = "tensor",
): Float32Array | Int32Array {
  if (bytes.byteLength < count * DTYPE_BYTES[dtype]) {
    throw new RangeError(`Cannot decode ${what}: ${bytes.byteLength} bytes for ${count} ${dtype}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const aligned = (w: number) => LITTLE_ENDIAN_HOST && bytes.byteOffset % w === 0;
  switch (dtype) {
    case "F32": {
      if (aligned(4)) return new Float32Array(bytes.buffer, bytes.byteOffset, count).slice();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case "F64": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    case "F16": {
      const table = halfToFloatTable();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(2 * i, true)]!;
      return out;
    }
    case "BF16": {
      // bf16 is the top half of an f32
      const bits = new Uint32Array(count);
      if (aligned(2)) {
        const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
        for (let i = 0; i < count; i++) bits[i] = src[i]! << 16;
      } else {
        for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      }
      return new Float32Array(bits.buffer);
    }
    case "I64": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) {
          throw new RangeError(
            `Cannot load ${what}: I64 value ${v} at index ${i} does not fit in i32`,
          );
        }
        out[i] = Number(v);
      }
      return out;
    }
    case "I32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    case "I16": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(2 * i, true);
      return out;
    }
    case "I8": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt8(i);
      return out;
    }
    case "U8":
    case "BOOL": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = bytes[i]!;
      return out;
    }
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** f32 → bf16 bits, round to nearest even (as torch does); NaN stays NaN. */
export function floatToBf16(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 → f16 bits, round to nearest even; overflow → ±Inf. */
export function floatToHalf(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** Encode f32 values as little-endian bytes of `dtype`. */
export function encodeTensorBytes(data: Float32Array, dtype: WriteDtype): Uint8Array {
  const width = DTYPE_BYTES[dtype];
  const out = new Uint8Array(data.length * width);
  const view = new DataView(out.buffer);
  if (dtype === "F32" && LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } else if (dtype === "F32") {
    for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i]!, true);
  } else {
    const enc = dtype === "BF16" ? floatToBf16 : floatToHalf;
    for (let i = 0; i < data.length; i++) view.setUint16(2 * i, enc(data[i]!), true);
  }
  return out;
}

/**
 * One open safetensors file. Opening reads only the header; `read(name)` reads one tensor's bytes.
 *
 * @example
 * ```ts
 * const f = await SafetensorsFile.open("model.safetensors");
 * try {
 *   const t = await f.read("lm_head.weight"); // { dtype, shape, data: Float32Array }
 * } finally {
 *   f.close();
 * }
 * ```
 */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly file: Deno.FsFile,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  /** Open a file and validate its header against the file's size. */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      if (size < 8) throw new SafetensorsError(`Cannot read '${path}': ${size} bytes is too short`);
      const lenBytes = await readExactly(file, 0, 8, path);
      const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (headerLen > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
        throw new SafetensorsError(
          `Cannot read '${path}': header length ${headerLen} exceeds the file (${size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`,
        );
      }
      const n = Number(headerLen);
      const headerText = new TextDecoder("utf-8", { fatal: true }).decode(
        await readExactly(file, 8, n, path),
      );
      let raw: unknown;
      try {
        raw = JSON.parse(headerText);
      } catch (e) {
        throw new SafetensorsError(`Cannot read '${path}': header is not JSON (${e})`);
      }
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw new SafetensorsError(`Cannot read '${path}': header is not a JSON object`);
      }
      const dataStart = 8 + n;
      const dataBytes = size - dataStart;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
        if (name === "__metadata__") {
          const m = z.record(z.string(), z.string()).safeParse(entry);
          if (!m.success) {
            throw new SafetensorsError(
              `Cannot read '${path}': __metadata__ must map strings to strings`,
            );
          }
          metadata = m.data;
          continue;
        }
        const parsed = TensorEntrySchema.safeParse(entry);
        if (!parsed.success) {
          throw new SafetensorsError(
            `Cannot read '${path}': tensor '${name}' has a bad header entry (${parsed.error.message})`,
          );
        }
        const { dtype, shape, data_offsets: [begin, end] } = parsed.data;
        const expected = product(shape) * DTYPE_BYTES[dtype];
        if (end < begin || end - begin !== expected || end > dataBytes) {
          throw new SafetensorsError(
            `Cannot read '${path}': tensor '${name}' (${dtype} ${
              JSON.stringify(shape)
            }) has offsets [${begin}, ${end}], expected ${expected} bytes inside ${dataBytes}`,
          );
        }
        tensors.set(name, { name, dtype, shape, offset: dataStart + begin, byteLength: expected });
      }
      // the format forbids overlapping tensors; holes would mean a corrupt writer
      const spans = [...tensors.values()].sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < spans.length; i++) {
        const prev = spans[i - 1]!;
        const cur = spans[i]!;
        if (cur.offset < prev.offset + prev.byteLength) {
          throw new SafetensorsError(
            `Cannot read '${path}': tensors '${prev.name}' and '${cur.name}' overlap`,
          );
        }
      }
      return new SafetensorsFile(path, file, tensors, metadata);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.tensors.values()].sort((a, b) => a.offset - b.offset).map((t) => t.name);
  }

  /** Read one tensor (floats → f32, integers → i32). */
  async read(name: string): Promise<LoadedTensor> {
    const info = this.tensors.get(name);
    if (!info) throw new RangeError(`Cannot read tensor '${name}': not in '${this.path}'`);
    const bytes = await readExactly(this.file, info.offset, info.byteLength, this.path);
    return {
      dtype: info.dtype,
      shape: info.shape,
      data: decodeTensorBytes(
        bytes,
        info.dtype,
        product(info.shape),
        `'${name}' of '${this.path}'`,
      ),
    };
  }

  close(): void {
    this.file.close();
  }
}

/** A tensor to write: f32 values and the dtype to store them as. */
export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  /** @default "F32" */
  dtype?: WriteDtype;
}

/** Header bytes for tensors laid out in the given order (padded with spaces to 8 bytes). */
function headerFor(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string> | undefined,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let at = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) {
      throw new RangeError(`Cannot write safetensors: duplicate tensor '${t.name}'`);
    }
    seen.add(t.name);
    if (product(t.shape) !== t.data.length) {
      throw new RangeError(
        `Cannot write tensor '${t.name}': shape ${JSON.stringify(t.shape)} holds ${
          product(t.shape)
        } values, data has ${t.data.length}`,
      );
    }
    const n = t.data.length * DTYPE_BYTES[t.dtype ?? "F32"];
    header[t.name] = { dtype: t.dtype ?? "F32", shape: t.shape, data_offsets: [at, at + n] };
    at += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Write tensors to one safetensors file, one tensor at a time, atomically (a temporary file
 * renamed into place: a killed writer leaves no half file under `path`).
 *
 * @example
 * ```ts
 * await writeSafetensors("out/a.safetensors", [{ name: "w", shape: [2], data: new Float32Array([1, 2]) }]);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const header = headerFor(tensors, metadata);
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const write = async (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += await file.write(b.subarray(done));
    };
    await write(header);
    for (const t of tensors) await write(encodeTensorBytes(t.data, t.dtype ?? "F32"));
    await file.sync();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  await Deno.rename(tmp, path);
}
