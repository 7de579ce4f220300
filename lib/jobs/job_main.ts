/**
 * One training or evaluation job in its own process; lib/jobs/runner.ts spawns it with a
 * memory cap (V8 flags + an RSS watchdog) and a time cap, so a job that runs out of memory or
 * crashes takes nothing else with it.
 *
 * stdin: the first line is the job, `{kind, config, resume}`; the end of stdin afterwards means
 * the server is gone, and the job stops as on SIGTERM (no orphan keeps writing into a run that a
 * restarted server may resume).
 * stdout: JSON lines `{"dvsftJob": "step" | "done" | "error", ...}`; other lines (a library's
 * prints) are ignored by the runner.
 * SIGTERM: stop; training stops at the next step boundary, checkpoints and exits.
 */
import { resolveInside } from "../util/paths.ts";
import { join, relative, resolve } from "node:path";

export interface JobInput {
  kind: "train" | "eval";
  config: Record<string, unknown>;
  resume: boolean;
  /** Every file the job reads from a dataset lies inside this folder. */
  dataRoot: string;
}

/** Every image a dataset names is inside the data root (checked here, when the job runs). */
export async function confineDataset(path: string, dataRoot: string): Promise<void> {
  const root = await Deno.realPath(dataRoot);
  const { readDataset } = await import("../data/mod.ts");
  for (const item of (await readDataset(path)).items) {
    // images are named relative to the dataset folder; a symlink there must not lead out
    const image = join(path, item.image);
    await resolveInside(root, relative(root, resolve(image))).catch((e) => {
      throw new Error(
        `Dataset '${relative(root, path)}' names image '${item.image}': ${e.message}`,
      );
    });
  }
}

const encoder = new TextEncoder();
function send(msg: Record<string, unknown>): void {
  const bytes = encoder.encode(JSON.stringify(msg) + "\n");
  for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** Read stdin: resolve the first line; call `onEnd` when stdin closes after it. */
async function readJob(onEnd: () => void): Promise<JobInput> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("stdin closed before the job was sent");
    buf += value;
    const nl = buf.indexOf("\n");
    if (nl >= 0) {
      (async () => {
        while (!(await reader.read()).done) { /* the server sends nothing more */ }
        onEnd();
      })().catch(onEnd);
      return JSON.parse(buf.slice(0, nl)) as JobInput;
    }
  }
}

async function main(): Promise<void> {
  const ac = new AbortController();
  let kind: JobInput["kind"] | null = null;
  const stop = () => {
    if (ac.signal.aborted) return;
    ac.abort();
    // an evaluation keeps nothing half-done (results are written atomically): stop at once
    if (kind === "eval") {
      send({ dvsftJob: "done", finalStep: 0, cancelled: true });
      Deno.exit(0);
    }
  };
  Deno.addSignalListener("SIGTERM", stop);
  const job = await readJob(stop);
  kind = job.kind;
  if (ac.signal.aborted) stop();
  // loaded after the SIGTERM listener is in place (loading takes a second or so)
  const { train } = await import("../train/mod.ts");
  const { evaluateAndStore, periodicEvaluation } = await import("../eval/mod.ts");
  if (job.kind === "train") {
    const data = job.config.data as { task?: string; path?: string } | undefined;
    if (data?.task === "dataset" && data.path) await confineDataset(data.path, job.dataRoot);
    let last = 0;
    const r = await train(job.config as never, {
      resume: job.resume,
      signal: ac.signal,
      evaluate: periodicEvaluation(),
      onStep: (m) => {
        // at most ~4 progress messages a second (each becomes a KV write)
        const now = performance.now();
        if (now - last > 250) {
          last = now;
          send({ dvsftJob: "step", metrics: m });
        }
      },
    });
    const m = r.metrics.at(-1);
    if (m) send({ dvsftJob: "step", metrics: m });
    send({ dvsftJob: "done", finalStep: r.finalStep, cancelled: ac.signal.aborted });
  } else {
    const c = job.config as { runDir: string; suites: string[]; n: number; cacheDir: string };
    const r = await evaluateAndStore(c.runDir, { suites: c.suites, n: c.n, cacheDir: c.cacheDir }, {
      onProgress: (done) => send({ dvsftJob: "step", metrics: { step: done } }),
    });
    const scores = Object.fromEntries(
      r.suites.map((s) => [s.suite, { score: s.score, probeTop1: s.probeTop1 }]),
    );
    const total = r.suites.length * c.n;
    send({
      dvsftJob: "step",
      metrics: { step: total, checkpointStep: r.checkpoint.step, scores },
    });
    send({ dvsftJob: "done", finalStep: total, cancelled: false });
  }
}

if (import.meta.main) {
  try {
    await main();
    Deno.exit(0);
  } catch (err) {
    send({ dvsftJob: "error", message: (err as Error).message ?? String(err) });
    Deno.exit(1);
  }
}
