/**
 * Labeling requests run in a pool of workers, so the server's event loop stays free (health
 * checks, other requests) while one request decodes a 40-Mpixel image or draws its overlay.
 * OCR stays in the server's one OCR pool: a worker asks for words by message.
 */
import type { OcrEngine } from "../ocr/mod.ts";
import type { LabelResponseRequest } from "./label_response.ts";
import { QueueFullError } from "../util/limiter.ts";
import { ApiError, toErrorResponse } from "./errors.ts";
import type { ErrorResponse, LabelTask } from "./label_worker.ts";

export interface LabelPoolOptions {
  /** Workers. @default min(4, cores) (env DVSFT_LABEL_WORKERS) */
  workers?: number;
  /** Requests allowed to wait for a worker; more → 503. @default 64 (env DVSFT_LABEL_MAX_QUEUE) */
  maxQueue?: number;
  /** The OCR engine for source "ocr" (created on first use). */
  ocr: () => Promise<OcrEngine>;
}

interface Slot {
  worker: Worker;
  busy: boolean;
}

export class LabelPool {
  #slots: Slot[] = [];
  #waiting: Array<(s: Slot) => void> = [];
  #next = 0;
  readonly size: number;
  readonly maxQueue: number;

  constructor(readonly options: LabelPoolOptions) {
    const env = (n: string) => Deno.env.get(n) ? Number(Deno.env.get(n)) : undefined;
    this.size = Math.max(
      1,
      options.workers ?? env("DVSFT_LABEL_WORKERS") ?? Math.min(4, navigator.hardwareConcurrency),
    );
    this.maxQueue = options.maxQueue ?? env("DVSFT_LABEL_MAX_QUEUE") ?? 64;
  }

  get active(): number {
    return this.#slots.filter((s) => s.busy).length;
  }
  get queued(): number {
    return this.#waiting.length;
  }

  async #acquire(): Promise<Slot> {
    const free = this.#slots.find((s) => !s.busy);
    if (free) return (free.busy = true, free);
    if (this.#slots.length < this.size) {
      const slot = { worker: this.#spawn(), busy: true };
      this.#slots.push(slot);
      return slot;
    }
    if (this.#waiting.length >= this.maxQueue) {
      throw new QueueFullError(
        `label queue full: ${this.size} busy, ${this.#waiting.length} waiting`,
      );
    }
    return await new Promise<Slot>((r) => this.#waiting.push(r));
  }

  #release(slot: Slot): void {
    const next = this.#waiting.shift();
    if (next) next(slot);
    else slot.busy = false;
  }

  /** Label an input (bytes, or base64 decoded in the worker); resolves to the response's JSON text, or throws an ApiError. */
  async label(
    input: Uint8Array | { base64: string },
    request: LabelResponseRequest,
    o: { maxPixels: number; maxPdfPages: number },
  ): Promise<string> {
    const engine = request.source === "ocr" ? await this.options.ocr() : undefined;
    const slot = await this.#acquire();
    const id = ++this.#next;
    let cleanup = () => {};
    try {
      return await new Promise<string>((resolve, reject) => {
        const onMessage = async (e: MessageEvent) => {
          const msg = e.data;
          if (msg.id !== id) return;
          if (msg.type === "result") resolve(msg.json);
          else if (msg.type === "error") {
            const { status, body, headers } = msg.error as ErrorResponse;
            reject(
              new ApiError(status, body.error.code, body.error.message, body.error.issues, headers),
            );
          } else if (msg.type === "ocr") {
            try {
              const words = await engine!.recognize(msg.png, { dpi: msg.dpi });
              slot.worker.postMessage({ type: "ocr-result", call: msg.call, words });
            } catch (err) {
              slot.worker.postMessage({
                type: "ocr-error",
                call: msg.call,
                error: toErrorResponse(err),
              });
            }
          }
        };
        const onError = (e: ErrorEvent) => {
          e.preventDefault();
          // a worker that crashed is replaced
          slot.worker.terminate();
          slot.worker = this.#spawn();
          reject(new Error(`label worker crashed: ${e.message}`));
        };
        slot.worker.addEventListener("message", onMessage);
        slot.worker.addEventListener("error", onError);
        const task: LabelTask = {
          type: "label",
          id,
          input,
          request,
          maxPixels: o.maxPixels,
          maxPdfPages: o.maxPdfPages,
          ocrName: engine?.name,
        };
        const transfer = input instanceof Uint8Array && input.buffer instanceof ArrayBuffer
          ? [input.buffer]
          : [];
        slot.worker.postMessage(task, transfer);
        const w = slot.worker;
        cleanup = () => {
          w.removeEventListener("message", onMessage);
          w.removeEventListener("error", onError);
        };
      });
    } finally {
      cleanup();
      this.#release(slot);
    }
  }

  #spawn(): Worker {
    return new Worker(new URL("./label_worker.ts", import.meta.url), { type: "module" });
  }

  close(): void {
    for (const s of this.#slots) s.worker.terminate();
    this.#slots = [];
  }
}
