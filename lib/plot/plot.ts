/**
 * Charts as SVG files, drawn with Observable Plot on a server-side DOM (linkedom).
 */
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
}

/** Options of {@linkcode lineChartSvg}. */
export interface LineChartOptions {
  title: string;
  x: string;
  y: string;
  /** @default 640 */
  width?: number;
  /** @default 360 */
  height?: number;
  /** Log-scale y. @default false */
  logY?: boolean;
}

type PlotDocument = Parameters<typeof Plot.plot>[0] extends { document?: infer D } ? D : never;

/** A server-side DOM document for Plot (linkedom's types differ from lib.dom's). */
function serverDocument(): PlotDocument {
  const dom = parseHTML("<!doctype html><html><body></body></html>") as unknown as {
    document: PlotDocument;
  };
  return dom.document;
}

function svgOf(node: unknown): string {
  const el = node as {
    outerHTML: string;
    tagName: string;
    querySelector(s: string): { outerHTML: string } | null;
  };
  // a plot with a legend is a <figure>; keep its <svg>
  const svg = el.tagName?.toLowerCase() === "svg"
    ? el.outerHTML
    : el.querySelector("svg")?.outerHTML ?? el.outerHTML;
  // (charts here have no legend or title figure: the title is a text mark inside the SVG)
  return svg.includes("xmlns=")
    ? svg
    : svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"');
}

/** One line per series. */
export function lineChartSvg(series: Series[], o: LineChartOptions): string {
  const document = serverDocument();
  const rows = series.flatMap((s) => s.points.map((p) => ({ ...p, series: s.name })));
  const chart = Plot.plot({
    document,
    width: o.width ?? 640,
    height: o.height ?? 360,
    marginLeft: 56,
    marginTop: 52,
    grid: true,
    x: { label: o.x },
    y: { label: o.y, type: o.logY ? "log" : "linear" },
    color: { legend: false },
    marks: [
      Plot.text([o.title], {
        frameAnchor: "top-left",
        dy: -44,
        dx: -40,
        fontSize: 14,
        fontWeight: "bold",
        textAnchor: "start",
      }),
      Plot.lineY(rows, { x: "x", y: "y", stroke: "series" }),
      Plot.text(series.map((s) => ({ ...s.points.at(-1)!, series: s.name })), {
        x: "x",
        y: "y",
        text: "series",
        dx: 4,
        textAnchor: "start",
        fill: "series",
      }),
    ],
    marginRight: 90,
  });
  return svgOf(chart);
}

/** Grouped bars: one group per category, one bar per series. */
export function barChartSvg(
  rows: Array<{ category: string; series: string; value: number }>,
  o: LineChartOptions,
): string {
  const document = serverDocument();
  const chart = Plot.plot({
    document,
    width: o.width ?? 640,
    height: o.height ?? 360,
    marginTop: 56,
    marginBottom: 40,
    fx: { label: o.x, axis: "top" },
    x: { label: null, tickRotate: -30 },
    y: { label: o.y, grid: true },
    color: { legend: false },
    marks: [
      Plot.text([o.title], {
        frameAnchor: "top-left",
        dy: -48,
        fontSize: 14,
        fontWeight: "bold",
        textAnchor: "start",
        facet: "super",
      }),
      Plot.barY(rows, { fx: "category", x: "series", y: "value", fill: "series" }),
      Plot.ruleY([0]),
    ],
  });
  return svgOf(chart);
}

/** Rasterize an SVG chart to PNG (skia's SVG renderer in @napi-rs/canvas), on white. */
export async function svgToPng(svg: string, scale = 2): Promise<Uint8Array> {
  const { createCanvas, loadImage } = await import("@napi-rs/canvas");
  const { ensureFonts } = await import("../render/fonts.ts");
  ensureFonts();
  // skia needs a concrete font family and colour
  const concrete = svg.replaceAll("system-ui, sans-serif", "DejaVu Sans").replaceAll(
    "currentColor",
    "#222",
  );
  const img = await loadImage(new TextEncoder().encode(concrete));
  const canvas = createCanvas(Math.round(img.width * scale), Math.round(img.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  return new Uint8Array(canvas.toBuffer("image/png"));
}
