/**
 * The training function: jobs over HTTP. `POST /v1/train/jobs` (config) → job; state,
 * server-sent events, cancel, resume, artifacts. Jobs live in Deno KV; runs in workers.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  dataRootPaths,
  listRunFiles,
  readMetrics,
  runFilePath,
  StepMetricsSchema,
} from "../../lib/runs/mod.ts";
import { relative } from "node:path";
import { resolveInside } from "../../lib/util/paths.ts";
import {
  checkDatasetSize,
  checkTrainJob,
  isSuiteName,
  type JobLimits,
  JobSchema,
} from "../../lib/jobs/mod.ts";
import { SUITES } from "../../lib/data/mod.ts";
import { hfModelPath, TrainConfigSchema } from "../../lib/train/mod.ts";
import { ApiError, type ServerMetrics } from "../../lib/http/mod.ts";
import { type AppEnv, contentTypeOf, errorsFor, requireContentType } from "../shared/http.ts";
import { jobEvents, jobRunner, type JobsContext } from "../shared/jobs.ts";

export { type JobsContext, openJobs } from "../shared/jobs.ts";

/** Options of {@linkcode createTrainApp}. */
export interface TrainAppOptions {
  /** Where runs and the job store live. @default "out" (env DVSFT_DATA_DIR) */
  dataRoot?: string;
  /** Training jobs at once. @default 1 */
  trainConcurrency?: number;
  /** Jobs allowed to wait. @default 16 */
  maxQueuedJobs?: number;
  /** Job caps and request size limits over those of the environment (README "Limits"). */
  jobLimits?: Partial<JobLimits>;
  metrics?: ServerMetrics;
}

/** A job's config: the training config without the output location (the server owns that). */
// `name` is accepted (the files in configs/ post as they are) but the server names the run
// folder after the job id; the output location is the server's
export const TrainJobConfigSchema = TrainConfigSchema.omit({ outDir: true })
  .superRefine((c, ctx) => {
    // names a request gives are looked up as own keys (not "constructor", "__proto__")
    const expected = `one of ${Object.keys(SUITES).join(", ")}`;
    if (!isSuiteName(c.data.suite)) {
      ctx.addIssue({ code: "custom", path: ["data", "suite"], message: expected });
    }
    c.evalSuites.forEach((s, i) => {
      if (!isSuiteName(s)) {
        ctx.addIssue({ code: "custom", path: ["evalSuites", i], message: expected });
      }
    });
  })
  .openapi("TrainJobConfig");

const IdParam = z.object({
  id: z.string().regex(/^[a-z]+-[a-z0-9]+-[a-f0-9]{8}$/, "not a job id"),
});
// rebuilt with zod-openapi's z: a schema made in lib/ before it loaded has no .openapi
const JobResponse = z.object(JobSchema.shape).openapi("Job");
const createJob = createRoute({
  method: "post",
  path: "/v1/train/jobs",
  summary: "Start a training job",
  middleware: [requireContentType(["application/json"])] as const,
  request: {
    body: { required: true, content: { "application/json": { schema: TrainJobConfigSchema } } },
  },
  responses: {
    202: { description: "Queued", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404, 413, 415, 422, 503),
  },
});
const listJobs = createRoute({
  method: "get",
  path: "/v1/train/jobs",
  summary: "List training jobs",
  responses: {
    200: {
      description: "Jobs",
      content: { "application/json": { schema: z.object({ jobs: z.array(JobResponse) }) } },
    },

    ...errorsFor(401),
  },
});
const getJob = createRoute({
  method: "get",
  path: "/v1/train/jobs/{id}",
  summary: "A job's state, progress and last metrics",
  request: { params: IdParam },
  responses: {
    200: { description: "Job", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404),
  },
});
const cancelJob = createRoute({
  method: "post",
  path: "/v1/train/jobs/{id}/cancel",
  summary: "Cancel a job (a running one checkpoints first)",
  request: { params: IdParam },
  responses: {
    202: { description: "Cancelling", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404),
  },
});
const resumeJob = createRoute({
  method: "post",
  path: "/v1/train/jobs/{id}/resume",
  summary: "Resume a failed or cancelled job from its last checkpoint",
  request: { params: IdParam },
  responses: {
    202: { description: "Queued", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404, 409),
  },
});
const listArtifacts = createRoute({
  method: "get",
  path: "/v1/train/jobs/{id}/artifacts",
  summary: "Files a job wrote (config, metrics, checkpoints, tokenizer)",
  request: { params: IdParam },
  responses: {
    200: {
      description: "Artifacts",
      content: {
        "application/json": {
          schema: z.object({
            artifacts: z.array(z.object({ path: z.string(), bytes: z.number() })),
          }),
        },
      },
    },

    ...errorsFor(400, 401, 404),
  },
});

/** Build the training sub-app on a job store; `close()` stops its runner (checkpointing jobs). */
export function createTrainApp(options: TrainAppOptions = {}, jobs?: JobsContext) {
  const { trainConcurrency = 1, maxQueuedJobs = 16 } = options;
  const jr = jobRunner("train", {
    dataRoot: options.dataRoot,
    concurrency: trainConcurrency,
    limits: options.jobLimits,
    onStep: (m) =>
      typeof m.stepMs === "number" && options.metrics?.trainStepSeconds.set(m.stepMs / 1000),
  }, jobs);
  const { deps, mustGet } = jr;
  const dataRoot = jr.ctx.dataRoot;
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(createJob, async (c) => {
    const config = c.req.valid("json");
    // a Hugging Face checkpoint folder a request names must lie inside the data root
    const hf = hfModelPath(config.model);
    if (hf !== null) config.model = `hf:${await resolveInside(dataRoot, hf)}`;
    const { store, runner } = await deps();
    // every size bounded before the job is queued (steps, batch × sequence, memory, data, evals)
    checkTrainJob(config, runner.limits);
    // a dataset a request names must lie inside the data root (no .., absolute paths, symlinks
    // out); stored relative, and confined again when the job starts
    if (config.data.path !== undefined) {
      const real = await resolveInside(dataRoot, config.data.path);
      await checkDatasetSize(real, runner.limits);
      config.data.path = relative(await Deno.realPath(dataRoot), real);
    }
    for (const m of config.data.mix) {
      if (m.path === undefined) continue;
      const real = await resolveInside(dataRoot, m.path);
      await checkDatasetSize(real, runner.limits);
      m.path = relative(await Deno.realPath(dataRoot), real);
    }
    if (runner.queued >= maxQueuedJobs) {
      throw new ApiError(
        503,
        "busy",
        `Too many queued jobs (${runner.queued}); retry later`,
        undefined,
        { "Retry-After": "30" },
      );
    }
    const job = await store.create("train", config, dataRootPaths(dataRoot).runRel, config.steps);
    runner.enqueue(job.id);
    return c.json(job, 202);
  });
  app.openapi(
    listJobs,
    async (c) => c.json({ jobs: await (await deps()).store.list("train") }, 200),
  );
  app.openapi(getJob, async (c) => c.json(await mustGet(c.req.valid("param").id), 200));
  app.openapi(cancelJob, async (c) => {
    const { id } = c.req.valid("param");
    await mustGet(id);
    return c.json(await (await deps()).runner.cancel(id), 202);
  });
  app.openapi(resumeJob, async (c) => {
    const { id } = c.req.valid("param");
    const job = await mustGet(id);
    if (job.state !== "failed" && job.state !== "cancelled") {
      throw new ApiError(
        409,
        "conflict",
        `Job '${id}' is ${job.state}; only failed or cancelled jobs resume`,
      );
    }
    const { store, runner } = await deps();
    const queued = await store.update(id, { state: "queued", error: null });
    runner.enqueue(id, true);
    return c.json(queued, 202);
  });
  app.openapi(listArtifacts, async (c) => {
    const job = await mustGet(c.req.valid("param").id);
    const runDir = await resolveInside(dataRoot, job.runDir).catch(() => null);
    return c.json({ artifacts: runDir ? await listRunFiles(runDir) : [] }, 200);
  });
  // a file download and an event stream are not JSON: plain routes, documented here
  const idPath = z.object({ id: IdParam.shape.id, path: z.string() });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/train/jobs/{id}/artifacts/{path}",
    summary: "Download one artifact (a path from the artifact list, percent-encoded once)",
    request: { params: idPath },
    responses: {
      200: {
        description: "The file",
        content: {
          "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) },
        },
      },
      ...errorsFor(400, 401, 404),
    },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/train/jobs/{id}/metrics",
    summary: "The run's step metrics so far (losses, learning rate, step time), one per step",
    request: { params: IdParam },
    responses: {
      200: {
        description: "Metrics",
        content: {
          "application/json": {
            schema: z.object({ metrics: z.array(z.object(StepMetricsSchema.shape)) }),
          },
        },
      },
      ...errorsFor(400, 401, 404),
    },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/train/jobs/{id}/events",
    summary: "Server-sent events: the job's record at each change, until it ends",
    request: { params: IdParam },
    responses: {
      200: {
        description: "Event stream",
        content: { "text/event-stream": { schema: z.string() } },
      },
      ...errorsFor(400, 401, 404),
    },
  });

  app.get("/v1/train/jobs/:id/artifacts/:path{.+}", async (c) => {
    const id = IdParam.parse({ id: c.req.param("id") }).id;
    const job = await mustGet(id);
    const runDir = await resolveInside(dataRoot, job.runDir);
    // Hono has percent-decoded the parameter once; runFilePath takes it as it is
    const file = await runFilePath(runDir, c.req.param("path"));
    const f = await Deno.open(file);
    const st = await f.stat();
    if (!st.isFile) {
      f.close();
      throw new ApiError(404, "not_found", `'${c.req.param("path")}' is not a file`);
    }
    return new Response(f.readable, {
      headers: { "content-type": contentTypeOf(file), "content-length": String(st.size) },
    });
  });
  // the run's step metrics, one per step (a resumed step counted once), read through lib/runs
  app.get("/v1/train/jobs/:id/metrics", async (c) => {
    const job = await mustGet(IdParam.parse({ id: c.req.param("id") }).id);
    const runDir = await resolveInside(dataRoot, job.runDir).catch(() => null);
    return c.json({ metrics: (runDir ? await readMetrics(runDir) : null) ?? [] }, 200);
  });
  app.get("/v1/train/jobs/:id/events", async (c) => {
    const id = IdParam.parse({ id: c.req.param("id") }).id;
    await mustGet(id);
    return jobEvents(c, (await deps()).store, id);
  });

  return { app, ready: jr.ready, runner: jr.runner, close: jr.close };
}
