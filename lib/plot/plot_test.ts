/**
 * Every chart the project writes, drawn from real run files (tests/fixtures/plot, made by
 * make.sh: two short tiny-config training runs, evaluated at each checkpoint — all their scores
 * are 0), then read back as SVG: a white background, no two text boxes overlapping, every text
 * inside the picture, a zero bar zero high, no degenerate ticks.
 */
import { assert, assertEquals, assertGreater, assertStringIncludes } from "@std/assert";
import { parseHTML } from "linkedom";
import { join } from "node:path";
import { compareRuns, readRunEvals, readRunMetrics } from "../eval/mod.ts";
import { writeLossPlot } from "../train/mod.ts";
import {
  barChartSvg,
  CHAR_WIDTH,
  lineChartSvg,
  niceTicks,
  shorten,
  svgToPng,
  tickFormat,
} from "./mod.ts";

const fixtures = new URL("../../tests/fixtures/plot/", import.meta.url).pathname;
const RUNS = ["tiny-dvsft-lambda1-next-exact-g4-s0", "tiny-sft-lambda0-next-exact-g4-s0"];

interface Box {
  text: string;
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

// deno-lint-ignore no-explicit-any
type El = any;

function parseSvg(svg: string): El {
  const { document } = parseHTML(`<!doctype html><html><body>${svg}</body></html>`) as unknown as {
    document: El;
  };
  const el = document.querySelector("svg");
  assert(el, "no <svg> element");
  return el;
}

/** Text boxes estimated from font size × characters, the baseline at y. */
function textBoxes(svg: El): Box[] {
  return [...svg.querySelectorAll("text")].map((t: El) => {
    const s = t.textContent as string;
    const size = Number(t.getAttribute("font-size"));
    const x = Number(t.getAttribute("x"));
    const y = Number(t.getAttribute("y"));
    assert(size > 0 && Number.isFinite(x) && Number.isFinite(y), `text '${s}' without position`);
    assertEquals(t.getAttribute("transform"), null, `text '${s}' is transformed`);
    const w = [...s].length * size * CHAR_WIDTH;
    const anchor = t.getAttribute("text-anchor") ?? "start";
    const x0 = anchor === "middle" ? x - w / 2 : anchor === "end" ? x - w : x;
    return { text: s, x0, x1: x0 + w, y0: y - 0.8 * size, y1: y + 0.2 * size };
  });
}

function checkChart(name: string, svg: string): El {
  const el = parseSvg(svg);
  const W = Number(el.getAttribute("width"));
  const H = Number(el.getAttribute("height"));
  const bg = el.querySelector("rect");
  assert(bg, `${name}: no rect`);
  assertEquals(
    [bg.getAttribute("width"), bg.getAttribute("height"), bg.getAttribute("fill")],
    [String(W), String(H), "#ffffff"],
    `${name}: the first shape is not an opaque background`,
  );
  const boxes = textBoxes(el);
  assertGreater(boxes.length, 3);
  for (const b of boxes) {
    assert(
      b.x0 >= 0 && b.x1 <= W && b.y0 >= 0 && b.y1 <= H,
      `${name}: '${b.text}' leaves the picture (${b.x0.toFixed(1)}..${b.x1.toFixed(1)} × ${
        b.y0.toFixed(1)
      }..${b.y1.toFixed(1)} in ${W}×${H})`,
    );
    assert(!/^-?0{2,}/.test(b.text), `${name}: degenerate tick '${b.text}'`);
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!;
      const b = boxes[j]!;
      const overlap = a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
      assert(!overlap, `${name}: '${a.text}' overlaps '${b.text}'`);
    }
  }
  for (const axis of ["xtick", "ytick"]) {
    const ticks = [...el.querySelectorAll(`text.${axis}`)].map((t: El) => t.textContent);
    assertEquals(new Set(ticks).size, ticks.length, `${name}: repeated ${axis} labels ${ticks}`);
  }
  return el;
}

async function readRuns() {
  return await Promise.all(RUNS.map(async (name) => {
    const dir = join(fixtures, name);
    const m = await readRunMetrics(dir);
    if (!m) throw new Error(`${name}: no metrics.jsonl`);
    return { name, evals: await readRunEvals(dir), losses: m.losses, final: m.final };
  }));
}

Deno.test("plot: compare's charts from real runs keep their text apart and draw zero as zero", async () => {
  const runs = await readRuns();
  assertEquals(runs.map((r) => r.evals.length), [3, 3]);
  const report = compareRuns(runs);
  assertEquals(report.plots.map((p) => p.name), ["scores", "score-vs-step", "text-loss-vs-step"]);
  for (const p of report.plots) checkChart(p.name, p.svg);
  // mean score against step: flat at zero, so the axis runs 0..1 and never below zero
  const vsStep = parseSvg(report.plots[1]!.svg);
  const stepTicks = [...vsStep.querySelectorAll("text.ytick")].map((t: El) => t.textContent);
  assertEquals(stepTicks, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
  const steps = [...vsStep.querySelectorAll("text.xtick")].map((t: El) => t.textContent);
  assert(steps.every((s: string) => /^\d+$/.test(s)), `step ticks ${steps}`);
  const scores = parseSvg(report.plots[0]!.svg);
  const bars = [...scores.querySelectorAll("rect.bar")];
  // these real runs score 0 on every suite: 7 suites × 2 runs, every bar flat
  assertEquals(bars.length, 14);
  for (const b of bars) {
    assertEquals(b.getAttribute("data-value"), "0");
    assertEquals(b.getAttribute("height"), "0");
  }
  const ticks = [...scores.querySelectorAll("text.ytick")].map((t: El) => t.textContent);
  assertEquals(ticks.slice(0, 6), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
  // both long run names are in the legend, whole
  const legend = [...scores.querySelectorAll("text.legend")].map((t: El) => t.textContent);
  assertEquals(legend, RUNS);
});

Deno.test("plot: loss.svg of a real run (written by the trainer) is opaque, titled clear of its axis", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = join(dir, RUNS[0]!);
    await Deno.mkdir(run);
    await Deno.copyFile(join(fixtures, RUNS[0]!, "metrics.jsonl"), join(run, "metrics.jsonl"));
    await writeLossPlot(run);
    const svg = await Deno.readTextFile(join(run, "loss.svg"));
    const el = checkChart("loss.svg", svg);
    assertEquals([...el.querySelectorAll("path.series")].length, 3);
    assertStringIncludes(el.querySelector("text.title").textContent, "loss");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot: a smoothed line says so in its legend and still shows the raw steps", async () => {
  const text = await Deno.readTextFile(join(fixtures, RUNS[1]!, "metrics.jsonl"));
  const points = text.trim().split("\n").map((l) => JSON.parse(l)).map((m) => ({
    x: m.step,
    y: m.textLoss,
  }));
  const svg = lineChartSvg([{ name: RUNS[1]!, points, smooth: 25 }], {
    title: "Text loss against step",
    x: "step",
    y: "text loss",
  });
  const el = checkChart("smoothed", svg);
  const legend = [...el.querySelectorAll("text.legend")].map((t: El) => t.textContent);
  assertEquals(legend, [`${RUNS[1]} (25-point moving average)`]);
  assertEquals([...el.querySelectorAll("path.raw")].length, 1);
  // the smoothed line ends at the mean of the last 25 steps
  const last = points.slice(-25).reduce((a, p) => a + p.y, 0) / 25;
  const d = el.querySelector("path.series").getAttribute("d") as string;
  const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
  const rawD = el.querySelector("path.raw").getAttribute("d") as string;
  const rawYs = [...rawD.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
  // pixel y is linear in the value: recover the scale from the raw line's extremes
  const lo = Math.min(...points.map((p) => p.y));
  const hi = Math.max(...points.map((p) => p.y));
  const pyLo = Math.max(...rawYs);
  const pyHi = Math.min(...rawYs);
  const value = lo + (pyLo - ys.at(-1)!) / (pyLo - pyHi) * (hi - lo);
  assert(Math.abs(value - last) < 0.02, `smoothed end ${value} vs mean ${last}`);
});

Deno.test("plot: many long names and categories wrap or shorten instead of overlapping", () => {
  const names = Array.from({ length: 8 }, (_, i) => `experiment-small-l${i}-next-exact-g4-s${i}`);
  const cats = ["text-reading", "doc-kv", "table-lookup", "heldout-fonts", "degraded", "charts"];
  const rows = names.flatMap((series, i) =>
    cats.map((category, j) => ({ category, series, value: i === 0 ? 0 : (i * j) / 100 }))
  );
  const svg = barChartSvg(rows, {
    title: "Score per suite (final checkpoints)",
    x: "suite",
    y: "score",
    width: 520,
  });
  const el = checkChart("bars", svg);
  const zero = [...el.querySelectorAll("rect.bar")].filter((b: El) =>
    b.getAttribute("data-value") === "0"
  );
  assertEquals(zero.length, cats.length + names.length - 1);
  for (const b of zero) assertEquals(b.getAttribute("height"), "0");
  const line = lineChartSvg(
    names.map((name, i) => ({
      name,
      points: [{ x: 0, y: 5 - i / 10 }, { x: 1000, y: 2 + i / 1000 }],
    })),
    {
      title: "A rather long title that would run into the axis label if it were placed badly",
      x: "step",
      y: "text loss",
      width: 420,
    },
  );
  checkChart("lines", line);
});

Deno.test("plot: NaN points are left out, not drawn", () => {
  const svg = lineChartSvg([{
    name: "a",
    points: [{ x: 1, y: 2 }, { x: 2, y: NaN }, { x: 3, y: 4 }],
  }], {
    title: "t",
    x: "step",
    y: "loss",
  });
  const el = checkChart("nan", svg);
  const d = el.querySelector("path.series").getAttribute("d") as string;
  assert(!d.includes("NaN"), d);
  assertEquals(d.match(/[ML]/g)?.length, 2);
});

Deno.test("plot: ticks are round and formatted with the decimals they need", () => {
  assertEquals(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1]);
  assertEquals(niceTicks(0, 1, 5).map(tickFormat(niceTicks(0, 1, 5))), [
    "0",
    "0.2",
    "0.4",
    "0.6",
    "0.8",
    "1.0",
  ]);
  assertEquals(niceTicks(0, 500, 5).map(tickFormat(niceTicks(0, 500, 5))), [
    "0",
    "100",
    "200",
    "300",
    "400",
    "500",
  ]);
  assertEquals(shorten("tiny-dvsft-lambda1-next-exact-g4-s0", 10, 62), "tiny-…4-s0");
});

Deno.test("plot: PNG of a chart is opaque white where nothing is drawn", async () => {
  const svg = barChartSvg([{ category: "a", series: "r", value: 0 }], {
    title: "t",
    x: "suite",
    y: "score",
  });
  const png = await svgToPng(svg, 1);
  const { loadImage, createCanvas } = await import("@napi-rs/canvas");
  const img = await loadImage(png);
  const c = createCanvas(img.width, img.height);
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(img.width - 3, 3, 1, 1).data;
  assertEquals([...px], [255, 255, 255, 255]);
});
