/**
 * Runs queued jobs in workers, at most `concurrency` at a time, and keeps their records true:
 * a job whose process died (server restart, SIGKILL) is marked failed with the reason on the
 * next start, and can be resumed from its last checkpoint.
 */
import { basename, dirname, join } from "node:path";
import { dataRootPaths } from "../runs/mod.ts";
import { resolveInside } from "../util/paths.ts";
import type { Job, JobStore } from "../runs/job_store.ts";

export interface JobRunnerOptions {
  /** The kind of jobs this runner owns. @default "train" */
  kind?: Job["kind"];
  /** Folder that runDir paths are relative to. */
  dataRoot: string;
  /** Training jobs at once. @default 1 */
  concurrency?: number;
  /** Called with each step's metrics a job reports (for /metrics). */
  onStep?: (metrics: Record<string, unknown>) => void;
}

export class JobRunner {
  #running = new Map<string, Worker>();
  #shuttingDown = false;
  #queue: Array<{ id: string; resume: boolean }> = [];
  readonly concurrency: number;

  constructor(readonly store: JobStore, readonly options: JobRunnerOptions) {
    this.concurrency = options.concurrency ?? 1;
  }

  /** Mark jobs that a dead process left queued or running as failed. Call once at start. */
  async recover(): Promise<number> {
    let n = 0;
    for (const job of await this.store.list(this.options.kind ?? "train")) {
      if ((job.state === "running" || job.state === "queued") && !this.#running.has(job.id)) {
        await this.store.update(job.id, {
          state: "failed",
          error:
            `the server stopped while the job was ${job.state}; resume it to continue from its last checkpoint`,
          finishedAt: new Date().toISOString(),
        });
        n++;
      }
    }
    return n;
  }

  get running(): number {
    return this.#running.size;
  }
  get queued(): number {
    return this.#queue.length;
  }

  enqueue(id: string, resume = false): void {
    this.#queue.push({ id, resume });
    this.#pump();
  }

  async cancel(id: string): Promise<Job> {
    const w = this.#running.get(id);
    if (w) {
      w.postMessage({ type: "cancel" });
      return (await this.store.get(id))!;
    }
    const i = this.#queue.findIndex((q) => q.id === id);
    if (i >= 0) this.#queue.splice(i, 1);
    return await this.store.update(
      id,
      (j) =>
        j.state === "queued" ? { state: "cancelled", finishedAt: new Date().toISOString() } : {},
    );
  }

  #pump(): void {
    while (this.#running.size < this.concurrency && this.#queue.length > 0) {
      const { id, resume } = this.#queue.shift()!;
      this.#start(id, resume).catch((e) => console.error(`job ${id}: ${e}`));
    }
  }

  async #start(id: string, resume: boolean): Promise<void> {
    const job = await this.store.get(id);
    if (!job || job.state === "cancelled") return this.#pump();
    let config: object;
    try {
      const root = dataRootPaths(this.options.dataRoot);
      if (job.kind === "train") await Deno.mkdir(join(root.root, job.runDir), { recursive: true });
      // the record's run folder, confined to the data root again at each start (not only at
      // acceptance: a folder swapped for a symlink since is refused here)
      const runDir = await resolveInside(root.root, job.runDir);
      config = job.kind === "eval"
        ? { ...(job.config as object), runDir, cacheDir: root.evalCache }
        : { ...(job.config as object), outDir: dirname(runDir), name: basename(runDir) };
    } catch (e) {
      await this.store.update(id, {
        state: "failed",
        error: `cannot start: ${(e as Error).message}`,
        finishedAt: new Date().toISOString(),
      });
      return this.#pump();
    }
    const script = job.kind === "eval" ? "./eval_worker.ts" : "./train_worker.ts";
    const worker = new Worker(new URL(script, import.meta.url), { type: "module" });
    this.#running.set(id, worker);
    await this.store.update(id, (j) => ({
      state: "running",
      startedAt: new Date().toISOString(),
      finishedAt: null,
      error: null,
      attempts: j.attempts + 1,
    }));
    const finish = async (patch: Partial<Job>) => {
      worker.terminate();
      await this.store.update(id, { ...patch, finishedAt: new Date().toISOString() });
      this.#running.delete(id); // after the write: shutdown waits for this
      this.#pump();
    };
    // messages are handled one after another, so a late progress write never lands after the final state
    let chain = Promise.resolve();
    worker.onmessage = (e: MessageEvent) => {
      chain = chain.then(() => handle(e.data)).catch((err) => console.error(`job ${id}: ${err}`));
    };
    const handle = async (
      msg: {
        type: string;
        metrics?: { step: number };
        cancelled?: boolean;
        finalStep?: number;
        message?: string;
      },
    ) => {
      if (!this.#running.has(id)) return;
      if (msg.type === "step" && msg.metrics) {
        const metrics = msg.metrics;
        this.options.onStep?.(metrics);
        await this.store.update(
          id,
          (j) => ({
            progress: { done: metrics.step, total: j.progress.total },
            lastMetrics: metrics,
          }),
        );
      } else if (msg.type === "done") {
        if (msg.cancelled && this.#shuttingDown) {
          await finish({
            state: "failed",
            error:
              `interrupted by server shutdown at step ${msg.finalStep} (checkpoint kept); resume to continue`,
          });
        } else await finish({ state: msg.cancelled ? "cancelled" : "succeeded" });
      } else if (msg.type === "error") {
        await finish({ state: "failed", error: msg.message });
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      chain = chain.then(() => finish({ state: "failed", error: `worker crashed: ${e.message}` }));
    };
    worker.postMessage({ type: "start", config, resume });
  }

  /** Stop taking work; ask running jobs to checkpoint and stop; wait up to `timeoutMs`. */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.#shuttingDown = true;
    this.#queue.length = 0;
    for (const w of this.#running.values()) w.postMessage({ type: "cancel" });
    const t0 = Date.now();
    while (this.#running.size > 0 && Date.now() - t0 < timeoutMs) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const w of this.#running.values()) w.terminate();
  }
}
