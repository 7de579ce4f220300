/**
 * Benchmark files as evaluation suites: a parquet or JSONL file in the layouts the benchmarks
 * are published in (lmms-eval / Hugging Face datasets) read into a normalized list of items
 * `{ id, image, question, answers, metric }`, with the file's SHA-256 and the layout found.
 *
 * Layouts (told apart by their columns, or named with `layout`):
 * - `textvqa`  (lmms-lab/textvqa): `question`, `answers` [10], `ocr_tokens`/`image_classes` → `vqa`
 * - `docvqa`   (lmms-lab/DocVQA): `question`, `answers`, `questionId`, `docId`… → `anls`
 * - `infovqa`  (lmms-lab/InfoVQA): `question`, `answers`, `answer_type`/`image_url`… → `anls`
 * - `chartqa`  (lmms-lab/ChartQA `answer` + `type`; HuggingFaceM4/ChartQA `query` + `label`)
 *   → `relaxed`
 * - `ocrbench` (lmms-lab/OCRBench): `question`, `answer` (list or string), `question_type`,
 *   `dataset` → `ocrbench`, or `ocrbench_hme` for the handwritten-math rows (HME100k)
 * - `generic`: `image`, `question`, `answers` (list or string) or `answer`, `metric` per row
 *   (or the `metric` option)
 *
 * The image is a `{ bytes, path }` struct (Hugging Face's Image feature), raw bytes, or a path
 * relative to the suite file (in JSONL also base64 bytes or a `data:` URL). Everything is
 * bounded before work starts (file size, rows, image bytes, text lengths) and each image is
 * checked to decode; any bad row fails the whole read with a {@linkcode SuiteFileError}
 * naming the row, the column and the value.
 */
import { createHash } from "node:crypto";
import {
  basename,
  dirname,
  extname,
  isAbsolute,
  join,
  normalize,
  relative,
  resolve,
} from "node:path";
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from "hyparquet";
import { z } from "zod";
import { decodeImage, ImageError } from "../image/decode.ts";
import { METRIC_NAMES, type MetricName } from "../metrics/mod.ts";

export const SUITE_LAYOUTS = [
  "textvqa",
  "docvqa",
  "infovqa",
  "chartqa",
  "ocrbench",
  "generic",
] as const;
export type SuiteLayout = (typeof SUITE_LAYOUTS)[number];
export type SuiteFileFormat = "parquet" | "jsonl";

/** One evaluation item, whatever the file's layout. */
export interface SuiteItem {
  /** The row's question id (`question_id`, `questionId`, `id`…), else its row number. */
  id: string;
  /** The encoded image file (PNG, JPEG, WebP or GIF), checked to decode. */
  image: Uint8Array;
  question: string;
  /** The reference answers (≥ 1). */
  answers: string[];
  metric: MetricName;
}

export interface SuiteFile {
  /** `<file stem>@<first 12 hex of the SHA-256>`: names the suite and its exact content. */
  id: string;
  path: string;
  /** Hex SHA-256 of the file's bytes (the cache key of its scores). */
  sha256: string;
  format: SuiteFileFormat;
  layout: SuiteLayout;
  /** Rows in the file (items holds the first `limit` of them). */
  rows: number;
  items: SuiteItem[];
}

export const ReadSuiteFileOptionsSchema = z.strictObject({
  /** Layout of the rows; `auto` tells it from the columns. */
  layout: z.enum([...SUITE_LAYOUTS, "auto"]).default("auto"),
  /** Metric for every item, instead of the layout's (or the generic rows' own). */
  metric: z.enum(METRIC_NAMES).optional(),
  /** Read only the first n rows. */
  limit: z.number().int().min(1).optional(),
  /** Refuse to read more rows than this (after `limit`). */
  maxRows: z.number().int().min(1).max(1_000_000).default(100_000),
  /** Largest suite file accepted, bytes. */
  maxFileBytes: z.number().int().min(1).default(8 * 2 ** 30),
  /** Largest image accepted, bytes. */
  maxImageBytes: z.number().int().min(1).default(32 * 2 ** 20),
  /** Largest image accepted, pixels (checked from the header before decoding). */
  maxImagePixels: z.number().int().min(1).default(40_000_000),
  /** Longest question and answer accepted, characters. */
  maxTextChars: z.number().int().min(1).default(8_192),
  /** Most reference answers per item. */
  maxAnswers: z.number().int().min(1).default(100),
});
export type ReadSuiteFileOptions = z.input<typeof ReadSuiteFileOptionsSchema>;

export type SuiteFileErrorCode =
  | "unreadable_file"
  | "file_too_large"
  | "unknown_layout"
  | "missing_column"
  | "bad_value"
  | "unknown_metric"
  | "bad_image"
  | "too_many_rows";

/** A suite file that cannot be used; `row` is the 0-based row at fault when there is one. */
export class SuiteFileError extends Error {
  override name = "SuiteFileError";
  constructor(
    readonly code: SuiteFileErrorCode,
    message: string,
    readonly row?: number,
  ) {
    super(message);
  }
}

/** Which columns each layout reads, and the metric it scores with. */
const LAYOUT_METRIC: Record<Exclude<SuiteLayout, "generic" | "ocrbench">, MetricName> = {
  textvqa: "vqa",
  docvqa: "anls",
  infovqa: "anls",
  chartqa: "relaxed",
};
const ID_COLUMNS = ["question_id", "questionId", "id", "qid", "index"];
const QUESTION_COLUMNS = ["question", "query"];
const ANSWER_COLUMNS: Record<SuiteLayout, string[]> = {
  textvqa: ["answers"],
  docvqa: ["answers"],
  infovqa: ["answers"],
  chartqa: ["answer", "label", "answers"],
  ocrbench: ["answer", "answers"],
  generic: ["answers", "answer", "label"],
};
const OCRBENCH_HME_TYPE = "Handwritten Mathematical Expression Recognition";

/** The layout the columns announce, or null. */
export function detectSuiteLayout(columns: readonly string[]): SuiteLayout | null {
  const has = (c: string) => columns.includes(c);
  if (!has("image")) return null;
  if (has("metric")) return "generic";
  if (has("question_type") && (has("answer") || has("answers"))) return "ocrbench";
  if (has("answers")) {
    if (has("ocr_tokens") || has("image_classes") || has("flickr_original_url")) return "textvqa";
    if (has("answer_type") || has("image_url") || has("operation/reasoning")) return "infovqa";
    if (has("questionId") || has("docId") || has("ucsf_document_id")) return "docvqa";
  }
  if (has("label") && (has("query") || has("question"))) return "chartqa";
  if (has("answer") && has("type") && has("question")) return "chartqa";
  return null;
}

/** A file's SHA-256, streamed (suite files can be gigabytes). */
async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}

async function isParquet(path: string): Promise<boolean> {
  using f = await Deno.open(path);
  const head = new Uint8Array(4);
  const n = await f.read(head);
  return n === 4 && new TextDecoder().decode(head) === "PAR1";
}

/** Raw rows of the file with the columns present (parquet: only the columns that are read). */
interface RawTable {
  columns: string[];
  rows: number;
  read(limit: number, columns: string[]): Promise<Record<string, unknown>[]>;
}

async function parquetTable(path: string): Promise<RawTable> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  return {
    columns,
    rows: Number(metadata.num_rows),
    read: (limit, wanted) =>
      parquetReadObjects({
        file,
        metadata,
        columns: wanted.filter((c) => columns.includes(c)),
        rowStart: 0,
        rowEnd: limit,
        utf8: false, // binary image bytes stay bytes; UTF8-annotated columns are still strings
      }) as Promise<Record<string, unknown>[]>,
  };
}

/** JSONL is read whole, as one string: bounded well below V8's string limit. */
const MAX_JSONL_BYTES = 512 * 2 ** 20;

async function jsonlTable(path: string, size: number): Promise<RawTable> {
  if (size > MAX_JSONL_BYTES) {
    throw new SuiteFileError(
      "file_too_large",
      `Cannot read suite file ${path}: ${size} bytes of JSONL is over the limit of ${MAX_JSONL_BYTES} (use parquet)`,
    );
  }
  const text = await Deno.readTextFile(path);
  const rows: Record<string, unknown>[] = [];
  const columns = new Set<string>();
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new SuiteFileError(
        "unreadable_file",
        `Cannot read suite file ${path}: line ${i + 1} is not JSON (${(e as Error).message})`,
        rows.length,
      );
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new SuiteFileError(
        "unreadable_file",
        `Cannot read suite file ${path}: line ${i + 1} is not a JSON object`,
        rows.length,
      );
    }
    for (const k of Object.keys(v)) columns.add(k);
    rows.push(v as Record<string, unknown>);
  });
  return {
    columns: [...columns],
    rows: rows.length,
    read: (limit) => Promise.resolve(rows.slice(0, limit)),
  };
}

function show(v: unknown): string {
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  const s = typeof v === "string"
    ? JSON.stringify(v)
    : JSON.stringify(v, (_, x) => (typeof x === "bigint" ? String(x) : x));
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + "…" : s;
}

const StringOrList = z.union([z.string(), z.array(z.string()).min(1)]);

/**
 * Read a benchmark file as an evaluation suite.
 *
 * @example
 * ```ts
 * const suite = await readSuiteFile("bench/textvqa_val.parquet", { limit: 500 });
 * suite.layout; // "textvqa"
 * suite.items[0]; // { id, image, question, answers: [10 strings], metric: "vqa" }
 * ```
 */
export async function readSuiteFile(
  path: string,
  options: ReadSuiteFileOptions = {},
): Promise<SuiteFile> {
  const o = ReadSuiteFileOptionsSchema.parse(options);
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch (e) {
    throw new SuiteFileError(
      "unreadable_file",
      `Cannot read suite file ${path}: ${(e as Error).message}`,
    );
  }
  if (size > o.maxFileBytes) {
    throw new SuiteFileError(
      "file_too_large",
      `Cannot read suite file ${path}: ${size} bytes is over the limit of ${o.maxFileBytes}`,
    );
  }
  const ext = extname(path).toLowerCase();
  const format: SuiteFileFormat = ext === ".parquet" || await isParquet(path) ? "parquet" : "jsonl";
  if (format === "jsonl" && ext !== ".jsonl" && ext !== ".json" && ext !== ".ndjson") {
    throw new SuiteFileError(
      "unreadable_file",
      `Cannot read suite file ${path}: expected a .parquet or .jsonl file, got '${
        ext || "no extension"
      }'`,
    );
  }
  let table: RawTable;
  try {
    table = format === "parquet" ? await parquetTable(path) : await jsonlTable(path, size);
  } catch (e) {
    if (e instanceof SuiteFileError) throw e;
    throw new SuiteFileError(
      "unreadable_file",
      `Cannot read suite file ${path} as ${format}: ${(e as Error).message}`,
    );
  }
  const layout = o.layout === "auto" ? detectSuiteLayout(table.columns) : o.layout;
  if (!layout) {
    throw new SuiteFileError(
      "unknown_layout",
      `Cannot read suite file ${path}: its columns [${
        table.columns.join(", ")
      }] match no known layout ` +
        `(${SUITE_LAYOUTS.join(", ")}); name one with 'layout'`,
    );
  }
  const need = (what: string, candidates: string[]) => {
    const c = candidates.find((x) => table.columns.includes(x));
    if (!c) {
      throw new SuiteFileError(
        "missing_column",
        `Cannot read suite file ${path} (${layout}): no ${what} column (expected ${
          candidates.map((x) => `'${x}'`).join(" or ")
        }; it has [${table.columns.join(", ")}])`,
      );
    }
    return c;
  };
  const imageCol = need("image", ["image"]);
  const questionCol = need("question", QUESTION_COLUMNS);
  const answerCol = need("answer", ANSWER_COLUMNS[layout]);
  const metricCol = layout === "generic" && !o.metric ? need("metric", ["metric"]) : undefined;
  const idCol = ID_COLUMNS.find((c) => table.columns.includes(c));
  const extra = layout === "ocrbench" ? ["question_type", "dataset"] : [];
  const n = Math.min(table.rows, o.limit ?? Infinity);
  if (n > o.maxRows) {
    throw new SuiteFileError(
      "too_many_rows",
      `Cannot read suite file ${path}: ${n} rows to read is over the limit of ${o.maxRows} (pass a smaller 'limit')`,
    );
  }
  let raw: Record<string, unknown>[];
  try {
    raw = await table.read(n, [
      imageCol,
      questionCol,
      answerCol,
      ...(metricCol ? [metricCol] : []),
      ...(idCol ? [idCol] : []),
      ...extra,
    ]);
  } catch (e) {
    throw new SuiteFileError(
      "unreadable_file",
      `Cannot read suite file ${path} as ${format}: ${(e as Error).message}`,
    );
  }

  const dir = dirname(resolve(path));
  const items: SuiteItem[] = [];
  for (let r = 0; r < raw.length; r++) {
    const row = raw[r]!;
    const at = (col: string) =>
      `row ${r}${
        idCol && row[idCol] != null ? ` (${idCol} ${show(row[idCol])})` : ""
      }, column '${col}'`;
    const fail = (code: SuiteFileErrorCode, col: string, msg: string): never => {
      throw new SuiteFileError(code, `Cannot read suite file ${path}: ${at(col)}: ${msg}`, r);
    };
    const text = (col: string, v: unknown): string => {
      if (typeof v !== "string") fail("bad_value", col, `expected a string, got ${show(v)}`);
      const s = v as string;
      if (s.length > o.maxTextChars) {
        fail("bad_value", col, `${s.length} characters is over the limit of ${o.maxTextChars}`);
      }
      return s;
    };
    const question = text(questionCol, row[questionCol]);
    const parsedAnswers = StringOrList.safeParse(row[answerCol]);
    if (!parsedAnswers.success) {
      fail(
        "bad_value",
        answerCol,
        `expected a string or a non-empty list of strings, got ${show(row[answerCol])}`,
      );
    }
    const answers = typeof parsedAnswers.data === "string"
      ? [parsedAnswers.data]
      : parsedAnswers.data!;
    if (answers.length > o.maxAnswers) {
      fail(
        "bad_value",
        answerCol,
        `${answers.length} answers is over the limit of ${o.maxAnswers}`,
      );
    }
    answers.forEach((a) => text(answerCol, a));
    let metric: MetricName;
    if (o.metric) metric = o.metric;
    else if (metricCol) {
      const m = row[metricCol];
      if (typeof m !== "string" || !(METRIC_NAMES as readonly string[]).includes(m)) {
        metric = fail(
          "unknown_metric",
          metricCol,
          `unknown metric ${show(m)} (expected one of ${METRIC_NAMES.join(", ")})`,
        );
      } else metric = m as MetricName;
    } else if (layout === "ocrbench") {
      metric = row.dataset === "HME100k" || row.question_type === OCRBENCH_HME_TYPE
        ? "ocrbench_hme"
        : "ocrbench";
    } else metric = LAYOUT_METRIC[layout as keyof typeof LAYOUT_METRIC];
    const image = await imageBytes(
      row[imageCol],
      format,
      dir,
      o.maxImageBytes,
      (msg) => fail("bad_image", imageCol, msg),
    );
    try {
      await decodeImage(image, { maxPixels: o.maxImagePixels });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      fail("bad_image", imageCol, e.message);
    }
    const idValue = idCol ? row[idCol] : undefined;
    items.push({
      id: idValue == null
        ? String(r)
        : typeof idValue === "string" || typeof idValue === "number" || typeof idValue === "bigint"
        ? String(idValue)
        : show(idValue),
      image,
      question,
      answers,
      metric,
    });
  }
  const sha256 = await fileSha256(path);
  const stem = basename(path, extname(path));
  return {
    id: `${stem}@${sha256.slice(0, 12)}`,
    path,
    sha256,
    format,
    layout,
    rows: table.rows,
    items,
  };
}

/** The image's bytes from any of the forms a row may hold it in. */
async function imageBytes(
  v: unknown,
  format: SuiteFileFormat,
  dir: string,
  maxBytes: number,
  fail: (msg: string) => never,
): Promise<Uint8Array> {
  const bounded = (b: Uint8Array) => {
    if (b.length > maxBytes) fail(`${b.length} bytes is over the limit of ${maxBytes}`);
    return b;
  };
  if (v instanceof Uint8Array) return bounded(v);
  if (typeof v === "string") {
    if (v.startsWith("data:")) {
      const m = /^data:[^,]*;base64,/.exec(v);
      if (!m) fail("a data: URL must be base64");
      return bounded(base64(v.slice(m![0].length), fail));
    }
    return bounded(await readRelative(v, dir, maxBytes, fail));
  }
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const { bytes, path } = v as { bytes?: unknown; path?: unknown };
    if (bytes instanceof Uint8Array) return bounded(bytes);
    if (typeof bytes === "string" && format === "jsonl") return bounded(base64(bytes, fail));
    if (Array.isArray(bytes) && bytes.every((x) => Number.isInteger(x) && x >= 0 && x < 256)) {
      if (bytes.length > maxBytes) fail(`${bytes.length} bytes is over the limit of ${maxBytes}`);
      return new Uint8Array(bytes as number[]);
    }
    if (bytes == null && typeof path === "string") {
      return bounded(await readRelative(path, dir, maxBytes, fail));
    }
  }
  return fail(`expected image bytes, a {bytes, path} struct or a relative path, got ${show(v)}`);
}

function base64(s: string, fail: (msg: string) => never): Uint8Array {
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    return fail(`not valid base64 (${show(s)})`);
  }
}

/** A file inside the suite file's folder (absolute paths and `..` out of it are refused). */
async function readRelative(
  p: string,
  dir: string,
  maxBytes: number,
  fail: (msg: string) => never,
): Promise<Uint8Array> {
  if (p === "" || isAbsolute(p)) fail(`image path ${show(p)} must be relative to the suite file`);
  const full = join(dir, normalize(p));
  const rel = relative(dir, full);
  if (rel.startsWith("..") || isAbsolute(rel)) {
    fail(`image path ${show(p)} leaves the suite file's folder`);
  }
  let size: number;
  try {
    size = (await Deno.stat(full)).size;
  } catch (e) {
    return fail(`image file ${show(p)} cannot be read: ${(e as Error).message}`);
  }
  if (size > maxBytes) {
    fail(`image file ${show(p)} has ${size} bytes, over the limit of ${maxBytes}`);
  }
  return await Deno.readFile(full);
}
