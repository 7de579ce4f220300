/**
 * The Hono pieces every function shares: the app factory with one validation hook and one
 * error handler, body limits, content-type guard, health routes, OpenAPI document.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { timingSafeEqual } from "node:crypto";
import { routePath } from "hono/route";
import { timeout } from "hono/timeout";
import {
  ApiError,
  ErrorBodySchema,
  type ServerMetrics,
  toErrorResponse,
  zodIssues,
} from "../../lib/http/mod.ts";
import { LimitError } from "../../lib/jobs/limits.ts";

// deno-lint-ignore ban-types
export type AppEnv = { Variables: {} };

const ERROR_DESCRIPTIONS = {
  400: "Invalid request (validation issues listed)",
  401: "Missing or invalid API key (only when keys are set)",
  404: "No such job, run, dataset or file",
  409: "Conflict with the job's or run's state",
  413: "Body, image or a requested size over its limit (the message names the limit)",
  415: "Unsupported media type",
  422: "Input understood but not processable (e.g. a config that cannot fit the job memory cap)",
  503: "Busy: retry after the Retry-After seconds",
  504: "The request took longer than its time limit",
} as const;
type ErrorStatus = keyof typeof ERROR_DESCRIPTIONS;

/** OpenAPI entries for the error shape, for the statuses a route returns. */
export function errorsFor<const S extends ErrorStatus>(
  ...statuses: S[]
): {
  [K in S]: {
    description: string;
    content: { "application/json": { schema: typeof ErrorBodySchema } };
  };
} {
  return Object.fromEntries(statuses.map((s) => [s, {
    description: ERROR_DESCRIPTIONS[s],
    content: { "application/json": { schema: ErrorBodySchema } },
  }])) as never;
}

/** The error statuses of a route with a body (and 401, which every /v1 route may return). */
export const errorResponses = errorsFor(400, 401, 413, 415, 422, 503);

/** Refuse requests whose Content-Type is not one of `types` (415). */
export function requireContentType(types: string[]): MiddlewareHandler {
  return async function requireContentTypeHandler(c, next) {
    const ct = (c.req.header("content-type") ?? "").toLowerCase();
    if (!types.some((t) => ct.startsWith(t))) {
      throw new ApiError(
        415,
        "unsupported_media_type",
        `Content-Type must be one of ${types.join(", ")}, got '${ct || "(none)"}'`,
      );
    }
    await next();
  };
}

/**
 * A request body must arrive within `ms` (408 otherwise): a client that sends it a byte at a
 * time cannot hold a request (and its memory) open for long.
 */
export function bodyReadTimeout(ms: number): MiddlewareHandler {
  return async function bodyReadTimeoutHandler(c, next) {
    const body = c.req.raw.body;
    if (!body || !(ms > 0)) return await next();
    const deadline = performance.now() + ms;
    const reader = body.getReader();
    let timedOut = false;
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ApiError(
                  408,
                  "body_timeout",
                  `Request body took longer than ${ms} ms to arrive`,
                ),
              ),
            Math.max(0, deadline - performance.now()),
          );
        });
        try {
          const r = await Promise.race([reader.read(), late]);
          if (r.done) ctrl.close();
          else ctrl.enqueue(r.value);
        } catch (e) {
          // a client that went away is not a slow client
          if (e instanceof ApiError && e.code === "body_timeout") timedOut = true;
          reader.cancel().catch(() => {});
          ctrl.error(e);
        } finally {
          clearTimeout(timer);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    });
    c.req.raw = new Request(c.req.raw, { body: stream, duplex: "half" } as RequestInit);
    await next();
    // a body parser reports any read error as a malformed body (400): say what happened
    if (timedOut) {
      c.res = new Response(
        JSON.stringify({
          error: {
            code: "body_timeout",
            message: `Request body took longer than ${ms} ms to arrive`,
          },
        }),
        { status: 408, headers: { "content-type": "application/json", connection: "close" } },
      );
    }
  };
}

/** Options of {@linkcode createApiApp}. */
export interface ApiAppOptions {
  /** Largest request body in bytes. @default 32 MiB */
  maxBodyBytes?: number;
  /** Bearer keys for /v1 routes; none → open (local mode). @default env DVSFT_API_KEYS (comma-separated) */
  apiKeys?: string[];
  /** Longest a labeling request may take, in ms. @default 120000 (env DVSFT_REQUEST_TIMEOUT_MS) */
  requestTimeoutMs?: number;
  /** Longest a request body may take to arrive, ms. @default 60000 (env DVSFT_BODY_TIMEOUT_MS) */
  bodyTimeoutMs?: number;
  metrics?: ServerMetrics;
  /** One line per request (method, path, status, ms) on stdout. @default env DVSFT_LOG, else "off" */
  requestLog?: RequestLogFormat;
}

export type RequestLogFormat = "off" | "text" | "json";

/** Log one line per request when it is answered: method, path, status and milliseconds. */
export function requestLogger(
  format: Exclude<RequestLogFormat, "off">,
  write: (line: string) => void = console.log,
): MiddlewareHandler {
  return async function requestLogHandler(c, next) {
    const t0 = performance.now();
    await next();
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    const { method, path } = c.req;
    const status = c.res.status;
    write(
      format === "json"
        ? JSON.stringify({ time: new Date().toISOString(), method, path, status, ms })
        : `${method} ${path} ${status} ${ms}ms`,
    );
  };
}

/** Content type of an artifact by its file name (so SVG and PNG show in a browser). */
export function contentTypeOf(path: string): string {
  const ext = path.toLowerCase().split(".").at(-1) ?? "";
  return ({
    svg: "image/svg+xml",
    png: "image/png",
    jpg: "image/jpeg",
    jpeg: "image/jpeg",
    json: "application/json",
    jsonl: "application/x-ndjson",
    md: "text/markdown; charset=utf-8",
    txt: "text/plain; charset=utf-8",
    csv: "text/csv; charset=utf-8",
  } as Record<string, string>)[ext] ?? "application/octet-stream";
}

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

/** The keys in DVSFT_API_KEYS (comma-separated; none → open). */
export function apiKeysFromEnv(): string[] {
  return (Deno.env.get("DVSFT_API_KEYS") ?? "").split(",").map((k) => k.trim()).filter(Boolean);
}

/** Require `Authorization: Bearer <key>` for one of `keys` (compared in constant time). */
export function apiKeyAuth(keys: string[]): MiddlewareHandler {
  const wanted = Promise.all(keys.map(digest));
  return async function apiKeyAuthHandler(c, next) {
    const header = c.req.header("authorization") ?? "";
    const m = header.match(/^Bearer\s+(.+)$/i);
    const given = await digest(m?.[1]?.trim() ?? "");
    let ok = false;
    // compare against every key, always: the time does not depend on which key matched
    for (const w of await wanted) ok = timingSafeEqual(w, given) || ok;
    if (!m || !ok) {
      c.header("WWW-Authenticate", 'Bearer realm="dvsft"');
      throw new ApiError(
        401,
        "unauthorized",
        m ? "Invalid API key" : "Missing 'Authorization: Bearer <key>' header",
      );
    }
    await next();
  };
}

function parseLogFormat(v: string | undefined): RequestLogFormat {
  if (v === undefined || v === "") return "off";
  if (v === "off" || v === "text" || v === "json") return v;
  throw new Error(`DVSFT_LOG must be off, text or json, got '${v}'`);
}

/** An OpenAPIHono app with the shared error handling and body limit. */
export function createApiApp(options: ApiAppOptions = {}): OpenAPIHono<AppEnv> {
  const {
    maxBodyBytes = 32 * 1024 * 1024,
    apiKeys = apiKeysFromEnv(),
    requestTimeoutMs = Number(Deno.env.get("DVSFT_REQUEST_TIMEOUT_MS") ?? 120_000),
    bodyTimeoutMs = Number(Deno.env.get("DVSFT_BODY_TIMEOUT_MS") ?? 60_000),
    metrics,
  } = options;
  const requestLog = options.requestLog ?? parseLogFormat(Deno.env.get("DVSFT_LOG"));
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new ApiError(
          400,
          "invalid_request",
          "Request failed validation",
          zodIssues(result.error),
        );
      }
    },
  });
  if (requestLog !== "off") app.use("*", requestLogger(requestLog));
  if (metrics) {
    app.use("*", async function metricsHandler(c, next) {
      const t0 = performance.now();
      await next();
      const route = routePath(c, -1) || "unmatched";
      metrics.requests.inc({ method: c.req.method, route, status: String(c.res.status) });
      metrics.latency.observe({ method: c.req.method, route }, (performance.now() - t0) / 1000);
    });
  }
  if (apiKeys.length > 0) {
    const auth = apiKeyAuth(apiKeys);
    app.use("/v1/*", auth);
    // the API's description is the API's: behind the same keys (health, readiness, metrics stay open)
    app.use("/openapi.json", auth);
    app.use("/docs", auth);
  }
  app.use(
    "/v1/label",
    timeout(
      requestTimeoutMs,
      () =>
        new ApiError(504, "timeout", `Request took longer than ${requestTimeoutMs} ms`) as never,
    ),
  );
  app.use("/v1/*", bodyReadTimeout(bodyTimeoutMs));
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: () => {
        throw new ApiError(
          413,
          "body_too_large",
          `Request body exceeds the limit of ${maxBodyBytes} bytes`,
        );
      },
    }),
  );
  app.onError((err, c) => {
    if (err instanceof HTTPException && !(err.cause instanceof Error)) {
      // Hono's own (e.g. a malformed JSON or multipart body)
      const status = err.status >= 500 ? 400 : err.status;
      return c.json({
        error: { code: "bad_request", message: err.message || "Malformed request body" },
      }, status);
    }
    const cause = err instanceof HTTPException && err.cause ? err.cause : err;
    if (cause instanceof LimitError) {
      const code = cause.status === 413 ? "too_large" : "exceeds_memory";
      return c.json({ error: { code, message: cause.message } }, cause.status);
    }
    const { status, body, headers } = toErrorResponse(cause);
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.json(body, status as 400);
  });
  app.notFound((c) =>
    c.json(
      { error: { code: "not_found", message: `No route for ${c.req.method} ${c.req.path}` } },
      404,
    )
  );
  return app;
}
