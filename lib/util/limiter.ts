/** Raised when a bounded queue is full; an API answers 503 with Retry-After. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
}

/** A concurrency limit with a bounded waiting queue. */
export class Limiter {
  #active = 0;
  #waiting: Array<() => void> = [];
  constructor(readonly concurrency: number, readonly maxQueue = Infinity) {
    if (!(concurrency >= 1)) {
      throw new RangeError(
        `Cannot create limiter: concurrency must be >= 1, current value is ${concurrency}`,
      );
    }
  }
  get active(): number {
    return this.#active;
  }
  get queued(): number {
    return this.#waiting.length;
  }
  /** Run `fn` when a slot is free; throws QueueFullError at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.concurrency) {
      if (this.#waiting.length >= this.maxQueue) {
        throw new QueueFullError(
          `Queue full: ${this.#active} running, ${this.#waiting.length} waiting`,
        );
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next(); // hand the slot over
      else this.#active--;
    }
  }
}
