/**
 * Jobs (training, evaluation) kept in Deno KV — an embedded SQLite file — so a restarted
 * server still knows them. `watch` streams a job's record as it changes (server-sent events).
 */
import { z } from "zod";

export const JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type JobState = typeof JOB_STATES[number];

export const JobSchema = z.object({
  id: z.string(),
  kind: z.enum(["train", "eval"]),
  state: z.enum(JOB_STATES),
  config: z.unknown(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  error: z.string().nullable(),
  progress: z.object({ done: z.number(), total: z.number() }),
  lastMetrics: z.record(z.string(), z.unknown()).nullable(),
  /** Folder of the job's artifacts, relative to the data root. */
  runDir: z.string(),
  /** Times the job was (re)started. */
  attempts: z.number().int(),
});
export type Job = z.infer<typeof JobSchema>;

const key = (id: string) => ["jobs", id] as const;

export class JobStore {
  private constructor(readonly kv: Deno.Kv) {}

  /** Open (or create) the store at `path` (a file), or in memory with ":memory:". */
  static async open(path: string): Promise<JobStore> {
    return new JobStore(await Deno.openKv(path));
  }

  async create(
    kind: Job["kind"],
    config: unknown,
    runDir: (id: string) => string,
    total: number,
  ): Promise<Job> {
    const id = `${kind}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
    const job: Job = {
      id,
      kind,
      state: "queued",
      config,
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      error: null,
      progress: { done: 0, total },
      lastMetrics: null,
      runDir: runDir(id),
      attempts: 0,
    };
    await this.kv.set(key(id), job);
    return job;
  }

  async get(id: string): Promise<Job | null> {
    return (await this.kv.get<Job>(key(id))).value;
  }

  async list(kind?: Job["kind"]): Promise<Job[]> {
    const out: Job[] = [];
    for await (const e of this.kv.list<Job>({ prefix: ["jobs"] })) {
      if (!kind || e.value.kind === kind) out.push(e.value);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Apply `patch` atomically (retried on concurrent writes). */
  async update(id: string, patch: Partial<Job> | ((j: Job) => Partial<Job>)): Promise<Job> {
    for (;;) {
      const cur = await this.kv.get<Job>(key(id));
      if (!cur.value) throw new RangeError(`No job '${id}'`);
      const next = { ...cur.value, ...(typeof patch === "function" ? patch(cur.value) : patch) };
      const r = await this.kv.atomic().check(cur).set(key(id), next).commit();
      if (r.ok) return next;
    }
  }

  /** The job's record now and after each change, until it ends or `signal` aborts. */
  async *watch(id: string, signal?: AbortSignal): AsyncGenerator<Job> {
    const stream = this.kv.watch<[Job]>([key(id)]);
    const reader = stream.getReader();
    const onAbort = () => reader.cancel().catch(() => {});
    signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value?.[0]?.value) return;
        const job = value[0].value;
        yield job;
        if (["succeeded", "failed", "cancelled"].includes(job.state)) return;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await reader.cancel().catch(() => {});
    }
  }

  close(): void {
    this.kv.close();
  }
}
