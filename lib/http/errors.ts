/**
 * One JSON error shape for every route: `{ error: { code, message, issues? } }`, and the
 * mapping from the errors lib/ throws to HTTP statuses. No Hono import here: the edge
 * (functions/*) wires `toErrorResponse` into `app.onError`.
 */
import { z } from "zod";
import { ImageError } from "../image/mod.ts";
import { LabelInputError, LabelRequestError, UnsupportedInputError } from "../labels/mod.ts";
import { TokenizerError } from "../tokenizer/mod.ts";
import { PdfError } from "../pdf/mod.ts";
import { QueueFullError } from "../util/limiter.ts";
import { Base64Error } from "../util/base64.ts";
import { PathError } from "../util/paths.ts";

export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** An error the API answers with a given status and code. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues?: Array<{ path: string; message: string }>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

/** zod issues in the error shape's form. */
export function zodIssues(error: z.ZodError): Array<{ path: string; message: string }> {
  return error.issues.map((i) => ({
    path: i.path.map(String).join(".") || "(root)",
    message: i.message,
  }));
}

/** Map any thrown value to a status, headers and an error body. Unknown errors → 500. */
export function toErrorResponse(
  err: unknown,
): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const make = (
    status: number,
    code: string,
    message: string,
    issues?: ErrorBody["error"]["issues"],
    headers = {},
  ) => ({
    status,
    headers,
    body: { error: issues ? { code, message, issues } : { code, message } },
  });
  if (err instanceof ApiError) {
    return make(err.status, err.code, err.message, err.issues, err.headers);
  }
  if (err instanceof z.ZodError) {
    return make(400, "invalid_request", "Request failed validation", zodIssues(err));
  }
  if (err instanceof PathError) {
    return make(err.notFound ? 404 : 400, err.notFound ? "not_found" : "bad_path", err.message);
  }
  if (err instanceof Base64Error) return make(400, "invalid_base64", err.message);
  if (err instanceof ImageError) return make(err.status, err.code, err.message);
  if (err instanceof TokenizerError) return make(400, "unknown_tokenizer", err.message);
  if (err instanceof LabelInputError) return make(400, "invalid_input", err.message);
  if (err instanceof LabelRequestError) return make(400, "invalid_request", err.message);
  if (err instanceof UnsupportedInputError) return make(415, "unsupported_pdf", err.message);
  if (err instanceof PdfError) return make(err.status, err.code, err.message);
  if (err instanceof QueueFullError) {
    return make(503, "busy", `Server busy: ${err.message}; retry later`, undefined, {
      "Retry-After": "2",
    });
  }
  // errors of modules the HTTP layer does not load (datasets, suites): matched by name
  if (err instanceof Error && (err.name === "SuiteRefError" || err.name === "SuiteFileError")) {
    return make(400, "invalid_suite", err.message);
  }
  if (err instanceof Error && err.name === "DatasetError") {
    return make(422, "invalid_dataset", err.message);
  }
  // geometry and other argument checks on valid-looking input (e.g. aspect ratio > 200)
  if (err instanceof RangeError) return make(422, "unprocessable", err.message);
  console.error(err);
  return make(500, "internal", "Internal error");
}
