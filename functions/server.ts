/**
 * Compose the functions into one API app (main.ts), or serve one alone
 * (functions/<name>/main.ts). Health, OpenAPI document and docs page live here.
 */
import { type ApiAppOptions, apiKeysFromEnv, createApiApp } from "./shared/http.ts";
import { createLabelApp, type LabelAppOptions } from "./label/app.ts";
import { createTrainApp, type TrainAppOptions } from "./train/app.ts";
import { type JobsContext, openJobs } from "./shared/jobs.ts";
import { createEvalApp, type EvalAppOptions } from "./eval/app.ts";
import { getTokenizer } from "../lib/tokenizer/mod.ts";
import { createMetrics, serveWithHeaderTimeout } from "../lib/http/mod.ts";
import { createWebApp } from "./web/app.ts";

export interface ServerOptions
  extends ApiAppOptions, LabelAppOptions, TrainAppOptions, EvalAppOptions {
  functions?: Array<"label" | "train" | "eval">;
}

export const VERSION = "0.1.0";

/** The API app and a `close()` that releases OCR workers. */
export function createServerApp(options: ServerOptions = {}) {
  const { functions = ["label", "train", "eval"] } = options;
  const metrics = createMetrics();
  const app = createApiApp({ ...options, metrics });
  const runners: Record<string, () => { running: number; queued: number } | null> = {};
  metrics.jobs = {
    running: (k) => runners[k]?.()?.running ?? 0,
    queued: (k) => runners[k]?.()?.queued ?? 0,
  };
  app.get(
    "/metrics",
    async (c) =>
      c.body(await metrics.registry.metrics(), 200, {
        "content-type": metrics.registry.contentType,
      }),
  );
  const closers: Array<() => Promise<void>> = [];
  let ready = false;
  app.get("/healthz", (c) => c.json({ status: "ok", version: VERSION }));
  app.get("/readyz", async (c) => {
    if (!ready) {
      try {
        await getTokenizer("qwen2"); // the first request would otherwise pay the 0.6 s load
        ready = true;
      } catch (e) {
        return c.json({ status: "not_ready", reason: (e as Error).message }, 503);
      }
    }
    return c.json({ status: "ready", functions });
  });
  if (functions.includes("label")) {
    const label = createLabelApp({
      ...options,
      dataRoot: options.dataRoot ?? Deno.env.get("DVSFT_DATA_DIR") ?? "out",
    });
    app.route("/", label.app);
    metrics.ocr = {
      active: () => label.ocrStats().active,
      queued: () => label.ocrStats().queued,
      workers: () => label.ocrStats().workers,
    };
    closers.push(label.close);
  }
  // one job store for training and evaluation
  let jobs: JobsContext | null = null;
  if (functions.includes("train") || functions.includes("eval")) {
    jobs = openJobs(options.dataRoot ?? Deno.env.get("DVSFT_DATA_DIR") ?? "out");
  }
  if (functions.includes("train")) {
    const train = createTrainApp({ ...options, metrics }, jobs!);
    app.route("/", train.app);
    runners.train = train.runner;
    closers.push(train.close);
  }
  if (functions.includes("eval")) {
    const ev = createEvalApp(options, jobs!);
    app.route("/", ev.app);
    runners.eval = ev.runner;
    closers.push(ev.close);
  }
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "dvsft",
      version: VERSION,
      description: "Direct vision supervision: labeling, training, evaluation",
    },
  });
  // the web pages and /docs, with their assets served from here (no CDN)
  app.route(
    "/",
    createWebApp({
      openapiUrl: "/openapi.json",
      dataRoot: jobs?.dataRoot,
      apiKeys: options.apiKeys ?? apiKeysFromEnv(),
    }),
  );
  return {
    app,
    close: async () => {
      await Promise.all(closers.map((f) => f()));
      await jobs?.close(); // after the runners: they write final job states
    },
  };
}

/** Serve until SIGINT/SIGTERM; then stop taking requests, finish in-flight ones, release workers. */
export async function serve(
  options: ServerOptions & {
    port?: number;
    hostname?: string;
    /** Longest request headers may take, ms; 0: none. @default 10000 (env DVSFT_HEADER_TIMEOUT_MS) */
    headerTimeoutMs?: number;
  } = {},
): Promise<void> {
  const {
    port = Number(Deno.env.get("PORT") ?? 8000),
    hostname = Deno.env.get("HOST") ?? "127.0.0.1",
  } = options;
  const { app, close } = createServerApp(options);
  const ac = new AbortController();
  const headerTimeoutMs = Number(
    options.headerTimeoutMs ?? Deno.env.get("DVSFT_HEADER_TIMEOUT_MS") ?? 10_000,
  );
  const onListen = ({ hostname, port }: { hostname: string; port: number }) =>
    console.log(`dvsft listening on http://${hostname}:${port} (web: /, docs: /docs)`);
  // Deno.serve has no header read timeout: a front listener adds one (0 turns it off)
  const server = headerTimeoutMs > 0
    ? await serveWithHeaderTimeout(
      { port, hostname, headerTimeoutMs, signal: ac.signal, onListen },
      app.fetch,
    )
    : Deno.serve({ port, hostname, signal: ac.signal, onListen }, app.fetch);
  const stop = () => ac.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  await close();
}
