/**
 * The synthetic document generator: layouts (text lines, paragraphs, key–value forms, tables,
 * bar charts, scene text), fonts from a catalogue split into training and held-out sets,
 * augmentations that move the word boxes with the pixels, and question–answer pairs whose
 * answers are words in the image. Deterministic from (suite, index).
 */
import { type Canvas, createCanvas, loadImage, type SKRSContext2D } from "@napi-rs/canvas";
import type { WordBox } from "../labels/mod.ts";
import { ensureFonts, HELD_OUT_FONTS, TRAIN_FONTS } from "../render/fonts.ts";
import { inkBox } from "../render/page.ts";
import { WORDS } from "../render/words.ts";
import { Rng } from "../util/rng.ts";

export const GENERATOR_VERSION = 4; // 2: keystone perspective; 3: tone/noise on half the mild samples; 4: seeded shuffles (items independent of the process history)

export type Layout = "lines" | "paragraph" | "form" | "table" | "chart" | "scene";
export type Metric = "em" | "anls" | "vqa" | "relaxed";

export interface Augment {
  /** Max absolute rotation in degrees. */
  rotate: number;
  /** Max keystone (perspective about a horizontal axis): rows scale by 1 ± k from top to bottom. */
  perspective: number;
  /** Scale range around 1 (e.g. 0.05 → [0.95, 1.05]). */
  scale: number;
  /** Max Gaussian blur radius in px (scaled by image size / 448). */
  blur: number;
  /** Max pixel noise standard deviation (0–255). */
  noise: number;
  /** JPEG quality range [min, max]; null: no JPEG. */
  jpeg: [number, number] | null;
  /** Probability that a sample goes through JPEG. */
  jpegP: number;
  /** Probability that a sample gets tone and noise (a pass over every pixel). */
  pixelP: number;
  /** Max contrast/brightness change (fraction). */
  tone: number;
}

export interface SuiteSpec {
  id: string;
  /** in-domain or out-of-domain */
  domain: "train" | "in" | "out";
  layouts: Layout[];
  fonts: readonly string[];
  /** Font size range as a fraction of the image side. */
  fontSize: [number, number];
  augment: Augment;
  metric: Metric;
  seed: number;
  /** Default item count. */
  n: number;
}

const MILD: Augment = {
  rotate: 2,
  perspective: 0.04,
  scale: 0.04,
  blur: 0.4,
  noise: 6,
  jpeg: [70, 95],
  jpegP: 0.3,
  pixelP: 0.5,
  tone: 0.1,
};
const STRONG: Augment = {
  rotate: 7,
  perspective: 0.12,
  scale: 0.08,
  blur: 1.4,
  noise: 22,
  jpeg: [25, 45],
  jpegP: 1,
  pixelP: 1,
  tone: 0.3,
};

/** The suites: the training distribution and seven benchmarks (3 in-domain, 4 out-of-domain). */
export const SUITES: Record<string, SuiteSpec> = {
  train: {
    id: "dvsft/train@4",
    domain: "train",
    layouts: ["lines", "paragraph", "form", "table", "scene"],
    fonts: TRAIN_FONTS,
    fontSize: [0.06, 0.085],
    augment: MILD,
    metric: "anls",
    seed: 1,
    n: 20000,
  },
  "text-reading": {
    id: "dvsft/text-reading@4",
    domain: "in",
    layouts: ["lines"],
    fonts: TRAIN_FONTS,
    fontSize: [0.06, 0.085],
    augment: MILD,
    metric: "anls",
    seed: 101,
    n: 500,
  },
  "doc-kv": {
    id: "dvsft/doc-kv@4",
    domain: "in",
    layouts: ["form"],
    fonts: TRAIN_FONTS,
    fontSize: [0.06, 0.085],
    augment: MILD,
    metric: "em",
    seed: 102,
    n: 500,
  },
  "table-lookup": {
    id: "dvsft/table-lookup@4",
    domain: "in",
    layouts: ["table"],
    fonts: TRAIN_FONTS,
    fontSize: [0.06, 0.085],
    augment: MILD,
    metric: "em",
    seed: 103,
    n: 500,
  },
  "heldout-fonts": {
    id: "dvsft/heldout-fonts@4",
    domain: "out",
    layouts: ["lines", "form", "table"],
    fonts: HELD_OUT_FONTS,
    fontSize: [0.06, 0.085],
    augment: MILD,
    metric: "anls",
    seed: 201,
    n: 500,
  },
  degraded: {
    id: "dvsft/degraded@4",
    domain: "out",
    layouts: ["lines", "form"],
    fonts: TRAIN_FONTS,
    fontSize: [0.06, 0.085],
    augment: STRONG,
    metric: "anls",
    seed: 202,
    n: 500,
  },
  charts: {
    id: "dvsft/charts@4",
    domain: "out",
    layouts: ["chart"],
    fonts: TRAIN_FONTS,
    fontSize: [0.05, 0.065],
    augment: MILD,
    metric: "relaxed",
    seed: 203,
    n: 500,
  },
  "dense-text": {
    id: "dvsft/dense-text@4",
    domain: "out",
    layouts: ["paragraph"],
    fonts: TRAIN_FONTS,
    fontSize: [0.04, 0.05],
    augment: MILD,
    metric: "anls",
    seed: 204,
    n: 500,
  },
};
export const BENCHMARK_SUITES = Object.keys(SUITES).filter((k) => k !== "train");

export interface QA {
  question: string;
  answer: string;
  kind: string;
}

export interface GeneratedSample {
  suite: string;
  index: number;
  layout: Layout;
  font: string;
  width: number;
  height: number;
  canvas: Canvas;
  words: WordBox[];
  qa: QA[];
}

const FIRST = [
  "Anna",
  "Ben",
  "Clara",
  "David",
  "Emma",
  "Felix",
  "Grace",
  "Hugo",
  "Iris",
  "Jonas",
  "Lena",
  "Marco",
  "Nina",
  "Oscar",
  "Paula",
  "Rosa",
];
const LAST = [
  "Berg",
  "Costa",
  "Dahl",
  "Evans",
  "Fischer",
  "Garcia",
  "Hansen",
  "Ivanov",
  "Jensen",
  "Klein",
  "Lopez",
  "Meyer",
  "Novak",
  "Olsen",
];
const FIELDS = [
  "Name",
  "Date",
  "Total",
  "Invoice",
  "Account",
  "City",
  "Phone",
  "Code",
  "Amount",
  "Due",
];
const ITEMS = [
  "coffee",
  "bread",
  "paper",
  "tablet",
  "ticket",
  "garden",
  "window",
  "silver",
  "orange",
  "market",
];
const SHORT = WORDS.filter((w) => w.length >= 3 && w.length <= 8);

function fieldValue(rng: Rng, field: string): string {
  switch (field) {
    case "Name":
      return `${rng.pick(FIRST)} ${rng.pick(LAST)}`;
    case "Date":
    case "Due":
      return `${rng.int(2000, 2030)}-${String(rng.int(1, 12)).padStart(2, "0")}-${
        String(rng.int(1, 28)).padStart(2, "0")
      }`;
    case "Total":
    case "Amount":
      return `${rng.int(1, 999)}.${String(rng.int(0, 99)).padStart(2, "0")}`;
    case "Invoice":
    case "Code":
      return `${String.fromCharCode(65 + rng.int(0, 25))}${
        String.fromCharCode(65 + rng.int(0, 25))
      }-${rng.int(100, 999)}`;
    case "Account":
      return String(rng.int(10000, 99999));
    case "Phone":
      return `${rng.int(100, 999)}-${rng.int(1000, 9999)}`;
    default:
      return rng.pick([
        "London",
        "Paris",
        "Berlin",
        "Madrid",
        "Rome",
        "Vienna",
        "Prague",
        "Lisbon",
        "Dublin",
        "Oslo",
      ]);
  }
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/** Draws words and records their exact ink boxes. */
class Writer {
  words: WordBox[] = [];
  constructor(readonly ctx: SKRSContext2D, public font: string, public size: number) {}
  /** Draw `text` (one or more words) at (x, baseline); returns the x after it. */
  text(text: string, x: number, baseline: number, color = "#111"): number {
    const { ctx } = this;
    ctx.font = `${this.size}px "${this.font}"`;
    ctx.fillStyle = color;
    const space = ctx.measureText(" ").width;
    for (const w of text.split(" ").filter(Boolean)) {
      const m = ctx.measureText(w);
      ctx.fillText(w, x, baseline);
      const box = inkBox(m, x, baseline);
      if (box[2] > box[0] && box[3] > box[1]) this.words.push({ text: w, box, confidence: 100 });
      x += m.width + space;
    }
    return x;
  }
  width(text: string): number {
    this.ctx.font = `${this.size}px "${this.font}"`;
    return this.ctx.measureText(text).width;
  }
}

type Drawn = { qa: QA[] };

function drawLines(w: Writer, rng: Rng, S: number): Drawn {
  const m = S * 0.08, pitch = w.size * 1.5;
  const nLines = rng.int(2, Math.max(2, Math.min(4, Math.floor((S - 2 * m) / pitch))));
  const lines: string[][] = [];
  for (let l = 0; l < nLines; l++) {
    const ws: string[] = [];
    let width = 0;
    const want = rng.int(1, 3);
    while (ws.length < want) {
      const word = rng.pick(SHORT);
      const add = w.width((ws.length ? " " : "") + word);
      if (width + add > S - 2 * m) break;
      ws.push(word);
      width += add;
    }
    if (ws.length === 0) ws.push(rng.pick(SHORT.filter((x) => x.length <= 4)));
    lines.push(ws);
    w.text(ws.join(" "), m, m + w.size + l * pitch);
  }
  const k = rng.int(0, nLines - 1);
  const flat = lines.flat();
  const qa: QA[] = [{
    question: `read line ${k + 1}`,
    answer: lines[k]!.join(" "),
    kind: "read-line",
  }];
  if (flat.length > 1) {
    const i = rng.int(0, flat.length - 2);
    qa.push({ question: `word after ${flat[i]}`, answer: flat[i + 1]!, kind: "word-after" });
  }
  qa.push({ question: "first word", answer: flat[0]!, kind: "first-word" });
  return { qa };
}

function drawParagraph(w: Writer, rng: Rng, S: number): Drawn {
  const m = S * 0.06, pitch = w.size * 1.35;
  const flat: string[] = [];
  let x = m, baseline = m + w.size;
  const lineOf: number[] = [];
  let line = 0;
  while (baseline < S - m) {
    const word = rng.pick(SHORT);
    if (x + w.width(word) > S - m) {
      x = m;
      baseline += pitch;
      line++;
      continue;
    }
    x = w.text(word, x, baseline);
    flat.push(word);
    lineOf.push(line);
  }
  const i = rng.int(0, Math.max(0, flat.length - 2));
  const k = lineOf[i]!;
  const inLine = flat.filter((_, j) => lineOf[j] === k);
  return {
    qa: [
      { question: `word after ${flat[i]}`, answer: flat[i + 1] ?? flat[i]!, kind: "word-after" },
      { question: `how many words in line ${k + 1}`, answer: String(inLine.length), kind: "count" },
    ],
  };
}

/**
 * A seeded Fisher–Yates shuffle. (`sort(() => rng.next() - 0.5)`, used before generator v4, asks
 * the engine's sort to order by an inconsistent comparator: the result depended on the process's
 * history, so a suite's items were not a function of (suite, index) alone.)
 */
function shuffled<T>(rng: Rng, xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function drawForm(w: Writer, rng: Rng, S: number): Drawn {
  const m = S * 0.07, pitch = w.size * 1.7;
  const n = Math.min(rng.int(3, 5), Math.floor((S - 2 * m) / pitch));
  const fields = shuffled(rng, FIELDS).slice(0, n);
  const title = rng.pick(["INVOICE", "RECEIPT", "ID CARD", "ORDER"]);
  w.text(title, m, m + w.size, "#223");
  const values: Record<string, string> = {};
  fields.forEach((f, i) => {
    const baseline = m + w.size + (i + 1) * pitch;
    const x = w.text(`${f}:`, m, baseline, "#444");
    values[f] = fieldValue(rng, f);
    w.text(values[f]!, Math.max(x, m + S * 0.3), baseline);
  });
  const f = rng.pick(fields);
  return {
    qa: [{ question: `what is the value of field ${f}`, answer: values[f]!, kind: "field" }],
  };
}

function drawTable(w: Writer, rng: Rng, S: number): Drawn {
  const m = S * 0.06, pitch = w.size * 1.8;
  const rows = Math.min(rng.int(2, 4), Math.floor((S - 2 * m) / pitch) - 1);
  const items = shuffled(rng, ITEMS).slice(0, rows);
  const cols = [m, m + (S - 2 * m) * 0.45, m + (S - 2 * m) * 0.7];
  const header = ["Item", "Qty", "Price"];
  header.forEach((h, c) => w.text(h, cols[c]!, m + w.size, "#223"));
  const { ctx } = w;
  ctx.strokeStyle = "#888";
  ctx.lineWidth = Math.max(1, S / 448);
  ctx.beginPath();
  ctx.moveTo(m, m + w.size * 1.4);
  ctx.lineTo(S - m, m + w.size * 1.4);
  ctx.stroke();
  const cells: Record<string, { Qty: string; Price: string }> = {};
  items.forEach((item, r) => {
    const baseline = m + w.size + (r + 1) * pitch;
    const qty = String(rng.int(1, 9));
    const price = `${rng.int(1, 99)}.${String(rng.int(0, 99)).padStart(2, "0")}`;
    cells[item] = { Qty: qty, Price: price };
    w.text(item, cols[0]!, baseline);
    w.text(qty, cols[1]!, baseline);
    w.text(price, cols[2]!, baseline);
  });
  const item = rng.pick(items);
  const col = rng.pick(["Qty", "Price"] as const);
  return {
    qa: [{
      question: `what is the ${col} of ${item}`,
      answer: cells[item]![col],
      kind: "table-cell",
    }],
  };
}

function drawChart(w: Writer, rng: Rng, S: number): Drawn {
  const m = S * 0.08;
  const n = rng.int(3, 4);
  const labels = shuffled(rng, ITEMS).slice(0, n);
  const values = labels.map(() => rng.int(5, 95));
  const { ctx } = w;
  const base = S - m - w.size * 1.6, top = m + w.size * 1.6;
  const slot = (S - 2 * m) / n;
  ctx.strokeStyle = "#333";
  ctx.lineWidth = Math.max(1, S / 448);
  ctx.beginPath();
  ctx.moveTo(m, top - w.size);
  ctx.lineTo(m, base);
  ctx.lineTo(S - m, base);
  ctx.stroke();
  labels.forEach((label, i) => {
    const h = ((base - top) * values[i]!) / 100;
    const x = m + i * slot + slot * 0.2;
    ctx.fillStyle = ["#4a7bd0", "#e0a030", "#50a060", "#c05050"][i % 4]!;
    ctx.fillRect(x, base - h, slot * 0.6, h);
    w.text(String(values[i]), x, base - h - w.size * 0.3);
    w.text(label, m + i * slot + slot * 0.05, base + w.size * 1.2);
  });
  const i = rng.int(0, n - 1);
  return {
    qa: [{
      question: `what is the value of ${labels[i]}`,
      answer: String(values[i]),
      kind: "chart-value",
    }],
  };
}

function drawScene(w: Writer, rng: Rng, S: number): Drawn {
  const { ctx } = w;
  // a colored, textured background with a sign on it
  const hue = rng.int(0, 359);
  const g = ctx.createLinearGradient(0, 0, S, S);
  g.addColorStop(0, `hsl(${hue},45%,70%)`);
  g.addColorStop(1, `hsl(${(hue + 60) % 360},45%,45%)`);
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, S, S);
  for (let i = 0; i < 30; i++) {
    ctx.fillStyle = `hsla(${rng.int(0, 359)},30%,${rng.int(30, 80)}%,0.25)`;
    ctx.fillRect(rng.next() * S, rng.next() * S, rng.next() * S * 0.2, rng.next() * S * 0.2);
  }
  const words = [rng.pick(SHORT), ...(rng.next() < 0.5 ? [rng.pick(SHORT)] : [])];
  w.size *= 1.4;
  const text = words.join(" ");
  const tw = w.width(text);
  const x = Math.max(S * 0.05, (S - tw) / 2 + (rng.next() - 0.5) * S * 0.1);
  const y = S * (0.35 + rng.next() * 0.3);
  ctx.fillStyle = rng.next() < 0.5 ? "#f4f0e0" : "#203040";
  ctx.fillRect(
    x - w.size * 0.4,
    y - w.size * 1.2,
    Math.min(tw + w.size * 0.8, S - x),
    w.size * 1.7,
  );
  const dark = ctx.fillStyle === "#203040";
  w.text(text, x, y, dark ? "#f4f0e0" : "#a02020");
  return { qa: [{ question: "read the sign", answer: text, kind: "sign" }] };
}

const DRAW: Record<Layout, (w: Writer, rng: Rng, S: number) => Drawn> = {
  lines: drawLines,
  paragraph: drawParagraph,
  form: drawForm,
  table: drawTable,
  chart: drawChart,
  scene: drawScene,
};

function mix(seed: number, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 13;
  return Math.imul(h, 0x27d4eb2f) >>> 0;
}

/** Apply an affine map p' = c + s·R(p − c) to a box: the tight box of its corners, clipped. */
export function transformBox(
  box: [number, number, number, number],
  deg: number,
  scale: number,
  S: number,
): [number, number, number, number] | null {
  const a = (deg * Math.PI) / 180, cos = Math.cos(a) * scale, sin = Math.sin(a) * scale, c = S / 2;
  const xs: number[] = [], ys: number[] = [];
  for (
    const [x, y] of [[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [
      box[2],
      box[3],
    ]] as const
  ) {
    xs.push(c + cos * (x - c) - sin * (y - c));
    ys.push(c + sin * (x - c) + cos * (y - c));
  }
  const full = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] as const;
  const clipped: [number, number, number, number] = [
    Math.max(0, full[0]),
    Math.max(0, full[1]),
    Math.min(S, full[2]),
    Math.min(S, full[3]),
  ];
  const area = (b: readonly number[]) => Math.max(0, b[2]! - b[0]!) * Math.max(0, b[3]! - b[1]!);
  if (area(clipped) < 0.6 * area(full)) return null; // mostly outside the image
  return clipped.map(r2) as [number, number, number, number];
}

/** A box under the keystone map x' = c + (x − c)·(1 + k·(y/S − ½)): the tight box of its corners. */
export function keystoneBox(
  box: [number, number, number, number],
  k: number,
  S: number,
): [number, number, number, number] {
  const c = S / 2;
  const xs: number[] = [];
  for (const y of [box[1], box[3]]) {
    const f = 1 + k * (y / S - 0.5);
    xs.push(c + (box[0] - c) * f, c + (box[2] - c) * f);
  }
  return [Math.min(...xs), box[1], Math.max(...xs), box[3]];
}

/** Make item `index` of `suite` at `size`×`size` pixels. */
export async function generateSample(
  suiteName: string,
  index: number,
  size = 448,
): Promise<GeneratedSample> {
  const suite = Object.hasOwn(SUITES, suiteName) ? SUITES[suiteName] : undefined;
  if (!suite) {
    throw new RangeError(
      `Unknown suite '${suiteName}'; expected one of ${Object.keys(SUITES).join(", ")}`,
    );
  }
  ensureFonts();
  const rng = new Rng(mix(suite.seed, index));
  const S = size;
  const layout = rng.pick(suite.layouts);
  const font = rng.pick(suite.fonts);
  const fontSize = Math.round(
    S * (suite.fontSize[0] + rng.next() * (suite.fontSize[1] - suite.fontSize[0])),
  );
  // 1. content on a flat page
  const page = createCanvas(S, S);
  const pctx = page.getContext("2d");
  pctx.fillStyle = `hsl(${rng.int(30, 60)},${rng.int(0, 30)}%,${rng.int(93, 100)}%)`;
  pctx.fillRect(0, 0, S, S);
  const writer = new Writer(pctx, font, fontSize);
  const { qa } = DRAW[layout](writer, rng, S);
  // 2. geometric augmentation (+ blur), boxes moved with the pixels
  const a = suite.augment;
  const deg = (rng.next() * 2 - 1) * a.rotate;
  const scale = 1 + (rng.next() * 2 - 1) * a.scale;
  const blur = rng.next() * a.blur * (S / 448);
  // keystone first: each row y is scaled horizontally about the centre by 1 + k·(y/S − ½)
  const k = (rng.next() * 2 - 1) * a.perspective;
  let source: Canvas = page;
  let boxes = writer.words.map((w) => w.box);
  if (Math.abs(k) > 0.005) {
    const warped = createCanvas(S, S);
    const wctx = warped.getContext("2d");
    wctx.fillStyle = "#ffffff";
    wctx.fillRect(0, 0, S, S);
    // 8 px strips at 448: the scale step between strips moves an edge by ≤ 0.5 px
    const strip = Math.max(2, Math.round(S / 56));
    for (let y = 0; y < S; y += strip) {
      const f = 1 + k * ((y + strip / 2) / S - 0.5);
      wctx.drawImage(page, 0, y, S, strip, (S - S * f) / 2, y, S * f, strip);
    }
    source = warped;
    boxes = boxes.map((b) => keystoneBox(b, k, S));
  }
  const canvas = createCanvas(S, S);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, S, S);
  if (blur > 0.05) ctx.filter = `blur(${blur.toFixed(2)}px)`;
  ctx.translate(S / 2, S / 2);
  ctx.rotate((deg * Math.PI) / 180);
  ctx.scale(scale, scale);
  ctx.drawImage(source, -S / 2, -S / 2);
  ctx.resetTransform();
  ctx.filter = "none";
  const words: WordBox[] = [];
  writer.words.forEach((w, i) => {
    const box = transformBox(boxes[i]!, deg, scale, S);
    if (box) words.push({ ...w, box });
  });
  // 3. tone and noise on the pixels
  const tone = 1 + (rng.next() * 2 - 1) * a.tone;
  const shift = (rng.next() * 2 - 1) * a.tone * 60;
  const noise = rng.next() * a.noise;
  if (
    rng.next() < a.pixelP && (Math.abs(tone - 1) > 1e-3 || Math.abs(shift) > 0.5 || noise > 0.5)
  ) {
    const img = ctx.getImageData(0, 0, S, S);
    const d = img.data;
    // one uniform draw per pixel (variance-matched to std `noise`), gray: cheap and seeded
    const amp = noise * Math.sqrt(12);
    for (let i = 0; i < d.length; i += 4) {
      const n = noise > 0.5 ? (rng.next() - 0.5) * amp : 0;
      d[i] = (d[i]! - 128) * tone + 128 + shift + n;
      d[i + 1] = (d[i + 1]! - 128) * tone + 128 + shift + n;
      d[i + 2] = (d[i + 2]! - 128) * tone + 128 + shift + n;
    }
    ctx.putImageData(img, 0, 0);
  }
  // 4. JPEG round trip
  let final: Canvas = canvas;
  if (a.jpeg && rng.next() < a.jpegP) {
    const q = a.jpeg[0] + rng.next() * (a.jpeg[1] - a.jpeg[0]);
    const jpg = canvas.toBuffer("image/jpeg", Math.round(q));
    const img = await loadImage(jpg);
    final = createCanvas(S, S);
    final.getContext("2d").drawImage(img, 0, 0);
  }
  // every answer must be readable in the image: keep QA whose answer words all survived
  const present = new Set(words.map((w) => w.text));
  const answerable = qa.filter((q) =>
    q.kind === "count" || q.answer.split(" ").every((t) => present.has(t))
  );
  if (answerable.length === 0) return generateSample(suiteName, index + 1_000_003, size); // rare: content cut off
  return {
    suite: suiteName,
    index,
    layout,
    font,
    width: S,
    height: S,
    canvas: final,
    words,
    qa: answerable,
  };
}
