// A small SVG line chart for the browser (the server's charts are lib/plot): axes with round
// ticks, one path per series, a legend that wraps. Redrawn whole on every update.

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2"];

function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  const dec = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step) - 1e-9)));
  return out.map((v) => ({ v, label: v === 0 ? "0" : v.toFixed(dec) }));
}

function node(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Draw `series` ([{name, points: [{x, y}]}]) into `container` as an SVG; each path carries
 * data-points (its point count) so a page or a test can tell the curve grew.
 */
export function lineChart(
  container,
  series,
  { title = "", x = "x", y = "y", width = 640, height = 300 } = {},
) {
  const svg = node("svg", {
    xmlns: NS,
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    "font-size": 11,
    "font-family": "DejaVu Sans, sans-serif",
  });
  svg.append(node("rect", { x: 0, y: 0, width, height, fill: "#fff" }));
  svg.append(node("text", { x: 10, y: 18, "font-size": 14, "font-weight": "bold" }, title));
  svg.append(node("text", { x: 10, y: 38, fill: "#444" }, `↑ ${y}`));
  const pts = series.flatMap((s) => s.points);
  const legendH = 20;
  const f = { left: 56, top: 50, right: width - 14, bottom: height - 30 - legendH };
  if (!pts.length) {
    svg.append(
      node("text", {
        x: width / 2,
        y: (f.top + f.bottom) / 2,
        "text-anchor": "middle",
        fill: "#888",
      }, "no steps yet"),
    );
    container.replaceChildren(svg);
    return;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p.x)), Math.max(...pts.map((p) => p.x))];
  let [y0, y1] = [Math.min(...pts.map((p) => p.y)), Math.max(...pts.map((p) => p.y))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = y0 === 0 ? [0, 1] : [y0 - Math.abs(y0) * 0.1, y1 + Math.abs(y1) * 0.1];
  const sx = (v) => f.left + (v - x0) / (x1 - x0) * (f.right - f.left);
  const sy = (v) => f.bottom - (v - y0) / (y1 - y0) * (f.bottom - f.top);
  for (const t of ticks(y0, y1, 5)) {
    svg.append(
      node("line", { x1: f.left, x2: f.right, y1: sy(t.v), y2: sy(t.v), stroke: "#e6e6e6" }),
    );
    svg.append(
      node("text", { x: f.left - 6, y: sy(t.v) + 4, "text-anchor": "end", fill: "#444" }, t.label),
    );
  }
  const xt = ticks(x0, x1, Math.max(2, Math.floor((f.right - f.left) / 70)));
  for (const t of xt) {
    svg.append(
      node(
        "text",
        { x: sx(t.v), y: f.bottom + 15, "text-anchor": "middle", fill: "#444" },
        t.label,
      ),
    );
  }
  svg.append(node("line", { x1: f.left, x2: f.right, y1: f.bottom, y2: f.bottom, stroke: "#888" }));
  svg.append(
    node("text", { x: f.right, y: f.bottom + 30, "text-anchor": "end", fill: "#444" }, `${x} →`),
  );
  let lx = 10;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`)
      .join("");
    svg.append(
      node("path", {
        d,
        fill: "none",
        stroke: color,
        "stroke-width": 1.8,
        class: "series",
        "data-series": s.name,
        "data-points": s.points.length,
      }),
    );
    const last = s.points.at(-1);
    const label = last ? `${s.name} ${last.y.toFixed(3)}` : s.name;
    svg.append(node("rect", { x: lx, y: height - 15, width: 10, height: 9, fill: color }));
    svg.append(node("text", { x: lx + 14, y: height - 7 }, label));
    lx += 14 + label.length * 7 + 18;
  });
  container.replaceChildren(svg);
}
