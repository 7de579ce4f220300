/// <reference lib="deno.worker" />
/**
 * The data worker of `prefetch.ts`: the same sampler as the training loop's (`makeSampler`).
 * The handler is installed before anything is awaited, so no message is lost while the sampler
 * is being built.
 */
import { loadTokenizerFile } from "../tokenizer/mod.ts";
import type { Sample } from "../data/mod.ts";
import { makeSampler } from "./sampler.ts";
import type { PrefetchReply, PrefetchRequest } from "./prefetch.ts";

let sampler: Promise<(i: number) => Promise<Sample>> | null = null;
// one batch at a time, in order: the sampler is not asked to render two batches at once
let queue: Promise<void> = Promise.resolve();

self.onmessage = (e: MessageEvent<PrefetchRequest>) => {
  const m = e.data;
  if (m.kind === "init") {
    sampler = loadTokenizerFile(m.tokenizerPath, "dvsft-small").then((tok) =>
      makeSampler(m.config, m.modelConfig, tok)
    );
    sampler.catch(() => {}); // reported with the first batch that needs it
    return;
  }
  const { id, start, n } = m;
  queue = queue.then(async () => {
    try {
      if (!sampler) throw new Error("The data worker was not initialised");
      const at = await sampler;
      const samples: Sample[] = [];
      for (let k = 0; k < n; k++) samples.push(await at(start + k));
      // copied, not transferred: a sampler may keep what it returned (a decoded image cache)
      self.postMessage({ kind: "batch", id, samples } satisfies PrefetchReply);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      self.postMessage(
        { kind: "error", id, message: e.message, name: e.name } satisfies PrefetchReply,
      );
    }
  });
};
