/// <reference lib="deno.worker" />
/**
 * Runs one training job off the server's event loop. Messages in: {start, config, resume},
 * {cancel}. Messages out: {step, metrics}, {done, finalStep}, {error, message}.
 */
import { train } from "../train/mod.ts";
import { periodicEvaluation } from "../eval/mod.ts";

const ac = new AbortController();
self.onmessage = async (e: MessageEvent) => {
  const msg = e.data as { type: "start"; config: unknown; resume: boolean } | { type: "cancel" };
  if (msg.type === "cancel") {
    ac.abort();
    return;
  }
  try {
    let last = 0;
    const r = await train(msg.config as never, {
      resume: msg.resume,
      signal: ac.signal,
      evaluate: periodicEvaluation(),
      onStep: (m) => {
        // at most ~4 progress messages a second (each becomes a KV write)
        const now = performance.now();
        if (now - last > 250) {
          last = now;
          self.postMessage({ type: "step", metrics: m });
        }
      },
    });
    const m = r.metrics.at(-1);
    if (m) self.postMessage({ type: "step", metrics: m });
    self.postMessage({ type: "done", finalStep: r.finalStep, cancelled: ac.signal.aborted });
  } catch (err) {
    self.postMessage({ type: "error", message: (err as Error).message });
  }
};
