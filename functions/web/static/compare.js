// Compare view: lib/eval's compare report (table with paired-bootstrap intervals, lib/plot's
// charts) for the ticked runs, built by the server from their evaluation jobs' results.
import { api, authHeaders, el, nav } from "./common.js";

nav();
const $ = (id) => document.getElementById(id);
const chosen = [];
let byRun = new Map();

async function load() {
  const { jobs } = await api("/v1/eval/jobs");
  byRun = new Map();
  for (const j of jobs) {
    if (j.state !== "succeeded") continue;
    byRun.set(j.config.run, [...(byRun.get(j.config.run) ?? []), j.id]);
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
          ` ${run} (${byRun.get(run).length} evaluation${byRun.get(run).length > 1 ? "s" : ""})`,
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
  render().catch((e) => ($("error").textContent = e.message));
}

/** Markdown from compareRuns → HTML: pipe tables and paragraphs, nothing else is used there. */
function markdown(md) {
  const out = [];
  let table = null;
  for (const line of md.split("\n")) {
    if (line.startsWith("|")) {
      const cells = line.slice(1, line.endsWith("|") ? -1 : undefined).split("|").map((c) =>
        c.trim()
      );
      while (cells.length > 1 && cells.at(-1) === "") cells.pop(); // no Δ columns for one run
      if (cells.every((c) => /^-+$/.test(c) || c === "")) continue;
      if (!table) {
        table = el(
          "table",
          {},
          el("thead", {}, el("tr", {}, cells.map((c) => el("th", {}, c)))),
          el("tbody"),
        );
        out.push(table);
      } else {
        table.tBodies[0].append(
          el(
            "tr",
            {},
            cells.map((c, i) => el("td", { class: i > 1 && /^[-+0-9—]/.test(c) ? "num" : "" }, c)),
          ),
        );
      }
    } else {
      table = null;
      if (line.trim()) out.push(el("p", {}, line));
    }
  }
  return out;
}

async function render() {
  $("error").textContent = "";
  if (!chosen.length) {
    $("report").replaceChildren(el("p", { class: "muted", id: "empty" }, "Tick one or more runs."));
    $("plots").replaceChildren();
    return;
  }
  const q = chosen.map((r) => `run=${encodeURIComponent(`${r}:${byRun.get(r).join(",")}`)}`).join(
    "&",
  );
  const res = await fetch(`/web/compare.json?${q}`, { headers: authHeaders() });
  const body = await res.json();
  if (!res.ok) throw new Error(`${res.status} ${body.error?.code}: ${body.error?.message}`);
  $("report").replaceChildren(...markdown(body.markdown));
  // the charts are SVG text that lib/plot wrote (names escaped there); parsed, not run
  $("plots").replaceChildren(
    ...body.plots.map((p) => {
      const doc = new DOMParser().parseFromString(p.svg, "image/svg+xml");
      return el(
        "div",
        { class: "card chart", "data-plot": p.name },
        document.importNode(doc.documentElement, true),
      );
    }),
  );
}

load().catch((e) => ($("error").textContent = e.message));
