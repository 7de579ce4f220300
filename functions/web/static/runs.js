// The runs dashboard: jobs from /v1/train/jobs and /v1/eval/jobs, live curves from a job's events.
import { api, authHeaders, el, fmt, nav, postJson, subscribe } from "./common.js";
import { lineChart } from "./chart.js";

nav();
const $ = (id) => document.getElementById(id);
let configs = [];
const view = { id: null, stop: null, points: new Map() };

async function loadConfigs() {
  configs = (await api("/web/configs.json")).configs;
  $("config").replaceChildren(...configs.map((c, i) => el("option", { value: i }, c.file)));
  const tiny = configs.findIndex((c) => c.file.startsWith("tiny"));
  $("config").value = String(Math.max(0, tiny));
  pickConfig();
}

function pickConfig() {
  const c = structuredClone(configs[Number($("config").value)]?.config ?? {});
  delete c.name;
  delete c.outDir;
  $("steps").value = c.steps ?? "";
  $("checkpointEvery").value = c.checkpointEvery ?? "";
  $("configText").value = JSON.stringify(c, null, 2);
}
$("config").addEventListener("change", pickConfig);

$("start").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("startError").textContent = "";
  let config;
  try {
    config = JSON.parse($("configText").value);
  } catch (err) {
    $("startError").textContent = `config JSON: ${err.message}`;
    return;
  }
  if ($("steps").value) config.steps = Number($("steps").value);
  if ($("checkpointEvery").value) config.checkpointEvery = Number($("checkpointEvery").value);
  try {
    const job = await postJson("/v1/train/jobs", config);
    await refresh();
    select(job.id);
  } catch (err) {
    $("startError").textContent = err.message;
  }
});

const stateBadge = (s) => el("span", { class: `state ${s}` }, s);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

async function action(path, errorTarget = "startError") {
  try {
    await api(path, { method: "POST" });
  } catch (err) {
    $(errorTarget).textContent = err.message;
  }
  await refresh();
}

async function evaluate(id) {
  $("evalError").textContent = "";
  try {
    await postJson("/v1/eval/jobs", { run: id, n: 4 });
  } catch (err) {
    $("evalError").textContent = err.message;
  }
  await refresh();
}

function trainRow(j) {
  const m = j.lastMetrics ?? {};
  const buttons = [];
  if (j.state === "queued" || j.state === "running") {
    buttons.push(el("button", {
      class: "secondary",
      onclick: () => action(`/v1/train/jobs/${j.id}/cancel`),
    }, "cancel"));
  }
  if (j.state === "failed" || j.state === "cancelled") {
    buttons.push(el("button", {
      class: "secondary",
      onclick: () => action(`/v1/train/jobs/${j.id}/resume`),
    }, "resume"));
  }
  if (j.progress.done > 0 && j.state !== "running" && j.state !== "queued") {
    buttons.push(el("button", { class: "secondary", onclick: () => evaluate(j.id) }, "evaluate"));
  }
  return el(
    "tr",
    { "data-job": j.id, class: j.id === view.id ? "selected" : "" },
    el(
      "td",
      {},
      el("a", { href: `#${j.id}`, onclick: (e) => (e.preventDefault(), select(j.id)) }, j.id),
    ),
    el("td", {}, stateBadge(j.state)),
    el("td", { class: "num" }, `${j.progress.done}/${j.progress.total}`),
    el("td", { class: "num" }, fmt(m.loss)),
    el("td", { class: "num" }, fmt(m.textLoss)),
    el("td", { class: "num" }, fmt(m.visionLoss)),
    el("td", {}, when(j.createdAt)),
    el("td", {}, buttons),
  );
}

function evalRow(j) {
  const scores = j.lastMetrics?.scores;
  const text = scores
    ? Object.entries(scores).map(([s, v]) => `${s} ${fmt(v.score, 3)}`).join(", ")
    : "—";
  const step = j.lastMetrics?.checkpointStep;
  return el(
    "tr",
    { "data-job": j.id },
    el("td", {}, j.id),
    el("td", {}, j.config?.run ?? "—"),
    el("td", {}, stateBadge(j.state), j.error ? el("div", { class: "error" }, j.error) : null),
    el("td", { class: "num" }, `${j.progress.done}/${j.progress.total}`),
    el("td", {}, step !== undefined ? `step ${step}: ` : "", text),
  );
}

async function refresh() {
  const [train, ev] = await Promise.all([api("/v1/train/jobs"), api("/v1/eval/jobs")]);
  const tj = train.jobs.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  $("trainJobs").tBodies[0].replaceChildren(...tj.map(trainRow));
  $("trainEmpty").hidden = tj.length > 0;
  const ej = ev.jobs.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  $("evalJobs").tBodies[0].replaceChildren(...ej.map(evalRow));
  $("evalEmpty").hidden = ej.length > 0;
  return tj;
}

function addPoint(m) {
  if (typeof m?.step !== "number") return;
  view.points.set(m.step, m);
}

function drawChart() {
  const ms = [...view.points.values()].sort((a, b) => a.step - b.step);
  const series = (name, key) => ({
    name,
    points: ms.filter((m) => typeof m[key] === "number").map((m) => ({ x: m.step, y: m[key] })),
  });
  lineChart($("chart"), [series("text loss", "textLoss"), series("vision loss", "visionLoss")], {
    title: `${view.id}: loss per step`,
    x: "step",
    y: "loss",
    width: Math.min(900, $("detail").clientWidth - 30),
  });
}

function showJob(j) {
  $("detailState").replaceChildren(
    stateBadge(j.state),
    ` step ${j.progress.done} of ${j.progress.total}; attempts ${j.attempts}; started ${
      when(j.startedAt)
    }; finished ${when(j.finishedAt)}`,
  );
  $("detailError").textContent = j.error ?? "";
}

async function loadArtifacts(id) {
  const { artifacts } = await api(`/v1/train/jobs/${id}/artifacts`);
  $("artifacts").replaceChildren(
    ...artifacts.map((a) =>
      el(
        "li",
        {},
        el("a", {
          href: `/v1/train/jobs/${id}/artifacts/${
            a.path.split("/").map(encodeURIComponent).join("/")
          }`,
          target: "_blank",
        }, a.path),
        ` ${(a.bytes / 1024).toFixed(1)} KiB`,
      )
    ),
  );
  return artifacts;
}

/** Add the steps the job has logged so far to the curve; list its artifacts. */
async function backfill(id) {
  await loadArtifacts(id).catch(() => []);
  const res = await fetch(`/v1/train/jobs/${id}/metrics`, { headers: authHeaders() });
  if (!res.ok || view.id !== id) return;
  for (const m of (await res.json()).metrics) addPoint(m);
}

/** Show job `id`: its curve so far (its logged steps), then live from its events. */
async function select(id) {
  view.stop?.();
  view.id = id;
  view.points = new Map();
  $("detail").hidden = false;
  $("detailTitle").textContent = id;
  for (const tr of $("trainJobs").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.job === id);
  }
  await backfill(id);
  drawChart();
  view.stop = subscribe(`/v1/train/jobs/${id}/events`, (event, job) => {
    if (view.id !== id) return;
    addPoint(job.lastMetrics);
    showJob(job);
    drawChart();
    if (event !== "progress") {
      refresh();
      // events carry the latest step only: steps between two events come from the metrics route
      backfill(id).then(() => view.id === id && drawChart());
    }
  });
}

$("chart").textContent = "";
await loadConfigs().catch((e) => ($("startError").textContent = e.message));
const jobs = await refresh().catch((e) => (($("startError").textContent = e.message), []));
const wanted = location.hash.slice(1);
if (wanted && jobs.some((j) => j.id === wanted)) select(wanted);
setInterval(() => refresh().catch(() => {}), 3000);
