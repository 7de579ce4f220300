/**
 * Run by blas_test.ts in a child process: `W` workers call sgemm (each its own transpose case,
 * large enough for OpenBLAS's threaded path) for `S` seconds while the main thread forks child
 * processes the way playwright starts a browser (node:child_process, detached, an extra pipe).
 * Prints {forks, workers: [{calls, err}]}; without the fork guard this hangs within seconds.
 */
import { spawn } from "node:child_process";
import { loadBlas } from "../blas.ts";

declare const self: Worker;

const isWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";

if (isWorker) {
  self.onmessage = (e: MessageEvent<{ n: number; seconds: number; variant: number }>) => {
    const { n, seconds, variant } = e.data;
    const tA = (variant & 1) === 1, tB = (variant & 2) === 2;
    const blas = loadBlas()!;
    const a = new Float32Array(n * n).map((_, i) => (i % 7) - 3);
    const b = new Float32Array(n * n).map((_, i) => (i % 5) - 2);
    const c = new Float32Array(n * n);
    let err = 0, calls = 0;
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      blas.sgemm(tA, tB, n, n, n, a, n, b, n, c);
      // one entry against a plain dot product
      const i = (calls * 31) % n, j = (calls * 17) % n;
      let ref = 0;
      for (let k = 0; k < n; k++) {
        ref += a[tA ? k * n + i : i * n + k]! * b[tB ? j * n + k : k * n + j]!;
      }
      err = Math.max(err, Math.abs(ref - c[i * n + j]!));
      calls++;
    }
    self.postMessage({ calls, err });
  };
} else {
  const workers = Number(Deno.args[0] ?? 2), seconds = Number(Deno.args[1] ?? 5);
  const n = Number(Deno.args[2] ?? 192);
  if (!loadBlas()) {
    console.log(JSON.stringify({ blas: false }));
    Deno.exit(0);
  }
  let running = workers;
  const results = Array.from({ length: workers }, (_, variant) => {
    const w = new Worker(import.meta.url, { type: "module" });
    return new Promise((resolve) => {
      w.onmessage = (e) => {
        running--;
        resolve(e.data);
        w.terminate();
      };
      w.postMessage({ n, seconds, variant });
    });
  });
  let forks = 0;
  while (running > 0) {
    await new Promise<void>((resolve, reject) => {
      const p = spawn("true", [], { detached: true, stdio: ["pipe", "pipe", "pipe", "pipe"] });
      p.on("exit", () => resolve());
      p.on("error", reject);
    });
    forks++;
  }
  console.log(JSON.stringify({ forks, workers: await Promise.all(results) }));
}
