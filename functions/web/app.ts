/**
 * The web pages: a landing page, the label viewer, the runs dashboard, the compare view and the
 * API docs — plain HTML and ES modules from ./static, Swagger UI from the npm package
 * swagger-ui-dist. Everything is served from this app: the pages load nothing from elsewhere
 * (the Content-Security-Policy says so to the browser).
 */
import { Hono } from "hono";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import swaggerUiDist from "swagger-ui-dist";
// a static import, so that the package is installed with the app; its browser build draws PDFs
import "pdfjs-dist/package.json" with { type: "json" };
import { z } from "zod";
import { compareRuns, readRunMetrics } from "../../lib/eval/mod.ts";
import { dataRootPaths, readEvaluations } from "../../lib/runs/mod.ts";
import { ApiError, toErrorResponse } from "../../lib/http/mod.ts";
import { apiKeyAuth } from "../shared/http.ts";

const STATIC = new URL("./static/", import.meta.url).pathname;
const CONFIGS = new URL("../../configs/", import.meta.url).pathname;

const PAGES: Record<string, string> = {
  "/": "index.html",
  "/label": "label.html",
  "/runs": "runs.html",
  "/compare": "compare.html",
};

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  json: "application/json",
};

/** pdf.js's browser files that the label viewer uses to draw PDF pages. */
const PDFJS_FILES = ["pdf.min.mjs", "pdf.worker.min.mjs"];

/** Swagger UI's files that /docs uses (nothing else of the package is reachable). */
const SWAGGER_FILES = ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"];

// swagger-ui-dist sets styles inline; scripts only from here
const CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const typeOf = (name: string) => TYPES[name.split(".").at(-1) ?? ""] ?? "application/octet-stream";

async function file(path: string, type: string): Promise<Response> {
  try {
    return new Response(await Deno.readFile(path), {
      headers: {
        "content-type": type,
        "content-security-policy": CSP,
        "cache-control": "no-cache",
      },
    });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return Response.json({ error: { code: "not_found", message: `No file '${path}'` } }, {
        status: 404,
      });
    }
    throw e;
  }
}

/** The shipped training configs (configs/*.json) for the dashboard's start form. */
async function readConfigs(): Promise<Array<{ file: string; config: unknown }>> {
  const out: Array<{ file: string; config: unknown }> = [];
  for await (const e of Deno.readDir(CONFIGS)) {
    if (e.isFile && e.name.endsWith(".json")) {
      out.push({
        file: e.name,
        config: JSON.parse(await Deno.readTextFile(join(CONFIGS, e.name))),
      });
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

const TRAIN_ID = /^train-[a-z0-9]+-[a-f0-9]{8}$/;
const EVAL_ID = /^eval-[a-z0-9]+-[a-f0-9]{8}$/;
/**
 * `run=<train job id>[:<eval job id>,…]`, one to eight times. The evaluations are the run's own
 * (lib/runs: every job and `deno task eval` store them with the run); job ids, when given, are
 * only checked for their shape.
 */
const CompareQuerySchema = z.array(
  z.string().max(2000).transform((s, ctx) => {
    const [run = "", evals = ""] = s.split(":");
    const ids = evals.split(",").filter(Boolean);
    if (!TRAIN_ID.test(run)) {
      ctx.addIssue({ code: "custom", message: `'${run}' is not a training job id` });
    }
    const bad = ids.find((id) => !EVAL_ID.test(id));
    if (bad !== undefined || ids.length > 50) {
      ctx.addIssue({
        code: "custom",
        message: `run '${run}': expected up to 50 evaluation job ids, got '${bad ?? evals}'`,
      });
    }
    return { run };
  }),
).min(1, "pick one or more runs").max(8, "at most 8 runs");

/**
 * The compare report of lib/eval (per-suite table with paired-bootstrap intervals, plots from
 * lib/plot) for training runs and their stored evaluations — what `deno task compare` reports.
 */
async function compareReport(dataRoot: string, query: string[]) {
  const parsed = CompareQuerySchema.safeParse(query);
  if (!parsed.success) {
    throw new ApiError(
      400,
      "invalid_request",
      parsed.error.issues.map((i) => i.message).join("; "),
    );
  }
  const root = dataRootPaths(dataRoot);
  const runs = await Promise.all(parsed.data.map(async ({ run }) => {
    const runDir = join(root.runs, run);
    const evals = await readEvaluations(runDir);
    if (evals.length === 0) {
      throw new ApiError(404, "not_found", `Run '${run}' has no evaluation`);
    }
    const m = await readRunMetrics(runDir);
    return { name: run, evals, ...(m ? { losses: m.losses, final: m.final } : {}) };
  }));
  return compareRuns(runs);
}

/** Build the web sub-app (pages at /, /label, /runs, /compare, /docs; assets under /web/). */
export function createWebApp(
  options: {
    openapiUrl?: string;
    dataRoot?: string;
    /** Keys that the compare report (it reads evaluation results) asks for, like /v1. */
    apiKeys?: string[];
  } = {},
): Hono {
  const { openapiUrl = "/openapi.json" } = options;
  const dataRoot = options.dataRoot ?? Deno.env.get("DVSFT_DATA_DIR") ?? "out";
  const swaggerDir = swaggerUiDist.getAbsoluteFSPath() as string;
  const pdfjsDir = dirname(fileURLToPath(import.meta.resolve("pdfjs-dist/package.json")));
  const app = new Hono();
  // the same error body as /v1 (this app also runs alone, in tests)
  app.onError((err, c) => {
    const { status, body, headers } = toErrorResponse(err);
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.json(body, status as 400);
  });
  for (const [route, name] of Object.entries(PAGES)) {
    app.get(route, () => file(join(STATIC, name), TYPES.html!));
  }
  if (options.apiKeys?.length) app.use("/web/compare.json", apiKeyAuth(options.apiKeys));
  app.get(
    "/web/compare.json",
    async (c) => c.json(await compareReport(dataRoot, c.req.queries("run") ?? [])),
  );
  app.get("/web/configs.json", async (c) => c.json({ configs: await readConfigs() }));
  app.get("/web/:name{[a-z0-9_-]+\\.(js|css|svg|png)}", (c) => {
    const name = c.req.param("name");
    return file(join(STATIC, name), typeOf(name));
  });
  app.get("/web/vendor/pdfjs/:name", (c) => {
    const name = c.req.param("name");
    if (!PDFJS_FILES.includes(name)) {
      return c.json({ error: { code: "not_found", message: `No pdf.js file '${name}'` } }, 404);
    }
    return file(join(pdfjsDir, "build", name), TYPES.js!);
  });
  app.get(
    "/web/vendor/pdfjs/standard_fonts/:name{[A-Za-z0-9_-]+\\.(pfb|ttf)}",
    (c) => file(join(pdfjsDir, "standard_fonts", c.req.param("name")), "application/octet-stream"),
  );
  app.get("/docs", () => file(join(STATIC, "docs.html"), TYPES.html!));
  app.get("/docs/init.js", (c) =>
    c.body(
      `window.ui = SwaggerUIBundle({ url: ${
        JSON.stringify(openapiUrl)
      }, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null });\n`,
      200,
      { "content-type": TYPES.js!, "content-security-policy": CSP },
    ));
  app.get("/docs/assets/:name", (c) => {
    const name = c.req.param("name");
    if (!SWAGGER_FILES.includes(name)) {
      return c.json({ error: { code: "not_found", message: `No docs asset '${name}'` } }, 404);
    }
    return file(join(swaggerDir, name), typeOf(name));
  });
  return app;
}
