/**
 * The training stream's next batch, made in a worker while the current step runs (what
 * PyTorch's `DataLoader(num_workers=…)` does): rendering and decoding images is ≈ 15 % of a
 * `small` step on the main thread, and the step leaves a core partly idle (its single-threaded
 * kernels run while a BLAS thread waits). Sample i is still a pure function of (config, i) —
 * the worker builds the same sampler (`makeSampler`) — so batches, resumes and runs are the
 * same with or without it (`data.prefetch: false` makes them on the main thread).
 */
import type { Sample } from "../data/mod.ts";
import type { ModelConfig } from "../model/mod.ts";
import type { TrainConfig } from "./config.ts";

/** Messages to the worker. */
export type PrefetchRequest =
  | { kind: "init"; config: TrainConfig; modelConfig: ModelConfig; tokenizerPath: string }
  | { kind: "batch"; id: number; start: number; n: number };

/** Messages from the worker. */
export type PrefetchReply =
  | { kind: "batch"; id: number; samples: Sample[] }
  | { kind: "error"; id: number; message: string; name: string };

/** Makes batches [start, start + n) of a training stream ahead of their use. */
export class BatchPrefetcher {
  #worker: Worker;
  #waiting = new Map<number, { resolve(s: Sample[]): void; reject(e: Error): void }>();
  #ids = 0;
  #ahead: { start: number; n: number; batch: Promise<Sample[]> } | null = null;
  #failed: Error | null = null;

  constructor(config: TrainConfig, modelConfig: ModelConfig, tokenizerPath: string) {
    this.#worker = new Worker(new URL("./prefetch_worker.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<PrefetchReply>) => {
      const r = e.data, w = this.#waiting.get(r.id);
      if (!w) return;
      this.#waiting.delete(r.id);
      if (r.kind === "batch") w.resolve(r.samples);
      else w.reject(Object.assign(new Error(r.message), { name: r.name }));
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#fail(new Error(`The data worker stopped: ${e.message}`));
    };
    this.#post({ kind: "init", config, modelConfig, tokenizerPath });
  }

  #fail(e: Error): void {
    this.#failed = e;
    for (const w of this.#waiting.values()) w.reject(e);
    this.#waiting.clear();
  }

  #post(m: PrefetchRequest): void {
    this.#worker.postMessage(m);
  }

  #request(start: number, n: number): Promise<Sample[]> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#ids++;
    const p = new Promise<Sample[]>((resolve, reject) =>
      this.#waiting.set(id, { resolve, reject })
    );
    this.#post({ kind: "batch", id, start, n });
    return p;
  }

  /**
   * Samples [start, start + n) of the stream — made ahead when the previous call asked for the
   * batch before it — and the request for the batch after it, [start + n, start + 2n).
   */
  async batch(start: number, n: number): Promise<Sample[]> {
    const a = this.#ahead;
    const mine = a && a.start === start && a.n === n ? a.batch : this.#request(start, n);
    if (a && a.batch !== mine) a.batch.catch(() => {}); // a batch nobody wants any more
    const next = this.#request(start + n, n);
    next.catch(() => {}); // its error, if any, is raised by the call that uses it
    this.#ahead = { start: start + n, n, batch: next };
    return await mine;
  }

  close(): void {
    this.#ahead?.batch.catch(() => {});
    this.#ahead = null;
    this.#fail(new Error("The data worker was closed"));
    this.#worker.terminate();
  }
}
