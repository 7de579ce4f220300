/**
 * A helper thread of `simd_pool.ts`: its own instance of the SIMD module over the shared heap,
 * running the kernel calls posted to its slot (see the pool for the slot's layout).
 */
import { parentPort, workerData } from "node:worker_threads";

const { memory, module, ctrl: buffer, slot, names, kinds } = workerData as {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  ctrl: SharedArrayBuffer;
  slot: number;
  names: string[];
  /** per kernel, per parameter: is it a float (`name:f32`)? */
  kinds: boolean[][];
};
const SLOT = 32, ARGS = 8, [SEQ, DONE, KERNEL, STATUS] = [0, 1, 2, 3];
const ctrl = new Int32Array(buffer), ctrlF = new Float32Array(buffer);
const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as Record<
  string,
  (...a: number[]) => unknown
>;
const kernels = names.map((n) => exports[n]!);
const base = slot * SLOT;
parentPort!.postMessage("ready");

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
  const args = kinds[k]!.map((isFloat, i) => isFloat ? ctrlF[base + ARGS + i]! : ctrl[base + ARGS + i]!);
  try {
    f(...args);
  } catch {
    ctrl[base + STATUS] = 1;
  }
  Atomics.store(ctrl, base + DONE, seen);
  Atomics.notify(ctrl, base + DONE);
}
