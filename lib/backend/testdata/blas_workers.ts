/**
 * Run by blas_test.ts in a child process: `W` workers call sgemm at once, `R` times each, on
 * matrices large enough for OpenBLAS's threaded path. Prints one JSON line per worker: its
 * checksum error and the mutex address it used.
 */
import { BLAS_MUTEX_ENV, loadBlas } from "../blas.ts";

declare const self: Worker & { name?: string };

const isWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";

if (isWorker) {
  self.onmessage = (e: MessageEvent<{ n: number; rounds: number; variant: number }>) => {
    const { n, rounds, variant } = e.data;
    // each worker its own transpose case: OpenBLAS keeps one lock per case, not one for all
    const tA = (variant & 1) === 1, tB = (variant & 2) === 2;
    const blas = loadBlas()!;
    const a = new Float32Array(n * n).map((_, i) => (i % 7) - 3);
    const b = new Float32Array(n * n).map((_, i) => (i % 5) - 2);
    const c = new Float32Array(n * n);
    let err = 0;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    let seed = variant + 1;
    for (let r = 0; r < rounds; r++) {
      // now and then a pause about as long as OpenBLAS's idle threads spin before they sleep
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      if (seed % 8 === 0) Atomics.wait(pause, 0, 0, (seed >> 8) % 150);
      blas.sgemm(tA, tB, n, n, n, a, n, b, n, c);
      // one entry checked against a plain dot product
      const i = (r * 31) % n, j = (r * 17) % n;
      let ref = 0;
      for (let k = 0; k < n; k++) {
        ref += a[tA ? k * n + i : i * n + k]! * b[tB ? j * n + k : k * n + j]!;
      }
      err = Math.max(err, Math.abs(ref - c[i * n + j]!));
    }
    self.postMessage({ err, mutex: Deno.env.get(`${BLAS_MUTEX_ENV}_${Deno.pid}`) ?? null });
  };
} else {
  const workers = Number(Deno.args[0] ?? 2), rounds = Number(Deno.args[1] ?? 300);
  const n = Number(Deno.args[2] ?? 96);
  if (!loadBlas()) {
    console.log(JSON.stringify({ blas: false }));
    Deno.exit(0);
  }
  const done = Array.from({ length: workers }, (_, variant) => {
    const w = new Worker(import.meta.url, { type: "module" });
    return new Promise((resolve) => {
      w.onmessage = (e) => {
        resolve(e.data);
        w.terminate();
      };
      w.postMessage({ n, rounds, variant });
    });
  });
  for (const r of await Promise.all(done)) console.log(JSON.stringify(r));
}
