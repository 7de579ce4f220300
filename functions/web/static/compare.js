// Compare view: the latest finished evaluation of each chosen run, per suite, with deltas against
// the first; mean score against checkpoint step from every evaluation of those runs.
import { api, el, fmt, nav } from "./common.js";
import { lineChart } from "./chart.js";

nav();
const $ = (id) => document.getElementById(id);
const chosen = [];
let byRun = new Map();

const mean = (scores) => {
  const v = Object.values(scores).map((s) => s.score);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};

async function load() {
  const { jobs } = await api("/v1/eval/jobs");
  byRun = new Map();
  for (const j of jobs) {
    if (j.state !== "succeeded" || !j.lastMetrics?.scores) continue;
    const list = byRun.get(j.config.run) ?? [];
    list.push({
      step: j.lastMetrics.checkpointStep,
      scores: j.lastMetrics.scores,
      at: j.finishedAt,
    });
    byRun.set(j.config.run, list);
  }
  for (const list of byRun.values()) {
    list.sort((a, b) => a.step - b.step || a.at.localeCompare(b.at));
  }
  $("runs").replaceChildren(
    ...[...byRun.keys()].sort().map((run) =>
      el(
        "label",
        { class: "field" },
        el(
          "span",
          {},
          el("input", {
            type: "checkbox",
            value: run,
            onchange: (e) => toggle(run, e.target.checked),
          }),
          ` ${run}`,
        ),
      )
    ),
  );
  if (!byRun.size) {
    $("error").textContent = "No finished evaluation jobs yet (start one from Runs).";
  }
}

function toggle(run, on) {
  const i = chosen.indexOf(run);
  if (on && i < 0) chosen.push(run);
  if (!on && i >= 0) chosen.splice(i, 1);
  render();
}

function render() {
  const latest = chosen.map((r) => byRun.get(r).at(-1));
  const suites = [...new Set(latest.flatMap((l) => Object.keys(l.scores)))];
  $("empty").hidden = chosen.length >= 2;
  $("table").tHead.replaceChildren(
    el(
      "tr",
      {},
      el("th", {}, "suite"),
      chosen.map((r, i) => el("th", { class: "num" }, `${r} (step ${latest[i].step})`)),
      chosen.slice(1).map((r) => el("th", { class: "num" }, `Δ ${r}`)),
    ),
  );
  const rows = suites.map((s) => {
    const v = latest.map((l) => l.scores[s]?.score);
    return el(
      "tr",
      {},
      el("td", {}, s),
      v.map((x) => el("td", { class: "num" }, fmt(x))),
      v.slice(1).map((x) =>
        el(
          "td",
          { class: "num" },
          typeof x === "number" && typeof v[0] === "number"
            ? (x - v[0] >= 0 ? "+" : "") + (x - v[0]).toFixed(3)
            : "—",
        )
      ),
    );
  });
  const m = latest.map((l) => mean(l.scores));
  rows.push(
    el(
      "tr",
      {},
      el("td", {}, el("b", {}, "mean")),
      m.map((x) => el("td", { class: "num" }, fmt(x))),
      m.slice(1).map((x) =>
        el("td", { class: "num" }, (x - m[0] >= 0 ? "+" : "") + (x - m[0]).toFixed(3))
      ),
    ),
  );
  $("table").tBodies[0].replaceChildren(...(chosen.length ? rows : []));
  lineChart(
    $("chart"),
    chosen.map((r) => ({
      name: r,
      points: byRun.get(r).map((e) => ({ x: e.step, y: mean(e.scores) })),
    })),
    {
      title: "Mean score over suites against checkpoint step",
      x: "step",
      y: "mean score",
      width: Math.min(900, $("chart").clientWidth || 640),
    },
  );
}

load().catch((e) => ($("error").textContent = e.message));
