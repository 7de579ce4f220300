/// <reference lib="deno.worker" />
/**
 * Runs one evaluation job. In: {start, config: {runDir, suites, n}}. Out: {step, metrics},
 * {done}, {error}.
 */
import { join } from "node:path";
import { evaluateCheckpoint } from "../eval/mod.ts";

self.onmessage = async (e: MessageEvent) => {
  const msg = e.data as {
    type: "start";
    config: { runDir: string; suites: string[]; n: number; outDir: string; name: string };
  } | { type: "cancel" };
  if (msg.type === "cancel") {
    self.postMessage({ type: "done", finalStep: 0, cancelled: true });
    self.close();
    return;
  }
  try {
    const c = msg.config;
    const r = await evaluateCheckpoint(c.runDir, {
      suites: c.suites,
      n: c.n,
      cacheDir: join(c.outDir, "..", "eval-cache"),
    }, (done) => {
      self.postMessage({ type: "step", metrics: { step: done } });
    });
    const dir = join(c.outDir, c.name);
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(join(dir, "result.json"), JSON.stringify(r));
    await Deno.writeTextFile(
      join(dir, "predictions.jsonl"),
      r.suites.flatMap((s) => s.items.map((i) => JSON.stringify({ suite: s.suite, ...i }))).join(
        "\n",
      ) + "\n",
    );
    const summary = Object.fromEntries(
      r.suites.map((s) => [s.suite, { score: s.score, probeTop1: s.probeTop1 }]),
    );
    self.postMessage({
      type: "step",
      metrics: { step: r.suites.length * c.n, checkpointStep: r.checkpoint.step, scores: summary },
    });
    self.postMessage({ type: "done", finalStep: r.suites.length * c.n, cancelled: false });
  } catch (err) {
    self.postMessage({ type: "error", message: (err as Error).message });
  }
};
