/**
 * Prometheus metrics of one server (prom-client, one registry per server): request counts
 * and latencies, OCR pool use and queue depth, jobs, training step time.
 */
import client from "prom-client";

export interface ServerMetrics {
  registry: client.Registry;
  requests: client.Counter<"method" | "route" | "status">;
  latency: client.Histogram<"method" | "route">;
  /** Sources sampled at scrape time. */
  ocr: { active: () => number; queued: () => number; workers: () => number } | null;
  jobs: { running: (kind: string) => number; queued: (kind: string) => number } | null;
  trainStepSeconds: client.Gauge;
}

export function createMetrics(): ServerMetrics {
  const registry = new client.Registry();
  const m: ServerMetrics = {
    registry,
    requests: new client.Counter({
      name: "dvsft_http_requests_total",
      help: "HTTP requests",
      labelNames: ["method", "route", "status"],
      registers: [registry],
    }),
    latency: new client.Histogram({
      name: "dvsft_http_request_duration_seconds",
      help: "HTTP request latency",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    ocr: null,
    jobs: null,
    trainStepSeconds: new client.Gauge({
      name: "dvsft_train_step_seconds",
      help: "Duration of the last training step reported",
      registers: [registry],
    }),
  };
  new client.Gauge({
    name: "dvsft_ocr_active",
    help: "OCR pages being read",
    registers: [registry],
    collect() {
      this.set(m.ocr?.active() ?? 0);
    },
  });
  new client.Gauge({
    name: "dvsft_ocr_queue_depth",
    help: "OCR pages waiting",
    registers: [registry],
    collect() {
      this.set(m.ocr?.queued() ?? 0);
    },
  });
  new client.Gauge({
    name: "dvsft_ocr_pool_size",
    help: "OCR workers or processes allowed at once",
    registers: [registry],
    collect() {
      this.set(m.ocr?.workers() ?? 0);
    },
  });
  new client.Gauge({
    name: "dvsft_jobs",
    help: "Jobs by kind and state (running, queued)",
    labelNames: ["kind", "state"],
    registers: [registry],
    collect() {
      for (const kind of ["train", "eval"]) {
        this.set({ kind, state: "running" }, m.jobs?.running(kind) ?? 0);
        this.set({ kind, state: "queued" }, m.jobs?.queued(kind) ?? 0);
      }
    },
  });
  return m;
}
