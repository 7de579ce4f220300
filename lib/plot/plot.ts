/**
 * Charts as SVG text, laid out here rather than by a plotting library: every label's box is
 * known, so titles stay clear of the axes, names never overlap (they wrap or are shortened),
 * zero is drawn as zero and a smoothed line says so in its legend.
 */

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
  /**
   * Draw a trailing moving average over this many points (the raw points stay, faint); the
   * legend names the window. Pass raw points: already smoothed ones would be smoothed twice.
   */
  smooth?: number;
}

/** Options of {@linkcode lineChartSvg} and {@linkcode barChartSvg}. */
export interface LineChartOptions {
  title: string;
  x: string;
  y: string;
  /** @default 640 */
  width?: number;
  /** @default 360 */
  height?: number;
  /** Log-scale y (line charts). @default false */
  logY?: boolean;
}

/** Width of one character relative to the font size (DejaVu Sans runs about 0.55–0.64). */
export const CHAR_WIDTH = 0.62;
/** The font every chart uses; svgToPng finds it on disk. */
export const FONT = "DejaVu Sans, Verdana, sans-serif";
const COLORS = [
  "#4269d0",
  "#efb118",
  "#ff725c",
  "#6cc5b0",
  "#3ca951",
  "#ff8ab7",
  "#a463f2",
  "#97bbf5",
  "#9c6b4e",
  "#9498a0",
];
const TITLE_SIZE = 15;
const LABEL_SIZE = 12;
const TICK_SIZE = 11;

/** Estimated width of `text` drawn at `fontSize` px. */
export function textWidth(text: string, fontSize: number): number {
  return [...text].length * fontSize * CHAR_WIDTH;
}

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );
const num = (v: number) => String(Math.round(v * 100) / 100);

/** `text` cut to at most `maxWidth` px, the middle replaced by an ellipsis (ends tell runs apart). */
export function shorten(text: string, fontSize: number, maxWidth: number): string {
  const chars = [...text];
  const fit = Math.floor(maxWidth / (fontSize * CHAR_WIDTH));
  if (chars.length <= fit) return text;
  if (fit <= 1) return fit === 1 ? "…" : "";
  const keep = fit - 1;
  const head = Math.ceil(keep / 2);
  return chars.slice(0, head).join("") + "…" + chars.slice(chars.length - (keep - head)).join("");
}

/** `text` broken at '-', '_', ' ' or '/' into lines of at most `maxWidth` px (each shortened if needed). */
export function wrap(text: string, fontSize: number, maxWidth: number, maxLines = 3): string[] {
  const parts = text.split(/(?<=[-_ /])/);
  const lines: string[] = [];
  let cur = "";
  for (const p of parts) {
    if (cur && textWidth(cur + p, fontSize) > maxWidth) {
      lines.push(cur);
      cur = p;
    } else cur += p;
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    const rest = lines.slice(maxLines - 1).join("");
    lines.length = maxLines - 1;
    lines.push(rest);
  }
  return lines.map((l) => shorten(l.trimEnd(), fontSize, maxWidth));
}

function text(
  x: number,
  y: number,
  s: string,
  size: number,
  o: { anchor?: "start" | "middle" | "end"; bold?: boolean; fill?: string; cls?: string } = {},
): string {
  return `<text x="${num(x)}" y="${num(y)}" font-size="${size}" text-anchor="${
    o.anchor ?? "start"
  }"${o.bold ? ' font-weight="bold"' : ""} fill="${o.fill ?? "#222"}"${
    o.cls ? ` class="${o.cls}"` : ""
  }>${esc(s)}</text>`;
}

/** Round ticks covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

/** Labels for ticks: as many decimals as the step needs, no more (0 is "0"). */
export function tickFormat(ticks: number[]): (v: number) => string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : Math.abs(ticks[0] ?? 1) || 1;
  let decimals = 0;
  while (
    decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6
  ) {
    decimals++;
  }
  return (v) => {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6 || a < 1e-4) return v.toExponential(1);
    return v.toFixed(decimals);
  };
}

/** The y domain: padded when flat, including zero when asked. */
function domain(values: number[], withZero: boolean): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (withZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (hi === lo) {
    // a flat series still gets a readable axis: [0, 1] for zeros (never below), ±10 % otherwise
    if (lo === 0) hi = 1;
    else [lo, hi] = [lo - Math.abs(lo) * 0.1, hi + Math.abs(hi) * 0.1];
  }
  return [lo, hi];
}

interface Frame {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** Legend entries laid out in rows under the chart; returns the SVG and its height. */
function legend(
  entries: Array<{ label: string; color: string; faint?: boolean }>,
  x0: number,
  y0: number,
  maxWidth: number,
): { svg: string; height: number } {
  const row = LABEL_SIZE + 8;
  const parts: string[] = [];
  let x = x0;
  let y = y0 + LABEL_SIZE;
  for (const e of entries) {
    const label = shorten(e.label, LABEL_SIZE, maxWidth - 22);
    const w = 18 + textWidth(label, LABEL_SIZE) + 16;
    if (x > x0 && x + w > x0 + maxWidth) {
      x = x0;
      y += row;
    }
    parts.push(
      `<rect x="${num(x)}" y="${num(y - LABEL_SIZE * 0.75)}" width="12" height="${
        LABEL_SIZE * 0.7
      }" fill="${e.color}"/>`,
      text(x + 16, y, label, LABEL_SIZE, { cls: "legend" }),
    );
    x += w;
  }
  return {
    svg: `<g class="legend">${parts.join("")}</g>`,
    height: entries.length ? y - y0 + 6 : 0,
  };
}

/** Rows the legend needs (same walk as {@linkcode legend}, without drawing). */
function legendHeight(labels: string[], maxWidth: number): number {
  return legend(labels.map((label) => ({ label, color: "#000" })), 0, 0, maxWidth).height;
}

function header(o: LineChartOptions, width: number, height: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}"><rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>${
    text(12, 22, shorten(o.title, TITLE_SIZE, width - 24), TITLE_SIZE, {
      bold: true,
      cls: "title",
    })
  }`;
}

/** The y axis: gridlines, tick labels right-aligned left of the frame, its label above it. */
function yAxis(
  ticks: number[],
  fmt: (v: number) => string,
  sy: (v: number) => number,
  f: Frame,
  label: string,
  width: number,
): string {
  const out: string[] = [];
  for (const t of ticks) {
    const y = sy(t);
    out.push(
      `<line x1="${num(f.left)}" x2="${num(f.right)}" y1="${num(y)}" y2="${num(y)}" stroke="${
        t === 0 ? "#888" : "#e4e4e4"
      }"/>`,
      text(f.left - 6, y + TICK_SIZE * 0.35, fmt(t), TICK_SIZE, {
        anchor: "end",
        cls: "tick ytick",
      }),
    );
  }
  out.push(text(12, f.top - 12, shorten(`↑ ${label}`, LABEL_SIZE, width - 24), LABEL_SIZE, {
    cls: "axis-label",
  }));
  return out.join("");
}

function movingAverage(points: Array<{ x: number; y: number }>, window: number) {
  let sum = 0;
  return points.map((p, i) => {
    sum += p.y;
    if (i >= window) sum -= points[i - window]!.y;
    return { x: p.x, y: sum / Math.min(i + 1, window) };
  });
}

/** One line per series, a legend under the chart (smoothed series say their window). */
export function lineChartSvg(series: Series[], o: LineChartOptions): string {
  const width = o.width ?? 640;
  const height = o.height ?? 360;
  // a missing or non-finite value (a failed step's NaN loss) is left out, not drawn as 0
  const finite = series.map((s) => ({
    ...s,
    points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)),
  }));
  const drawn = finite.map((s, i) => ({
    ...s,
    color: COLORS[i % COLORS.length]!,
    line: s.smooth && s.smooth > 1 ? movingAverage(s.points, s.smooth) : s.points,
    label: s.smooth && s.smooth > 1 ? `${s.name} (${s.smooth}-point moving average)` : s.name,
  }));
  const xs = drawn.flatMap((s) => s.points.map((p) => p.x));
  const ys = drawn.flatMap((s) => s.points.map((p) => p.y)).filter((v) => !o.logY || v > 0);
  const [x0, x1] = domain(xs, false);
  let [y0, y1] = domain(ys, false);
  if (o.logY) [y0, y1] = [Math.log10(y0 > 0 ? y0 : 1e-3), Math.log10(y1 > 0 ? y1 : 1)];
  const yTicks = o.logY
    ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.ceil(y1) - Math.floor(y0)).filter((t) =>
      t >= y0 - 1e-9 && t <= y1 + 1e-9
    )
    : niceTicks(y0, y1, 5);
  const yFmtLin = tickFormat(yTicks);
  const yFmt = o.logY ? (t: number) => tickFormat([10 ** t, 10 ** (t + 1)])(10 ** t) : yFmtLin;
  const tickW = Math.max(...yTicks.map((t) => textWidth(yFmt(t), TICK_SIZE)), 10);
  const legendH = legendHeight(drawn.map((s) => s.label), width - 24);
  const f: Frame = {
    left: 12 + tickW + 8,
    top: 22 + 12 + LABEL_SIZE + 12 + 6,
    right: width - 16,
    bottom: height - 12 - legendH - (TICK_SIZE + 6) - (LABEL_SIZE + 8),
  };
  if (f.bottom - f.top < 40) f.bottom = f.top + 40;
  const sx = (v: number) => f.left + (v - x0) / (x1 - x0) * (f.right - f.left);
  const sy = (v: number) => {
    const t = o.logY ? Math.log10(Math.max(v, 1e-12)) : v;
    return f.bottom - (t - y0) / (y1 - y0) * (f.bottom - f.top);
  };
  const syTick = (t: number) => f.bottom - (t - y0) / (y1 - y0) * (f.bottom - f.top);
  // x ticks: fewer until their labels fit side by side with a gap
  let xTicks: number[] = [];
  for (let count = 10; count >= 1; count--) {
    xTicks = niceTicks(x0, x1, count);
    const fmt = tickFormat(xTicks);
    const fits = xTicks.every((t, i) =>
      i === 0 ||
      sx(t) - sx(xTicks[i - 1]!) >
        (textWidth(fmt(t), TICK_SIZE) + textWidth(fmt(xTicks[i - 1]!), TICK_SIZE)) / 2 + 8
    );
    if (fits) break;
  }
  // steps are whole numbers: no "20.5" tick between two of them
  if (xs.every(Number.isInteger)) {
    const whole = xTicks.filter(Number.isInteger);
    if (whole.length) xTicks = whole;
  }
  const xFmt = tickFormat(xTicks);
  const parts = [header(o, width, height), yAxis(yTicks, yFmt, syTick, f, o.y, width)];
  for (const t of xTicks) {
    parts.push(
      `<line x1="${num(sx(t))}" x2="${num(sx(t))}" y1="${num(f.bottom)}" y2="${
        num(f.bottom + 4)
      }" stroke="#888"/>`,
      text(sx(t), f.bottom + 4 + TICK_SIZE, xFmt(t), TICK_SIZE, {
        anchor: "middle",
        cls: "tick xtick",
      }),
    );
  }
  parts.push(
    `<line x1="${num(f.left)}" x2="${num(f.right)}" y1="${num(f.bottom)}" y2="${
      num(f.bottom)
    }" stroke="#888"/>`,
    text(f.right, f.bottom + 4 + TICK_SIZE + 6 + LABEL_SIZE, `${o.x} →`, LABEL_SIZE, {
      anchor: "end",
      cls: "axis-label",
    }),
  );
  const path = (pts: Array<{ x: number; y: number }>) =>
    pts.filter((p) => !o.logY || p.y > 0).map((p, i) =>
      `${i ? "L" : "M"}${num(sx(p.x))},${num(sy(p.y))}`
    ).join("");
  for (const s of drawn) {
    if (s.line !== s.points) {
      parts.push(
        `<path class="raw" d="${
          path(s.points)
        }" fill="none" stroke="${s.color}" stroke-opacity="0.25" stroke-width="1"/>`,
      );
    }
    parts.push(
      `<path class="series" data-series="${esc(s.name)}" d="${
        path(s.line)
      }" fill="none" stroke="${s.color}" stroke-width="1.8"/>`,
    );
    if (s.line.length === 1) {
      const p = s.line[0]!;
      parts.push(`<circle cx="${num(sx(p.x))}" cy="${num(sy(p.y))}" r="3" fill="${s.color}"/>`);
    }
  }
  parts.push(
    legend(
      drawn.map((s) => ({ label: s.label, color: s.color })),
      12,
      height - 12 - legendH,
      width - 24,
    ).svg,
    "</svg>",
  );
  return parts.join("");
}

/** Grouped bars: one group per category, one bar per series (told apart by the legend). */
export function barChartSvg(
  rows: Array<{ category: string; series: string; value: number }>,
  o: LineChartOptions,
): string {
  const width = o.width ?? 640;
  const height = o.height ?? 360;
  const categories = [...new Set(rows.map((r) => r.category))];
  const names = [...new Set(rows.map((r) => r.series))];
  const color = new Map(names.map((n, i) => [n, COLORS[i % COLORS.length]!]));
  const [y0, y1raw] = domain(rows.map((r) => r.value), true);
  const yTicks = niceTicks(y0, y1raw, 5);
  const y1 = Math.max(y1raw, yTicks.at(-1)!);
  const lo = Math.min(y0, yTicks[0]!);
  const yFmt = tickFormat(yTicks);
  const tickW = Math.max(...yTicks.map((t) => textWidth(yFmt(t), TICK_SIZE)), 10);
  const legendH = legendHeight(names, width - 24);
  const left = 12 + tickW + 8;
  const right = width - 16;
  const groupW = (right - left) / Math.max(1, categories.length);
  const catLines = categories.map((c) => wrap(c, TICK_SIZE, groupW - 6));
  const catH = Math.max(1, ...catLines.map((l) => l.length)) * (TICK_SIZE + 3);
  const f: Frame = {
    left,
    top: 22 + 12 + LABEL_SIZE + 12 + 6,
    right,
    bottom: height - 12 - legendH - catH - 6 - (LABEL_SIZE + 8),
  };
  if (f.bottom - f.top < 40) f.bottom = f.top + 40;
  const sy = (v: number) => f.bottom - (v - lo) / (y1 - lo) * (f.bottom - f.top);
  const parts = [header(o, width, height), yAxis(yTicks, yFmt, sy, f, o.y, width)];
  const gap = Math.min(12, groupW * 0.15);
  const barW = (groupW - gap) / Math.max(1, names.length);
  categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + gap / 2;
    names.forEach((n, si) => {
      const r = rows.find((r) => r.category === c && r.series === n);
      if (!r) return;
      const top = sy(Math.max(r.value, 0));
      const h = Math.abs(sy(r.value) - sy(0));
      parts.push(
        `<rect class="bar" data-category="${esc(c)}" data-series="${
          esc(n)
        }" data-value="${r.value}" x="${num(gx + si * barW + 0.5)}" y="${num(top)}" width="${
          num(Math.max(0, barW - 1))
        }" height="${num(h)}" fill="${color.get(n)}"><title>${
          esc(`${n} · ${c}: ${r.value}`)
        }</title></rect>`,
      );
    });
    catLines[ci]!.forEach((line, li) =>
      parts.push(
        text(
          f.left + (ci + 0.5) * groupW,
          f.bottom + 4 + TICK_SIZE + li * (TICK_SIZE + 3),
          line,
          TICK_SIZE,
          {
            anchor: "middle",
            cls: "tick xtick",
          },
        ),
      )
    );
  });
  parts.push(
    `<line x1="${num(f.left)}" x2="${num(f.right)}" y1="${num(sy(0))}" y2="${
      num(sy(0))
    }" stroke="#444"/>`,
    text(f.right, f.bottom + 4 + catH + 6 + LABEL_SIZE, `${o.x}`, LABEL_SIZE, {
      anchor: "end",
      cls: "axis-label",
    }),
    legend(
      names.map((n) => ({ label: n, color: color.get(n)! })),
      12,
      height - 12 - legendH,
      width - 24,
    ).svg,
    "</svg>",
  );
  return parts.join("");
}

/** Rasterize an SVG chart to PNG (skia's SVG renderer in @napi-rs/canvas), on white. */
export async function svgToPng(svg: string, scale = 2): Promise<Uint8Array> {
  const { createCanvas, loadImage } = await import("@napi-rs/canvas");
  const { ensureFonts } = await import("../render/fonts.ts");
  ensureFonts();
  // skia needs a concrete font family and colour
  const concrete = svg.replaceAll(FONT, "DejaVu Sans").replaceAll(
    "system-ui, sans-serif",
    "DejaVu Sans",
  )
    .replaceAll("currentColor", "#222");
  const img = await loadImage(new TextEncoder().encode(concrete));
  const canvas = createCanvas(Math.round(img.width * scale), Math.round(img.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  return new Uint8Array(canvas.toBuffer("image/png"));
}
