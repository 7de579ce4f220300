// The label viewer: upload → POST /v1/label → the image with the token grid; hover a cell for its label.
import { api, el, nav } from "./common.js";

nav();
const $ = (id) => document.getElementById(id);
const state = { file: null, items: [], images: [], page: 0, tile: "all", cells: [], scale: 1 };
const IGNORE = -100;

async function loadChoices() {
  const [{ geometries }, { tokenizers }] = await Promise.all([
    api("/v1/geometries"),
    api("/v1/tokenizers"),
  ]);
  for (const g of geometries) {
    if (g.name !== "custom") $("geometry").append(el("option", { value: g.name }, g.name));
  }
  for (const t of tokenizers) $("tokenizer").append(el("option", { value: t }, t));
}

function setFile(f) {
  state.file = f;
  $("drop").firstChild.textContent = `${f.name} (${
    Math.round(f.size / 1024)
  } KiB) — drop another to replace, or `;
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const f = e.dataTransfer?.files?.[0];
  if (f) setFile(f);
});
$("file").addEventListener("change", () => {
  const f = $("file").files?.[0];
  if (f) setFile(f);
});

const isPdf = async (f) => new TextDecoder().decode(await f.slice(0, 4).arrayBuffer()) === "%PDF";

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("error").textContent = "";
  if (!state.file) {
    $("error").textContent = "Choose an image or a PDF first.";
    return;
  }
  const pdf = await isPdf(state.file);
  let source = $("source").value;
  if (source === "auto") source = pdf ? "pdf" : "ocr";
  const options = {
    source,
    tokenizer: $("tokenizer").value,
    geometry: { name: $("geometry").value },
    minConfidence: Number($("minConfidence").value) || 0,
  };
  const fd = new FormData();
  fd.append("image", state.file, state.file.name);
  fd.append("options", JSON.stringify(options));
  $("run").disabled = true;
  $("busy").textContent = source === "ocr" ? "reading the words (OCR)…" : "labeling…";
  try {
    const res = await api("/v1/label", { method: "POST", body: fd });
    state.items = res.items;
    state.images = source === "pdf"
      ? await pdfPages(state.file, res.items)
      : await Promise.all(res.items.map(() => loadImage(URL.createObjectURL(state.file))));
    state.page = 0;
    $("busy").textContent =
      `${res.items.length} item(s); OCR ${res.timing.ocrMs} ms, labels ${res.timing.labelMs} ms`;
    showResult();
  } catch (err) {
    $("error").textContent = err.message;
    $("busy").textContent = "";
  } finally {
    $("run").disabled = false;
  }
});

/**
 * Draw each labeled PDF page with pdf.js (served from this server), at the pixel size the
 * server labeled it at, so the token grid lies where the server put it.
 */
async function pdfPages(file, items) {
  const pdfjs = await import("/web/vendor/pdfjs/pdf.min.mjs");
  pdfjs.GlobalWorkerOptions.workerSrc = "/web/vendor/pdfjs/pdf.worker.min.mjs";
  const task = pdfjs.getDocument({
    data: new Uint8Array(await file.arrayBuffer()),
    isEvalSupported: false, // the page's CSP allows no eval
    standardFontDataUrl: "/web/vendor/pdfjs/standard_fonts/",
  });
  const doc = await task.promise;
  try {
    const out = [];
    for (const it of items) {
      const page = await doc.getPage(it.page);
      const { width, height } = it.labelSet.image;
      const unit = page.getViewport({ scale: 1 });
      const viewport = page.getViewport({ scale: width / unit.width });
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, width, height);
      await page.render({ canvasContext: ctx, canvas, viewport }).promise;
      out.push(canvas);
    }
    return out;
  } finally {
    await task.destroy();
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = src;
  });
}

function showResult() {
  $("result").hidden = false;
  const page = $("page");
  page.replaceChildren(
    ...state.items.map((it, i) =>
      el("option", { value: i }, it.page !== undefined ? `page ${it.page}` : "image")
    ),
  );
  page.value = String(state.page);
  fillTiles();
  draw();
}

function fillTiles() {
  const ls = current();
  const tiles = ls.geometry.tiles;
  const opts = [
    el("option", { value: "all" }, tiles.length > 1 ? "all but thumbnail" : "the grid"),
  ];
  if (tiles.length > 1) {
    tiles.forEach((t, i) =>
      opts.push(el("option", { value: i }, `${i}: ${t.kind} ${t.cols}×${t.rows}`))
    );
  }
  $("tile").replaceChildren(...opts);
  state.tile = "all";
}

const current = () => state.items[state.page].labelSet;

/** The cells to draw and hover: {index, x0, y0, x1, y1} in original-image pixels. */
function cellsOf(ls) {
  const out = [];
  const { tiles } = ls.geometry;
  const { width, height } = ls.image;
  tiles.forEach((t, ti) => {
    const wanted = state.tile === "all"
      ? !(t.kind === "thumbnail" && tiles.length > 1)
      : Number(state.tile) === ti;
    if (!wanted) return;
    const cw = t.width / t.cols;
    const ch = t.height / t.rows;
    for (let r = 0; r < t.rows; r++) {
      for (let c = 0; c < t.cols; c++) {
        const x0 = Math.max(0, t.x0 + c * cw);
        const y0 = Math.max(0, t.y0 + r * ch);
        const x1 = Math.min(width, t.x0 + (c + 1) * cw);
        const y1 = Math.min(height, t.y0 + (r + 1) * ch);
        if (x1 > x0 && y1 > y0) {
          out.push({ index: t.offset + r * t.cols + c, tile: ti, x0, y0, x1, y1 });
        }
      }
    }
  });
  return out;
}

function confidenceOf(ls, i) {
  const w = ls.tokens.word[i];
  return w >= 0 ? ls.words[w]?.confidence ?? null : null;
}

function visible(ls, cell) {
  const labeled = ls.tokens.label[cell.index] !== IGNORE;
  if ($("hideUnlabeled").checked && !labeled) return false;
  if ($("onlyLow").checked) {
    const c = confidenceOf(ls, cell.index);
    return labeled && c !== null && c < Number($("lowConfidence").value);
  }
  return true;
}

function draw() {
  const ls = current();
  const img = state.images[state.page];
  const canvas = $("canvas");
  const maxW = Math.min(1100, document.querySelector("main").clientWidth - 4);
  // small images are drawn larger, so their cells are big enough to point at
  state.scale = Math.min(2, maxW / ls.image.width);
  canvas.width = Math.round(ls.image.width * state.scale);
  canvas.height = Math.round(ls.image.height * state.scale);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  state.cells = cellsOf(ls).filter((c) => visible(ls, c));
  const low = Number($("lowConfidence").value);
  const s = state.scale;
  for (const c of state.cells) {
    const labeled = ls.tokens.label[c.index] !== IGNORE;
    const conf = confidenceOf(ls, c.index);
    if (labeled) {
      ctx.fillStyle = conf !== null && conf < low ? "rgba(198,47,47,0.35)" : "rgba(52,87,201,0.30)";
      ctx.fillRect(c.x0 * s, c.y0 * s, (c.x1 - c.x0) * s, (c.y1 - c.y0) * s);
    }
    ctx.strokeStyle = labeled ? "rgba(52,87,201,0.8)" : "rgba(120,130,150,0.35)";
    ctx.lineWidth = 1;
    ctx.strokeRect(c.x0 * s + 0.5, c.y0 * s + 0.5, (c.x1 - c.x0) * s - 1, (c.y1 - c.y0) * s - 1);
  }
  const st = ls.stats;
  $("summary").textContent =
    `${ls.image.width}×${ls.image.height} px → ${ls.geometry.resizedWidth}×${ls.geometry.resizedHeight}, ` +
    `${ls.geometry.tiles.length} tile(s), ${st.tokens} tokens, ${st.labeled} labeled (${
      (st.labeledFraction * 100).toFixed(1)
    } %), ` +
    `${st.wordsLabeled}/${st.words} words labeled; tokenizer ${ls.tokenizer.name}, source ${ls.source.kind}` +
    (ls.source.engine ? ` (${ls.source.engine})` : "") + `; ${state.cells.length} cells shown`;
}

/** What the tooltip says about token `i`. */
function describe(ls, i) {
  const label = ls.tokens.label[i];
  const w = ls.tokens.word[i];
  const word = w >= 0 ? ls.words[w] : null;
  const conf = confidenceOf(ls, i);
  return [
    `token ${i}`,
    `label id: ${label === IGNORE ? "none (-100, unlabeled)" : label}`,
    `piece: ${ls.tokens.text[i] === null ? "—" : JSON.stringify(ls.tokens.text[i])}`,
    `word: ${word ? JSON.stringify(word.text) : "—"}`,
    `overlap: ${(ls.tokens.overlap[i] ?? 0).toFixed(2)}`,
    `confidence: ${conf === null ? "—" : conf.toFixed(1)}`,
  ].join("\n");
}

$("canvas").addEventListener("mousemove", (e) => {
  const canvas = $("canvas");
  const r = canvas.getBoundingClientRect();
  const k = canvas.width / r.width;
  const x = (e.clientX - r.left) * k / state.scale;
  const y = (e.clientY - r.top) * k / state.scale;
  const cell = state.cells.find((c) => x >= c.x0 && x < c.x1 && y >= c.y0 && y < c.y1);
  const tip = $("tooltip");
  if (!cell) {
    tip.style.display = "none";
    return;
  }
  tip.textContent = describe(current(), cell.index);
  tip.dataset.token = String(cell.index);
  tip.style.display = "block";
  tip.style.left = `${e.clientX - r.left + 14}px`;
  tip.style.top = `${e.clientY - r.top + 14}px`;
});
$("canvas").addEventListener("mouseleave", () => ($("tooltip").style.display = "none"));

$("page").addEventListener("change", () => {
  state.page = Number($("page").value);
  fillTiles();
  draw();
});
$("tile").addEventListener("change", () => {
  state.tile = $("tile").value;
  draw();
});
for (const id of ["hideUnlabeled", "onlyLow", "lowConfidence"]) {
  $(id).addEventListener("input", draw);
}

$("download").addEventListener("click", () => {
  const ls = current();
  const blob = new Blob([JSON.stringify(ls, null, 1)], { type: "application/json" });
  const a = el("a", {
    href: URL.createObjectURL(blob),
    download: `${(state.file?.name ?? "labels").replace(/\.[^.]+$/, "")}${
      state.items.length > 1 ? `-p${state.page + 1}` : ""
    }.labels.json`,
  });
  document.body.append(a);
  a.click();
  a.remove();
});

/** For tests and the console: the shown label set and where token i's cell sits on the page. */
globalThis.labelViewer = {
  labelSet: () => (state.items.length ? current() : null),
  cellCenter: (i) => {
    const c = state.cells.find((c) => c.index === i);
    if (!c) return null;
    const r = $("canvas").getBoundingClientRect();
    const k = r.width / $("canvas").width;
    return {
      x: r.left + ((c.x0 + c.x1) / 2) * state.scale * k,
      y: r.top + ((c.y0 + c.y1) / 2) * state.scale * k,
    };
  },
};

loadChoices().catch((e) => ($("error").textContent = e.message));
