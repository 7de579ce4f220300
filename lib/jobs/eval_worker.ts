/// <reference lib="deno.worker" />
/**
 * Runs one evaluation job. In: {start, config: {runDir, suites, n, cacheDir}}. Out: {step,
 * metrics}, {done}, {error}. The result is stored with the run, as `deno task eval` stores it.
 */
import { evaluateAndStore } from "../eval/mod.ts";

self.onmessage = async (e: MessageEvent) => {
  const msg = e.data as {
    type: "start";
    config: { runDir: string; suites: string[]; n: number; cacheDir: string };
  } | { type: "cancel" };
  if (msg.type === "cancel") {
    self.postMessage({ type: "done", finalStep: 0, cancelled: true });
    self.close();
    return;
  }
  try {
    const c = msg.config;
    const r = await evaluateAndStore(c.runDir, {
      suites: c.suites,
      n: c.n,
      cacheDir: c.cacheDir,
    }, {
      onProgress: (done) => self.postMessage({ type: "step", metrics: { step: done } }),
    });
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
