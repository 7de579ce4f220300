/**
 * A helper thread of `simd_pool.ts`: its own instance of the SIMD module over the shared heap,
 * running the kernel calls posted to its slot (`SLOT_LAYOUT`).
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  type GemmAt,
  PROCEDURE_PARAMS,
  type ProcedureName,
  runProcedure,
} from "./attention_cpu.ts";
import { openGemm, openThreads } from "./blas.ts";
import type { Simd } from "./simd.ts";
import { SLOT_LAYOUT } from "./simd_pool.ts";

const { memory, module, ctrl: buffer, slot, names, kinds, blasLibrary } = workerData as {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  ctrl: SharedArrayBuffer;
  slot: number;
  names: string[];
  /** per kernel, per parameter: is it a float (`name:f32`)? */
  kinds: boolean[][];
  /** the BLAS the calling thread uses (null: none; procedures are not posted then) */
  blasLibrary: string | null;
};
const { SLOT, ARGS, SEQ, DONE, KERNEL, STATUS } = SLOT_LAYOUT;
const ctrl = new Int32Array(buffer), ctrlF = new Float32Array(buffer);
const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as Record<
  string,
  (...a: number[]) => unknown
>;
const simd = exports as unknown as Simd;

/**
 * sgemm on heap offsets through the process's BLAS, on this thread only (one core: a BLAS whose
 * thread count is per thread, MKL's, is set to 1 here; OpenBLAS's is set by the caller).
 */
function gemmOf(library: string): GemmAt | null {
  try {
    const { gemm } = openGemm(library, "pointer");
    const threads = openThreads(library);
    if (threads?.perThread) threads.set(1);
    const base = Deno.UnsafePointer.of(new Uint8Array(memory.buffer));
    const at = (off: number) => Deno.UnsafePointer.offset(base!, off);
    return (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
      gemm(ta, tb, m, n, k, alpha, at(a), lda, at(b), ldb, beta, at(c), ldc);
  } catch {
    return null;
  }
}
const gemm = blasLibrary ? gemmOf(blasLibrary) : null;
const kernels = names.map((n): (...a: number[]) => unknown =>
  n in PROCEDURE_PARAMS
    ? (...a: number[]) => runProcedure(n as ProcedureName, a, gemm!, simd)
    : exports[n]!
);
const base = slot * SLOT;
parentPort!.postMessage({ blas: gemm !== null });

/** Wait for the next sequence number: spin a little (calls come in bursts), then sleep. */
function next(seen: number): number {
  for (let spins = 0; spins < 4000; spins++) {
    const s = Atomics.load(ctrl, base + SEQ);
    if (s !== seen) return s;
  }
  for (;;) {
    Atomics.wait(ctrl, base + SEQ, seen);
    const s = Atomics.load(ctrl, base + SEQ);
    if (s !== seen) return s;
  }
}

let seen = 0;
for (;;) {
  seen = next(seen);
  const k = ctrl[base + KERNEL]!;
  const f = kernels[k]!;
  const args = kinds[k]!.map((isFloat, i) =>
    isFloat ? ctrlF[base + ARGS + i]! : ctrl[base + ARGS + i]!
  );
  try {
    f(...args);
  } catch {
    ctrl[base + STATUS] = 1;
  }
  Atomics.store(ctrl, base + DONE, seen);
  Atomics.notify(ctrl, base + DONE);
}
