/**
 * The web pages in a real browser: Debian's chromium driven by playwright-core, against the real
 * server (main.ts serve) on a free port. Each step asserts on what the page shows; a failing
 * step leaves a screenshot in out/browser/.
 *
 * Chromium is a system package (`apt-get install -y chromium`, which .ci/run does); without it
 * this test fails and says so. CHROMIUM_PATH points at another binary.
 */
import { assert, assertEquals, assertGreater, assertStringIncludes } from "@std/assert";
import { Buffer } from "node:buffer";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { PDFDocument } from "@napi-rs/canvas";
import { renderPage } from "../../lib/render/mod.ts";

// page functions run in the browser, where `document` exists
// deno-lint-ignore no-explicit-any
declare const document: any, DataTransfer: any;

const root = new URL("../..", import.meta.url).pathname;
const SHOTS = `${root}out/browser`;

/** The chromium binary: CHROMIUM_PATH, else chromium or chromium-browser on PATH. */
function findChromium(): string {
  const given = Deno.env.get("CHROMIUM_PATH");
  const candidates = given ? [given] : ["/usr/bin/chromium"];
  if (!given) {
    for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
      candidates.push(`${dir}/chromium`, `${dir}/chromium-browser`);
    }
  }
  for (const c of candidates) {
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* next */ }
  }
  throw new Error(
    `chromium not found (looked for ${
      given ? `CHROMIUM_PATH=${given}` : "chromium and chromium-browser on PATH"
    }): install it with 'apt-get install -y chromium' (.ci/run does) or set CHROMIUM_PATH`,
  );
}

/** A full-page screenshot in out/browser/ (on failure; on success too with DVSFT_SCREENSHOTS=1). */
async function shot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(SHOTS, { recursive: true });
  const file = `${SHOTS}/${name.replace(/[^a-z0-9]+/gi, "-")}.png`;
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function startServer(dataDir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "serve"],
    cwd: root,
    env: { PORT: "0", DVSFT_DATA_DIR: dataDir, DVSFT_LOG: "off" },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let log = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log += value;
    const m = log.match(/listening on (http:\/\/[\d.]+:\d+)/);
    if (m) {
      // keep reading: a full pipe would stall the server
      (async () => {
        for (;;) if ((await reader.read()).done) break;
      })();
      return { base: m[1]!, child };
    }
  }
  child.kill("SIGKILL");
  throw new Error(`server did not start: ${log}`);
}

Deno.test({
  name: "browser: landing page, label viewer, live training curve and offline /docs in chromium",
  // playwright keeps its pipes and timers until the browser is gone; closed in finally
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const executablePath = findChromium();
  const dataDir = await Deno.makeTempDir({ prefix: "dvsft-web-" });
  const profile = await Deno.makeTempDir({ prefix: "dvsft-chromium-" });
  const { base, child } = await startServer(dataDir);
  let context: BrowserContext | null = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      acceptDownloads: true,
      viewport: { width: 1280, height: 900 },
    });
    // nothing but the server: a request anywhere else is refused and remembered
    const elsewhere: string[] = [];
    await context.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === "127.0.0.1" || url.protocol === "data:" || url.protocol === "blob:") {
        return route.continue();
      }
      elsewhere.push(url.href);
      return route.abort();
    });
    const ctx = context;
    const errors: string[] = [];
    let trained = "";
    const step = (name: string, f: (page: Page) => Promise<void>) =>
      t.step(name, async () => {
        const page = await ctx.newPage();
        page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
        try {
          await f(page);
          assertEquals(errors, [], "errors in the page");
          if (Deno.env.get("DVSFT_SCREENSHOTS")) await shot(page, name);
        } catch (e) {
          const file = await shot(page, name).catch(() => "(none)");
          throw new Error(`${(e as Error).message}\n(screenshot: ${file})`, { cause: e });
        } finally {
          await page.close();
        }
      });

    await step("landing page", async (page) => {
      await page.goto(`${base}/`);
      assertStringIncludes(await page.textContent("h1") ?? "", "dvsft");
      await page.waitForFunction(() =>
        document.getElementById("health")?.textContent?.startsWith("ok")
      );
      assertStringIncludes(await page.textContent("#health") ?? "", "version 0.1.0");
      const links = await page.$$eval(".cards a", (as) => as.map((a) => a.getAttribute("href")));
      assertEquals(links, ["/label", "/runs", "/compare", "/docs"]);
    });

    await step("label an uploaded image and read a cell's tooltip", async (page) => {
      await page.goto(`${base}/label`);
      await page.waitForSelector("#geometry option[value=internvl]", { state: "attached" });
      const png = renderPage({ seed: 21, width: 448, height: 280, fontSize: 24 }).png;
      await page.setInputFiles("#file", {
        name: "page.png",
        mimeType: "image/png",
        buffer: Buffer.from(png),
      });
      await page.selectOption("#geometry", "qwen2-vl");
      await page.selectOption("#tokenizer", "qwen2");
      await page.click("#run");
      await page.waitForSelector("#result:not([hidden])", { timeout: 60_000 });
      const summary = await page.textContent("#summary") ?? "";
      assertStringIncludes(summary, "448×280 px");
      type Ls = {
        tokens: { label: number[]; text: (string | null)[]; word: number[]; overlap: number[] };
        words: Array<{ text: string; confidence: number }>;
        stats: { labeled: number; tokens: number };
      };
      const ls = await page.evaluate(() =>
        (globalThis as unknown as { labelViewer: { labelSet(): unknown } }).labelViewer.labelSet()
      ) as Ls;
      assertGreater(ls.stats.labeled, 5);
      const i = ls.tokens.label.findIndex((l) => l !== -100);
      const at = await page.evaluate(
        (i) =>
          (globalThis as unknown as { labelViewer: { cellCenter(i: number): unknown } })
            .labelViewer.cellCenter(i),
        i,
      ) as { x: number; y: number };
      await page.mouse.move(at.x, at.y);
      await page.waitForSelector("#tooltip", { state: "visible" });
      const tip = await page.textContent("#tooltip") ?? "";
      const word = ls.words[ls.tokens.word[i]!]!;
      assertStringIncludes(tip, `token ${i}\n`);
      assertStringIncludes(tip, `label id: ${ls.tokens.label[i]}\n`);
      assertStringIncludes(tip, `piece: ${JSON.stringify(ls.tokens.text[i])}`);
      assertStringIncludes(tip, `word: ${JSON.stringify(word.text)}`);
      assertStringIncludes(tip, `overlap: ${ls.tokens.overlap[i]!.toFixed(2)}`);
      assertStringIncludes(tip, `confidence: ${word.confidence.toFixed(1)}`);
      // an unlabeled cell says so
      const u = ls.tokens.label.findIndex((l) => l === -100);
      const atU = await page.evaluate(
        (i) =>
          (globalThis as unknown as { labelViewer: { cellCenter(i: number): unknown } })
            .labelViewer.cellCenter(i),
        u,
      ) as { x: number; y: number };
      await page.mouse.move(atU.x, atU.y);
      await page.waitForFunction(
        (u) => document.getElementById("tooltip")?.dataset.token === String(u),
        u,
      );
      assertStringIncludes(await page.textContent("#tooltip") ?? "", "unlabeled");
      // the filter leaves only labeled cells
      await page.check("#hideUnlabeled");
      assertStringIncludes(
        await page.textContent("#summary") ?? "",
        `; ${ls.stats.labeled} cells shown`,
      );
      // "only low confidence": below 101 every labeled cell, below 0 none
      await page.check("#onlyLow");
      await page.fill("#lowConfidence", "101");
      assertStringIncludes(
        await page.textContent("#summary") ?? "",
        `; ${ls.stats.labeled} cells shown`,
      );
      await page.fill("#lowConfidence", "0");
      assertStringIncludes(await page.textContent("#summary") ?? "", "; 0 cells shown");
      await page.uncheck("#onlyLow");
      // the download is the label set shown
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.click("#download"),
      ]);
      const saved = JSON.parse(await Deno.readTextFile((await download.path())!));
      assertEquals(saved.tokens.label, ls.tokens.label);
      assertEquals(download.suggestedFilename(), "page.labels.json");
    });

    await step("label a two-page PDF, switch pages and tiles", async (page) => {
      const doc = new PDFDocument();
      for (const text of ["first page words", "second page here"]) {
        const ctx = doc.beginPage(300, 150);
        ctx.font = "18px DejaVu Sans";
        ctx.fillText(text, 20, 60);
        doc.endPage();
      }
      await page.goto(`${base}/label`);
      await page.waitForSelector("#geometry option[value=internvl]", { state: "attached" });
      // dropped on the page this time, as a user would
      const bytes = [...new Uint8Array(doc.close())];
      const dt = await page.evaluateHandle((bytes) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], "d.pdf", { type: "application/pdf" }));
        return dt;
      }, bytes);
      await page.dispatchEvent("#drop", "drop", { dataTransfer: dt });
      assertStringIncludes(await page.textContent("#drop") ?? "", "d.pdf (8 KiB)");
      await page.selectOption("#geometry", "internvl");
      await page.click("#run");
      await page.waitForSelector("#result:not([hidden])", { timeout: 30_000 });
      const pages = await page.$$eval("#page option", (os) => os.map((o) => o.textContent));
      assertEquals(pages, ["page 1", "page 2"]);
      await page.selectOption("#page", "1");
      type Ls = {
        tokens: { label: number[]; word: number[] };
        words: Array<{ text: string }>;
        geometry: { tiles: Array<{ kind: string; rows: number; cols: number }> };
      };
      const ls = await page.evaluate(() =>
        (globalThis as unknown as { labelViewer: { labelSet(): unknown } }).labelViewer.labelSet()
      ) as Ls;
      assertEquals(ls.words.map((w) => w.text), ["second", "page", "here"]);
      const i = ls.tokens.label.findIndex((l) => l !== -100);
      const at = await page.evaluate(
        (i) =>
          (globalThis as unknown as { labelViewer: { cellCenter(i: number): unknown } })
            .labelViewer.cellCenter(i),
        i,
      ) as { x: number; y: number };
      await page.mouse.move(at.x, at.y);
      await page.waitForSelector("#tooltip", { state: "visible" });
      assertStringIncludes(
        await page.textContent("#tooltip") ?? "",
        `word: ${JSON.stringify(ls.words[ls.tokens.word[i]!]!.text)}`,
      );
      // InternVL cuts this 2:1 page into two tiles and a thumbnail of 16×16 cells each
      const tiles = ls.geometry.tiles;
      assertEquals(tiles.map((t) => t.kind), ["tile", "tile", "thumbnail"]);
      await page.selectOption("#tile", "2");
      assertStringIncludes(await page.textContent("#summary") ?? "", "; 256 cells shown");
      await page.selectOption("#tile", "all");
      assertStringIncludes(await page.textContent("#summary") ?? "", "; 512 cells shown");
    });

    await step("start a tiny training job and watch its curve grow", async (page) => {
      await page.goto(`${base}/runs`);
      await page.waitForSelector("#config option", { state: "attached" });
      assertEquals(await page.inputValue("#steps"), "200"); // configs/tiny-dvsft.json
      await page.fill("#steps", "20");
      await page.fill("#checkpointEvery", "10");
      await page.click("#startButton");
      await page.waitForSelector("#detail:not([hidden])");
      const points = () =>
        page.$eval(
          'path[data-series="text loss"]',
          (p) => Number(p.getAttribute("data-points")),
        ).catch(() => 0);
      await page.waitForFunction(
        () =>
          Number(
            document.querySelector('path[data-series="text loss"]')?.getAttribute("data-points") ??
              0,
          ) >= 2,
        undefined,
        { timeout: 60_000 },
      );
      const first = await points();
      // seen while the job runs: the points came live from its events
      assertEquals(await page.textContent("#detailState .state"), "running");
      await page.waitForFunction(
        () => document.querySelector("#detailState .state")?.textContent === "succeeded",
        undefined,
        { timeout: 60_000 },
      );
      const last = await points();
      assertGreater(last, first, "the curve did not grow");
      // the finished curve has every step (those between two events come from metrics.jsonl)
      await page.waitForFunction(
        () =>
          document.querySelector('path[data-series="text loss"]')?.getAttribute("data-points") ===
            "20",
      );
      await page.waitForFunction(
        () => document.querySelector("#trainJobs tbody tr")?.textContent?.includes("succeeded"),
      );
      assertStringIncludes(await page.textContent("#trainJobs tbody tr") ?? "", "20/20");
      trained = (await page.textContent("#detailTitle")) ?? "";
      await page.waitForSelector("#artifacts a:text-is('loss.svg')");
      const href = await page.getAttribute("#artifacts a:text-is('loss.svg')", "href");
      const res = await fetch(`${base}${href}`);
      assertEquals(res.headers.get("content-type"), "image/svg+xml");
      assertStringIncludes(await res.text(), "<svg");
    });

    await step("evaluate the run from the dashboard and compare it", async (page) => {
      assertStringIncludes(trained, "train-");
      await page.goto(`${base}/runs`);
      await page.click(`#trainJobs tr[data-job="${trained}"] button:text-is("evaluate")`);
      await page.waitForFunction(
        () => document.querySelector("#evalJobs tbody tr")?.textContent?.includes("succeeded"),
        undefined,
        { timeout: 60_000 },
      );
      const row = await page.textContent("#evalJobs tbody tr") ?? "";
      assertStringIncludes(row, trained);
      assertStringIncludes(row, "step 20: text-reading 0.000"); // a 20-step tiny model reads nothing yet
      await page.goto(`${base}/compare`);
      await page.check(`#runs input[value="${trained}"]`);
      await page.waitForSelector("#report table");
      const head = await page.$$eval("#report table th", (ts) => ts.map((t) => t.textContent));
      assertEquals(head.slice(0, 3), ["suite", "metric", trained]);
      const rows = await page.$$eval(
        "#report table:first-of-type tbody tr",
        (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)),
      );
      assertEquals(rows[0], ["text-reading", "anls", "0.0"]);
      // the scores chart: every bar flat, drawn by lib/plot
      await page.waitForSelector('[data-plot="scores"] svg');
      const heights = await page.$$eval(
        '[data-plot="scores"] rect.bar',
        (rs) => rs.map((r) => r.getAttribute("height")),
      );
      assertGreater(heights.length, 0);
      assertEquals(new Set(heights), new Set(["0"]));
    });

    await step("cancel a running job and resume it from the dashboard", async (page) => {
      await page.goto(`${base}/runs`);
      await page.waitForSelector("#config option", { state: "attached" });
      await page.fill("#steps", "2000");
      await page.click("#startButton");
      await page.waitForFunction(
        () => document.querySelector("#detailState .state")?.textContent === "running",
        undefined,
        { timeout: 30_000 },
      );
      const id = (await page.textContent("#detailTitle")) ?? "";
      await page.click(`#trainJobs tr[data-job="${id}"] button:text-is("cancel")`);
      await page.waitForFunction(
        () => document.querySelector("#detailState .state")?.textContent === "cancelled",
        undefined,
        { timeout: 30_000 },
      );
      await page.click(`#trainJobs tr[data-job="${id}"] button:text-is("resume")`);
      await page.waitForFunction(
        (id) =>
          document.querySelector(`#trainJobs tr[data-job="${id}"] .state`)?.textContent ===
            "running",
        id,
        { timeout: 30_000 },
      );
      // running again: its second attempt
      const job = await (await fetch(`${base}/v1/train/jobs/${id}`)).json();
      assertEquals(job.attempts, 2);
      await fetch(`${base}/v1/train/jobs/${id}/cancel`, { method: "POST" }).then((r) =>
        r.body?.cancel()
      );
    });

    await step("/docs renders Swagger UI with the network closed", async (page) => {
      await page.goto(`${base}/docs`);
      await page.waitForSelector(".swagger-ui .info .title", { timeout: 20_000 });
      assertStringIncludes(await page.textContent(".swagger-ui .info .title") ?? "", "dvsft");
      await page.waitForSelector(".opblock-summary-path");
      const paths = await page.$$eval(
        ".opblock-summary-path",
        (ps) => ps.map((p) => p.textContent),
      );
      assert(paths.includes("/v1/label"), `operations listed: ${paths.join(", ")}`);
      assert(paths.includes("/v1/train/jobs"), `operations listed: ${paths.join(", ")}`);
    });

    assertEquals(elsewhere, [], "the pages asked for something other than the server");
  } finally {
    await context?.close();
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
});
