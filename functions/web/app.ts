/**
 * The web pages: a landing page, the label viewer, the runs dashboard, the compare view and the
 * API docs — plain HTML and ES modules from ./static, Swagger UI from the npm package
 * swagger-ui-dist. Everything is served from this app: the pages load nothing from elsewhere
 * (the Content-Security-Policy says so to the browser).
 */
import { Hono } from "hono";
import { join } from "node:path";
import swaggerUiDist from "swagger-ui-dist";

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
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  json: "application/json",
};

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

/** Build the web sub-app (pages at /, /label, /runs, /compare, /docs; assets under /web/). */
export function createWebApp(options: { openapiUrl?: string } = {}): Hono {
  const { openapiUrl = "/openapi.json" } = options;
  const swaggerDir = swaggerUiDist.getAbsoluteFSPath() as string;
  const app = new Hono();
  for (const [route, name] of Object.entries(PAGES)) {
    app.get(route, () => file(join(STATIC, name), TYPES.html!));
  }
  app.get("/web/configs.json", async (c) => c.json({ configs: await readConfigs() }));
  app.get("/web/:name{[a-z0-9_-]+\\.(js|css|svg|png)}", (c) => {
    const name = c.req.param("name");
    return file(join(STATIC, name), typeOf(name));
  });
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
