/**
 * The evaluation function: `POST /v1/eval/jobs` ({run, suites, n}) → job; state, events and
 * result — the same job machinery as training (Deno KV, workers, SSE).
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { dataRootPaths, hasCheckpoint, readEvaluation } from "../../lib/runs/mod.ts";
import { parseSuiteRef, SuiteNameSchema, suiteRefName } from "../../lib/eval/mod.ts";
import { checkEvalJob, type JobLimits, JobSchema } from "../../lib/jobs/mod.ts";
import { BENCHMARK_SUITES, SUITES } from "../../lib/data/mod.ts";
import { ApiError } from "../../lib/http/mod.ts";
import { resolveInside } from "../../lib/util/paths.ts";
import { type AppEnv, errorsFor, requireContentType } from "../shared/http.ts";
import { jobEvents, jobRunner, type JobsContext } from "../shared/jobs.ts";

export const EvalJobConfigSchema = z.strictObject({
  /** A training run: its job id (a folder under the data root's runs/), or the runDir a job reports. */
  run: z.string().regex(/^(runs\/)?[A-Za-z0-9._-]{1,100}$/, "a run name or training job id")
    .transform((s) => s.replace(/^runs\//, "")),
  suites: z.array(SuiteNameSchema).min(1).max(64).default(BENCHMARK_SUITES).describe(
    `generator suites (${
      Object.keys(SUITES).filter((k) => k !== "train").join(", ")
    }), benchmark files inside the data root as file:PATH[#metric] (parquet or JSONL in the lmms-eval / HF layouts), datasets as dataset:PATH#metric`,
  ),
  n: z.number().int().min(1).max(10_000).default(50),
}).openapi("EvalJobConfig");

const IdParam = z.object({
  id: z.string().regex(/^eval-[a-z0-9]+-[a-f0-9]{8}$/, "not an eval job id"),
});
const JobResponse = z.object(JobSchema.shape).openapi("EvalJob");

const createJob = createRoute({
  method: "post",
  path: "/v1/eval/jobs",
  summary: "Evaluate a training run's latest checkpoint on benchmark suites",
  middleware: [requireContentType(["application/json"])] as const,
  request: {
    body: { required: true, content: { "application/json": { schema: EvalJobConfigSchema } } },
  },
  responses: {
    202: { description: "Queued", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404, 409, 413, 415, 503),
  },
});
const getJob = createRoute({
  method: "get",
  path: "/v1/eval/jobs/{id}",
  summary: "An evaluation job's state and scores",
  request: { params: IdParam },
  responses: {
    200: { description: "Job", content: { "application/json": { schema: JobResponse } } },

    ...errorsFor(400, 401, 404),
  },
});
const listJobs = createRoute({
  method: "get",
  path: "/v1/eval/jobs",
  summary: "List evaluation jobs",
  responses: {
    200: {
      description: "Jobs",
      content: { "application/json": { schema: z.object({ jobs: z.array(JobResponse) }) } },
    },

    ...errorsFor(401),
  },
});

export interface EvalAppOptions {
  dataRoot?: string;
  /** Evaluation jobs at once. @default 1 */
  evalConcurrency?: number;
  /** Job caps and request size limits over those of the environment (README "Limits"). */
  jobLimits?: Partial<JobLimits>;
}

export function createEvalApp(options: EvalAppOptions = {}, jobs?: JobsContext) {
  const jr = jobRunner("eval", {
    dataRoot: options.dataRoot,
    concurrency: options.evalConcurrency ?? 1,
    limits: options.jobLimits,
  }, jobs);
  const { deps, mustGet } = jr;
  const ctx = jr.ctx;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(createJob, async (c) => {
    const config = c.req.valid("json");
    checkEvalJob(config, (await deps()).runner.limits);
    const root = dataRootPaths(ctx.dataRoot);
    const runDir = await resolveInside(root.runs, config.run).catch(() => {
      throw new ApiError(404, "not_found", `No training run '${config.run}'`);
    });
    if (!(await hasCheckpoint(runDir))) {
      throw new ApiError(409, "conflict", `Run '${config.run}' has no checkpoint yet`);
    }
    // files and datasets a request names lie inside the data root (no .., absolute, symlinks out)
    config.suites = await Promise.all(config.suites.map(async (name) => {
      const ref = parseSuiteRef(name);
      if (ref.kind === "synthetic") return name;
      const path = await resolveInside(ctx.dataRoot, ref.path);
      return suiteRefName({ ...ref, path });
    }));
    const { store, runner } = await deps();
    // the evaluation is stored with the run, where `deno task eval` stores it
    const job = await store.create(
      "eval",
      config,
      () => root.runRel(config.run),
      config.suites.length * config.n,
    );
    runner.enqueue(job.id);
    return c.json(job, 202);
  });
  app.openapi(
    listJobs,
    async (c) => c.json({ jobs: await (await deps()).store.list("eval") }, 200),
  );
  app.openapi(getJob, async (c) => c.json(await mustGet(c.req.valid("param").id), 200));
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/eval/jobs/{id}/result",
    summary: "A succeeded evaluation job's result (the suites it asked for)",
    request: { params: IdParam },
    responses: {
      200: { description: "Evaluation", content: { "application/json": { schema: z.unknown() } } },
      ...errorsFor(400, 401, 404, 409),
    },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/eval/jobs/{id}/events",
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
  app.get("/v1/eval/jobs/:id/result", async (c) => {
    const job = await mustGet(IdParam.parse({ id: c.req.param("id") }).id);
    if (job.state !== "succeeded") {
      throw new ApiError(409, "conflict", `Job '${job.id}' is ${job.state}`);
    }
    const step = (job.lastMetrics as { checkpointStep?: number } | null)?.checkpointStep;
    const runDir = await resolveInside(ctx.dataRoot, job.runDir);
    const stored = step === undefined ? null : await readEvaluation(runDir, step);
    if (!stored) {
      throw new ApiError(404, "not_found", `The evaluation of job '${job.id}' is no longer stored`);
    }
    // the run's evaluation of that checkpoint may hold more suites (other jobs, the CLI)
    const { suites } = job.config as { suites: string[] };
    return c.json({ ...stored, suites: stored.suites.filter((s) => suites.includes(s.suite)) });
  });
  app.get("/v1/eval/jobs/:id/events", async (c) => {
    const id = IdParam.parse({ id: c.req.param("id") }).id;
    await mustGet(id);
    return jobEvents(c, (await deps()).store, id);
  });
  return { app, ready: jr.ready, runner: jr.runner, close: jr.close };
}
