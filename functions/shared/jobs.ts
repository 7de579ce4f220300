/**
 * The job machinery the training and evaluation functions share: one store per server, a
 * runner per kind, and the server-sent events of a job.
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { dataRootPaths } from "../../lib/runs/mod.ts";
import { type Job, JobRunner, type JobRunnerOptions, JobStore } from "../../lib/jobs/mod.ts";
import { ApiError } from "../../lib/http/mod.ts";

/** The job store shared by the training and evaluation functions of one server. */
export interface JobsContext {
  dataRoot: string;
  ready: Promise<JobStore>;
  close(): Promise<void>;
}

/** Open the job store under `dataRoot` (once per server). */
export function openJobs(dataRoot: string): JobsContext {
  let store: JobStore | null = null;
  const ready = (async () => {
    await Deno.mkdir(dataRoot, { recursive: true });
    store = await JobStore.open(dataRootPaths(dataRoot).jobStore);
    return store;
  })();
  return {
    dataRoot,
    ready,
    close: async () => {
      await ready.catch(() => {});
      store?.close();
    },
  };
}

/** A runner of one kind of job on a store (opened here when `jobs` is not given). */
export function jobRunner(
  kind: Job["kind"],
  options: Omit<JobRunnerOptions, "dataRoot" | "kind"> & { dataRoot?: string },
  jobs?: JobsContext,
) {
  const ctx = jobs ?? openJobs(options.dataRoot ?? Deno.env.get("DVSFT_DATA_DIR") ?? "out");
  let store: JobStore | null = null;
  let runner: JobRunner | null = null;
  const ready = (async () => {
    const s = await ctx.ready;
    store = s;
    runner = new JobRunner(s, { ...options, dataRoot: ctx.dataRoot, kind });
    await runner.recover();
  })();
  const deps = async () => {
    await ready;
    return { store: store!, runner: runner! };
  };
  return {
    ctx,
    ready,
    deps,
    runner: () => runner,
    /** The job, or a 404 when there is no job of this kind with that id. */
    mustGet: async (id: string) => {
      const job = await (await deps()).store.get(id);
      if (!job || job.kind !== kind) {
        throw new ApiError(
          404,
          "not_found",
          `No ${kind === "train" ? "training" : "evaluation"} job '${id}'`,
        );
      }
      return job;
    },
    close: async () => {
      await ready.catch(() => {});
      await runner?.shutdown();
      if (!jobs) await ctx.close();
    },
  };
}

/** Stream a job's record as server-sent events until it ends or the client leaves. */
export function jobEvents(c: Context, store: JobStore, id: string): Response {
  return streamSSE(c, async (stream) => {
    const ac = new AbortController();
    stream.onAbort(() => ac.abort());
    for await (const job of store.watch(id, ac.signal)) {
      await stream.writeSSE({
        event: job.state === "running" || job.state === "queued" ? "progress" : job.state,
        data: JSON.stringify(job),
      });
    }
  });
}
