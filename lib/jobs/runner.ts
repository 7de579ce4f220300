/**
 * Runs queued jobs, each in its own process (job_main.ts), at most `concurrency` at a time, and
 * keeps their records true. A job process has a memory cap (V8's old space, and an RSS watchdog
 * for what lies outside it: wasm heaps, native buffers) and a wall-time cap; cancel sends
 * SIGTERM (training checkpoints at the next step and exits) and SIGKILL after a grace period.
 * A job that dies is failed with the reason (exit code or signal, cap exceeded, the last stderr
 * lines); the server keeps serving. A job whose server died (restart, SIGKILL) is marked failed
 * on the next start and can be resumed from its last checkpoint.
 */
import { basename, dirname, join, relative } from "node:path";
import { dataRootPaths } from "../runs/mod.ts";
import { resolveInside } from "../util/paths.ts";
import type { Job, JobStore } from "../runs/job_store.ts";
import { checkDatasetSize, type JobLimits, jobLimitsFromEnv } from "./limits.ts";

export interface JobRunnerOptions {
  /** The kind of jobs this runner owns. @default "train" */
  kind?: Job["kind"];
  /** Folder that runDir paths are relative to. */
  dataRoot: string;
  /** Jobs at once. @default 1 */
  concurrency?: number;
  /** Called with each step's metrics a job reports (for /metrics). */
  onStep?: (metrics: Record<string, unknown>) => void;
  /** Memory, time and output caps. @default jobLimitsFromEnv() */
  limits?: Partial<JobLimits>;
  /** How often the RSS watchdog looks, ms. @default 200 */
  watchMs?: number;
}

/** A message a job process prints on stdout. */
interface JobMessage {
  dvsftJob: "step" | "done" | "error";
  metrics?: { step: number };
  cancelled?: boolean;
  finalStep?: number;
  message?: string;
}

/** The last `max` bytes written to it. */
class TailBuffer {
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  constructor(readonly max: number) {}
  push(b: Uint8Array): void {
    this.#chunks.push(b);
    this.#bytes += b.length;
    while (this.#bytes - this.#chunks[0]!.length >= this.max) {
      this.#bytes -= this.#chunks.shift()!.length;
    }
  }
  text(): string {
    const all = new Uint8Array(this.#bytes);
    let off = 0;
    for (const c of this.#chunks) all.set(c, (off += c.length) - c.length);
    return new TextDecoder().decode(all.subarray(Math.max(0, all.length - this.max)));
  }
}

/** Resident memory of a process in MB (Linux /proc), or null when it is gone or unknown. */
export async function processRssMB(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

interface Running {
  child: Deno.ChildProcess;
  /** Why the runner stopped it, when it did. */
  reason: "cancel" | "shutdown" | "memory" | "time" | null;
  detail: string;
  killTimer?: ReturnType<typeof setTimeout>;
}

const JOB_MAIN = new URL("./job_main.ts", import.meta.url);
const DENO_JSON = new URL("../../deno.json", import.meta.url);

export class JobRunner {
  #running = new Map<string, Running>();
  #finished = new Map<string, Promise<void>>();
  #shuttingDown = false;
  #queue: Array<{ id: string; resume: boolean }> = [];
  readonly concurrency: number;
  readonly limits: JobLimits;

  constructor(readonly store: JobStore, readonly options: JobRunnerOptions) {
    this.concurrency = options.concurrency ?? 1;
    this.limits = { ...jobLimitsFromEnv(), ...options.limits };
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
  /** Process ids of the running jobs (for tests and diagnostics). */
  pids(): number[] {
    return [...this.#running.values()].map((r) => r.child.pid);
  }

  enqueue(id: string, resume = false): void {
    this.#queue.push({ id, resume });
    this.#pump();
  }

  async cancel(id: string): Promise<Job> {
    const r = this.#running.get(id);
    if (r) {
      this.#stop(r, "cancel", "");
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

  /** SIGTERM now, SIGKILL after the grace period (SIGKILL at once for a memory cap). */
  #stop(r: Running, reason: NonNullable<Running["reason"]>, detail: string): void {
    if (r.reason === null || reason === "memory") {
      r.reason = reason;
      r.detail = detail;
    }
    const kill = (sig: Deno.Signal) => {
      try {
        r.child.kill(sig);
      } catch { /* already gone */ }
    };
    if (reason === "memory") return kill("SIGKILL");
    kill("SIGTERM");
    const grace = reason === "cancel" ? this.limits.cancelGraceMs : this.limits.killGraceMs;
    r.killTimer ??= setTimeout(() => kill("SIGKILL"), grace);
  }

  #pump(): void {
    // a slot is taken from before the first await until the final state is written
    while (
      !this.#shuttingDown && this.#finished.size < this.concurrency && this.#queue.length > 0
    ) {
      const { id, resume } = this.#queue.shift()!;
      const done = this.#start(id, resume).catch((e) => console.error(`job ${id}: ${e}`)).finally(
        () => {
          this.#finished.delete(id);
          this.#pump();
        },
      );
      this.#finished.set(id, done);
    }
  }

  /** The job's config for its process: paths resolved and confined to the data root now. */
  async #resolve(job: Job): Promise<Record<string, unknown>> {
    const root = dataRootPaths(this.options.dataRoot);
    if (job.kind === "train") await Deno.mkdir(join(root.root, job.runDir), { recursive: true });
    // the record's run folder, confined to the data root again at each start (not only at
    // acceptance: a folder swapped for a symlink since is refused here)
    const runDir = await resolveInside(root.root, job.runDir);
    const config = job.config as Record<string, unknown>;
    // paths are stored relative to the data root (records of older servers hold absolute ones)
    // and confined again here, at use
    const real = await Deno.realPath(root.root);
    const confine = (p: string) =>
      resolveInside(root.root, p.startsWith("/") ? relative(real, p) : p);
    if (job.kind === "eval") {
      const suites = await Promise.all((config.suites as string[]).map(async (name) => {
        const m = /^(file|dataset):(.+?)(#\w+)?$/.exec(name);
        return m ? `${m[1]}:${await confine(m[2]!)}${m[3] ?? ""}` : name;
      }));
      return { ...config, suites, runDir, cacheDir: root.evalCache };
    }
    const data = config.data as { path?: string; mix?: Array<{ path?: string }> } | undefined;
    let dataPatch = {};
    if (data?.path !== undefined || data?.mix?.some((m) => m.path !== undefined)) {
      const path = data.path !== undefined ? await confine(data.path) : undefined;
      if (path) await checkDatasetSize(path, this.limits);
      const mix = await Promise.all((data.mix ?? []).map(async (m) => {
        if (m.path === undefined) return m;
        const p = await confine(m.path);
        await checkDatasetSize(p, this.limits);
        return { ...m, path: p };
      }));
      dataPatch = { data: { ...data, ...(path ? { path } : {}), mix } };
    }
    return {
      ...config,
      ...dataPatch,
      outDir: dirname(runDir),
      name: basename(runDir),
    };
  }

  async #start(id: string, resume: boolean): Promise<void> {
    const job = await this.store.get(id);
    if (!job || job.state === "cancelled") return;
    let config: Record<string, unknown>;
    try {
      config = await this.#resolve(job);
    } catch (e) {
      await this.store.update(id, {
        state: "failed",
        error: `cannot start: ${(e as Error).message}`,
        finishedAt: new Date().toISOString(),
      });
      return;
    }
    if (this.#shuttingDown) {
      await this.store.update(id, {
        state: "failed",
        error: "the server stopped before the job started; resume it",
        finishedAt: new Date().toISOString(),
      });
      return;
    }
    const { memoryMB, timeS, stderrBytes } = this.limits;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        `--config=${DENO_JSON.pathname}`,
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
        `--v8-flags=--max-old-space-size=${memoryMB}`,
        JOB_MAIN.pathname,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const r: Running = { child, reason: null, detail: "" };
    this.#running.set(id, r);
    await this.store.update(id, (j) => ({
      state: "running",
      startedAt: new Date().toISOString(),
      finishedAt: null,
      error: null,
      attempts: j.attempts + 1,
    }));
    // the job; stdin stays open: its end tells the process the server is gone
    const stdin = child.stdin.getWriter();
    await stdin.write(
      new TextEncoder().encode(
        JSON.stringify({ kind: job.kind, config, resume, dataRoot: this.options.dataRoot }) + "\n",
      ),
    ).catch(() => {});

    const stderr = new TailBuffer(stderrBytes);
    const stderrDone = (async () => {
      for await (const chunk of child.stderr) stderr.push(chunk);
    })().catch(() => {});

    let final: Partial<Job> | null = null;
    const handle = async (msg: JobMessage) => {
      if (msg.dvsftJob === "step" && msg.metrics) {
        const metrics = msg.metrics;
        this.options.onStep?.(metrics);
        await this.store.update(id, (j) => ({
          progress: { done: metrics.step, total: j.progress.total },
          lastMetrics: metrics,
        }));
      } else if (msg.dvsftJob === "done") {
        if (msg.cancelled && r.reason !== null && r.reason !== "cancel") {
          final = {
            state: "failed",
            error: r.reason === "shutdown"
              ? `interrupted by server shutdown at step ${msg.finalStep} (checkpoint kept); resume to continue`
              : `${r.detail} at step ${msg.finalStep} (checkpoint kept); resume to continue`,
          };
        } else final = { state: msg.cancelled ? "cancelled" : "succeeded" };
      } else if (msg.dvsftJob === "error") {
        final = { state: "failed", error: msg.message ?? "the job failed" };
      }
    };
    // messages are handled one after another, so a late progress write never lands after the final state
    const stdoutDone = (async () => {
      const maxLine = 1 << 20;
      let buf = "";
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += text;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.startsWith('{"dvsftJob"')) continue;
          try {
            await handle(JSON.parse(line) as JobMessage);
          } catch (e) {
            console.error(`job ${id}: ${e}`);
          }
        }
        if (buf.length > maxLine) buf = ""; // a runaway line of a library's output
      }
    })().catch(() => {});

    // the caps: time, and resident memory (V8's old space does not hold wasm memory)
    const timeTimer = setTimeout(
      () => this.#stop(r, "time", `time cap of ${timeS} s exceeded`),
      timeS * 1000,
    );
    let peakMB = 0;
    const watch = setInterval(async () => {
      const mb = await processRssMB(child.pid);
      if (mb === null) return;
      peakMB = Math.max(peakMB, mb);
      if (mb > memoryMB) {
        this.#stop(r, "memory", `memory cap ${memoryMB} MB exceeded (RSS ${Math.round(mb)} MB)`);
      }
    }, this.options.watchMs ?? 200);

    const status = await child.status;
    clearTimeout(timeTimer);
    clearInterval(watch);
    clearTimeout(r.killTimer);
    await stdin.close().catch(() => {});
    await Promise.all([stdoutDone, stderrDone]);

    if (final === null || r.reason === "memory") {
      const how = status.signal
        ? `was killed by ${status.signal}`
        : `exited with code ${status.code}`;
      const tail = stderr.text().trim().split("\n").slice(-5).join("\n");
      const why = r.reason === "memory" || r.reason === "time"
        ? `${r.detail}; the job process ${how}`
        : r.reason === "shutdown"
        ? `interrupted by server shutdown (the job process ${how}); resume to continue from its last checkpoint`
        : r.reason === "cancel"
        ? null
        : `the job process ${how}${tail ? `: ${tail}` : ""}`;
      final = why === null
        ? {
          state: "cancelled",
          error: `stopped during a step: the job process ${how}; its last checkpoint is kept`,
        }
        : { state: "failed", error: why };
    }
    await this.store.update(id, { ...final, finishedAt: new Date().toISOString() });
    this.#running.delete(id);
  }

  /** Stop taking work; ask running jobs to checkpoint and stop; wait up to `timeoutMs`, then kill. */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.#shuttingDown = true;
    this.#queue.length = 0;
    const grace = Math.min(timeoutMs, this.limits.killGraceMs);
    for (const r of this.#running.values()) {
      this.#stop(r, "shutdown", "");
      clearTimeout(r.killTimer);
      r.killTimer = setTimeout(() => {
        try {
          r.child.kill("SIGKILL");
        } catch { /* gone */ }
      }, grace);
    }
    await Promise.all(this.#finished.values());
  }
}
