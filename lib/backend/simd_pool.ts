/**
 * Helper threads for the SIMD kernels. The fused ops' elementwise and row work (GELU, layer norm,
 * the attention softmax and its backward, the vocabulary softmax, AdamW) ran on one core while
 * OpenBLAS used both; over a shared heap (`shared_heap.ts` makes tfjs-backend-wasm's memory
 * shared) the same kernels run in helper workers on their own instances of the module, each on a
 * contiguous part of the rows or elements, while the calling thread does the first part.
 *
 * A call is split only where the split changes no element's arithmetic: rows stay whole, an
 * elementwise range is cut at multiples of four (the SIMD bulk and the scalar tail see the same
 * elements as in one call), a causal softmax part knows its first row. So every split kernel returns the
 * same bits as one call (tests check it). Reductions across rows (layer norm's dγ, dβ) are split by
 * the caller into partial sums (`helpersOf`).
 *
 * Hand-off: one `SharedArrayBuffer` slot a helper (`SLOT_LAYOUT`);
 * `Atomics.notify` wakes it, the caller runs its own part, then spins briefly and waits for
 * `done`. ≈ 20 µs a hand-off on this machine, so calls under `MIN_SPLIT` elements run in one
 * piece. Helpers are `node:worker_threads` workers, unref'ed (they do not keep a process alive).
 */
import { Worker } from "node:worker_threads";
import type { Simd } from "./simd.ts";
import { PROCEDURE_PARAMS } from "./attention_cpu.ts";

/** Elements of work under which a call runs in one piece (a hand-off costs ≈ 20 µs). */
export const MIN_SPLIT = 32768;
const MAX_THREADS = 8;
/**
 * A helper's slot in the control buffer (int32 indices; `simd_worker.ts` reads the same): SLOT
 * int32s each, the posted sequence number, the one done, the kernel's index, a status (1: the
 * kernel trapped), then the arguments from ARGS on.
 */
export const SLOT_LAYOUT = { SLOT: 32, SEQ: 0, DONE: 1, KERNEL: 2, STATUS: 3, ARGS: 8 } as const;
const { SLOT, SEQ, DONE, KERNEL, STATUS, ARGS } = SLOT_LAYOUT;

/** How a kernel's work divides: the count parameter, bytes each pointer moves per unit, alignment. */
interface SplitRule {
  count: string;
  /** what a parameter advances per unit of `count` (bytes for a pointer), from the call's arguments */
  advance: Record<string, (a: Record<string, number>) => number>;
  /** the units a part must be a multiple of */
  align: number;
  /** elements of work per unit (for `MIN_SPLIT`) */
  work: (a: Record<string, number>) => number;
}

const f4 = () => 4;
const elementwise = (...pointers: string[]): SplitRule => ({
  count: "n",
  advance: Object.fromEntries(pointers.map((p) => [p, f4])),
  align: 4,
  work: () => 1,
});

/** The kernels that split, and how. The rest (reductions to one value, small per-head work) do not. */
const RULES: Record<string, SplitRule> = {
  geluForward: elementwise("x", "y"),
  geluForwardKeep: elementwise("x", "y", "gate"),
  geluBackward: elementwise("dy", "x", "dx"),
  geluBackwardKept: elementwise("dy", "x", "gate", "dx"),
  adamw: elementwise("w", "m", "v", "g"),
  add: elementwise("a", "b", "y"),
  layerNormForward: {
    count: "R",
    advance: { x: (a) => 4 * a.C!, y: (a) => 4 * a.C! },
    align: 1,
    work: (a) => a.C!,
  },
  softmaxRows: {
    count: "R",
    // a causal row's length comes from its index within its [T, T] block: r0 moves with the part
    advance: { s: (a) => 4 * a.T!, r0: () => 1 },
    align: 1,
    work: (a) => a.T!,
  },
  scaleRows: {
    count: "R",
    advance: { src: (a) => 4 * a.C!, dst: (a) => 4 * a.C!, scale: f4 },
    align: 1,
    work: (a) => a.C!,
  },
  softmaxBackwardRows: {
    count: "R",
    advance: { P: (a) => 4 * a.T!, ds: (a) => 4 * a.T!, dot: f4 },
    align: 1,
    work: (a) => a.T!,
  },
};

/** The helpers of one shared memory. */
class Pool {
  readonly ctrl: Int32Array;
  readonly ctrlF: Float32Array;
  readonly names: string[];
  #workers: Worker[] = [];
  #posted: number[];
  /** Whether the helpers have BLAS, so they run `PROCEDURE_PARAMS` procedures. */
  procedures: boolean;
  #failed: string | null = null;

  constructor(
    readonly params: Readonly<Record<string, readonly string[]>>,
    readonly helpers: number,
  ) {
    const sab = new SharedArrayBuffer(4 * SLOT * Math.max(1, helpers));
    this.ctrl = new Int32Array(sab);
    this.ctrlF = new Float32Array(sab);
    this.names = Object.keys(params);
    this.#posted = new Array(Math.max(1, helpers)).fill(0);
    this.procedures = true;
  }

  /** Start the helpers; resolves when each has its instance (and BLAS, when named). */
  async start(
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    blasLibrary: string | null,
  ): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.helpers; i++) {
      const worker = new Worker(new URL("./simd_worker.ts", import.meta.url), {
        workerData: {
          memory,
          module,
          ctrl: this.ctrl.buffer,
          slot: i,
          names: this.names,
          blasLibrary,
          kinds: this.names.map((n) => this.params[n]!.map((t) => t.endsWith(":f32"))),
        },
      });
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once("message", (m: { blas: boolean }) => {
            if (!m.blas) this.procedures = false;
            resolve();
          });
          worker.once("error", (e) => reject(e));
          worker.once(
            "exit",
            (code) => reject(new Error(`a helper exited (${code}) before it was ready`)),
          );
        }),
      );
      worker.on("error", (e) => this.#failed = String(e));
      this.#workers.push(worker);
    }
    await Promise.all(ready);
    // unref'ed once ready (an unref'ed worker's first message would not keep the loop alive)
    for (const w of this.#workers) w.unref();
  }

  /** Post `args` of kernel `name` to helper `i` (it starts at once). */
  post(i: number, name: string, args: readonly number[]): void {
    const base = i * SLOT, types = this.params[name]!;
    for (let k = 0; k < args.length; k++) {
      if (types[k]!.endsWith(":f32")) this.ctrlF[base + ARGS + k] = args[k]!;
      else this.ctrl[base + ARGS + k] = args[k]!;
    }
    this.ctrl[base + KERNEL] = this.names.indexOf(name);
    Atomics.store(this.ctrl, base + SEQ, ++this.#posted[i]!);
    Atomics.notify(this.ctrl, base + SEQ);
  }

  /** Wait until helpers 0…n−1 finished what they were posted. */
  wait(n: number): void {
    for (let i = 0; i < n; i++) {
      const at = i * SLOT + DONE;
      let spins = 0;
      while (Atomics.load(this.ctrl, at) !== this.#posted[i]) {
        if (++spins > 20000) {
          Atomics.wait(this.ctrl, at, Atomics.load(this.ctrl, at), 50);
          if (this.#failed) throw new Error(`simd helper thread failed: ${this.#failed}`);
        }
      }
      if (this.ctrl[i * SLOT + STATUS] !== 0) {
        this.ctrl[i * SLOT + STATUS] = 0;
        throw new Error("simd helper thread: the kernel trapped (an offset outside the heap?)");
      }
    }
  }

  /** Run `main` here and calls[k] on helper k at once; return when all are done. */
  run(main: () => void, calls: ReadonlyArray<readonly [string, readonly number[]]>): void {
    if (calls.length > this.helpers) {
      throw new RangeError(`helpers: ${calls.length} calls for ${this.helpers} helpers`);
    }
    for (const [k, [name, args]] of calls.entries()) this.post(k, name, args);
    try {
      main();
    } finally {
      this.wait(calls.length);
    }
  }

  /** End the helpers. */
  stop(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}

const pools = new WeakMap<WebAssembly.Memory, Pool>();
const bySimd = new WeakMap<Simd, { pool: () => Pool | undefined; local: Simd }>();
let threadsWanted = defaultThreads();

function defaultThreads(): number {
  const env = Deno.env.get("DVSFT_SIMD_THREADS");
  if (env !== undefined) {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
      throw new RangeError(`DVSFT_SIMD_THREADS must be an integer 1…${MAX_THREADS}, got '${env}'`);
    }
    return n;
  }
  return Math.min(MAX_THREADS, Math.max(1, navigator.hardwareConcurrency || 1));
}

/** Threads the SIMD kernels use (env `DVSFT_SIMD_THREADS`, default the machine's cores, ≤ 8). */
export function simdThreads(): number {
  return threadsWanted;
}

/**
 * Use `n` threads from now on (1: every kernel in one piece on the calling thread), at most the
 * helpers started + 1. For benchmarks and tests comparing the two in one process.
 */
export function setSimdThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new RangeError(`SIMD threads must be an integer 1…${MAX_THREADS}, got ${n}`);
  }
  threadsWanted = n;
}

/**
 * Start the helper threads of a shared memory (`simdThreads() − 1` of them, unless started).
 * Until this resolves, kernels over that memory run in one piece.
 */
export async function startSimdPool(
  memory: WebAssembly.Memory,
  module: WebAssembly.Module,
  params: Readonly<Record<string, readonly string[]>>,
  blasLibrary: string | null = null,
): Promise<number> {
  const existing = pools.get(memory);
  if (existing) return existing.helpers;
  const helpers = threadsWanted - 1;
  if (helpers < 1 || !(memory.buffer instanceof SharedArrayBuffer)) return 0;
  const pool = new Pool({ ...params, ...PROCEDURE_PARAMS }, helpers);
  if (!blasLibrary) pool.procedures = false;
  try {
    await pool.start(memory, module, blasLibrary);
  } catch (e) {
    pool.stop(); // the helpers that did start
    throw e;
  }
  pools.set(memory, pool);
  return helpers;
}

/** Stop a memory's helpers (tests). */
export function stopSimdPool(memory: WebAssembly.Memory): void {
  pools.get(memory)?.stop();
  pools.delete(memory);
}

/** Helper threads a call can use now, and the pool (undefined: none). */
function usable(entry: { pool: () => Pool | undefined }): { pool: Pool; parts: number } | null {
  const pool = entry.pool();
  if (!pool) return null;
  const parts = Math.min(threadsWanted, pool.helpers + 1);
  return parts > 1 ? { pool, parts } : null;
}

/**
 * The kernels of `local` (an instance over the shared `memory`) with the `RULES` kernels split
 * across the memory's helper threads, once `startSimdPool` has started them.
 */
export function splitAcrossThreads(
  local: Simd,
  memory: WebAssembly.Memory,
  params: Readonly<Record<string, readonly string[]>>,
): Simd {
  const entry = { pool: () => pools.get(memory), local };
  const out: Record<string, unknown> = { ...local };
  for (const [name, rule] of Object.entries(RULES)) {
    const names = params[name]!.map((p) => p.split(":")[0]!);
    const countAt = names.indexOf(rule.count);
    const moves = Object.entries(rule.advance).map(([p, f]) => [names.indexOf(p), f] as const);
    const f = (local as unknown as Record<string, (...a: number[]) => void>)[name]!;
    out[name] = (...args: number[]) => {
      const use = usable(entry);
      const total = args[countAt]!;
      const named = Object.fromEntries(names.map((n, i) => [n, args[i]!]));
      if (!use || total * rule.work(named) < MIN_SPLIT) return f(...args);
      const align = rule.align;
      const blocks = Math.floor(total / align);
      const parts = Math.min(use.parts, blocks);
      if (parts < 2) return f(...args);
      // part k covers units [start_k, start_{k+1}): equal shares of whole aligned blocks
      const start = (k: number) => k === parts ? total : align * Math.floor((blocks * k) / parts);
      const argsOf = (k: number) => {
        const a = args.slice();
        a[countAt] = start(k + 1) - start(k);
        for (const [i, by] of moves) a[i] = args[i]! + start(k) * by(named);
        return a;
      };
      use.pool.run(
        () => f(...argsOf(0)),
        Array.from({ length: parts - 1 }, (_, k) => [name, argsOf(k + 1)] as const),
      );
    };
  }
  const simd = out as unknown as Simd;
  bySimd.set(simd, entry);
  return simd;
}

/**
 * The helpers of `simd`'s memory for work a caller divides itself: `parts` threads in all
 * (1: none), `local` the calling thread's unsplit kernels (a part must not split again: the
 * helpers are busy with theirs), `procedures` whether helpers run `PROCEDURE_PARAMS` (they have
 * BLAS), `run(main, calls)` runs `main` here and calls[k] on helper k, and waits for all.
 */
export function helpersOf(simd: Simd): {
  parts: number;
  local: Simd;
  procedures: boolean;
  run(main: () => void, calls: ReadonlyArray<readonly [string, readonly number[]]>): void;
} | null {
  const entry = bySimd.get(simd);
  const use = entry ? usable(entry) : null;
  if (!entry || !use) return null;
  return {
    parts: use.parts,
    local: entry.local,
    procedures: use.pool.procedures,
    run: (main, calls) => use.pool.run(main, calls),
  };
}
