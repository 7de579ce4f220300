/**
 * BLAS through Deno's FFI: `cblas_sgemm` from the system's OpenBLAS. tfjs-backend-wasm's
 * matmul runs at 1–17 GFLOP/s here; OpenBLAS reaches the machine's matmul limit, and takes
 * transposed operands for free. The wasm backend's `BatchMatMul` is replaced by a kernel that
 * calls sgemm on views of the wasm heap (no copies).
 *
 * `DVSFT_BLAS=off` turns it off; `DVSFT_BLAS_LIB=/path/libopenblas.so` picks the library.
 *
 * Calls are guarded against fork: OpenBLAS registers `blas_thread_shutdown` as a fork *prepare*
 * handler, and in 0.3.21 (Debian 12's) that handler stops the thread pool even while another
 * thread of the process waits inside a threaded sgemm for it — that caller then spins in
 * `exec_blas_async_wait` for ever. A fork happens whenever any part of the process forks (Deno's
 * `node:child_process` with extra stdio pipes or `detached`, which is how playwright starts a
 * browser); Deno workers and `deno test --parallel` put such a fork next to a training step.
 * See `forkGuard`.
 */
/** cblas enums, row-major (also for callers of `SGEMM_AT_SYMBOL`). */
export const CBLAS = { ROW_MAJOR: 101, NO_TRANS: 111, TRANS: 112 } as const;
const { ROW_MAJOR, NO_TRANS, TRANS } = CBLAS;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
} as const;

type ToPointers<T extends readonly string[]> = {
  -readonly [K in keyof T]: T[K] extends "buffer" ? "pointer"
    : T[K];
};

/** The same sgemm with its operands as raw addresses (a helper thread's heap offsets). */
export const SGEMM_AT_SYMBOL = {
  name: "cblas_sgemm",
  parameters: SYMBOLS.cblas_sgemm.parameters.map((t) =>
    t === "buffer" ? "pointer" : t
  ) as unknown as ToPointers<typeof SYMBOLS.cblas_sgemm.parameters>,
  result: "void",
} as const;

/** OpenBLAS's thread count (optional: another BLAS may not have it). */
const THREAD_SYMBOLS = {
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_num_threads: { parameters: [], result: "i32" },
} as const;

/**
 * C = alpha·op(A)·op(B) + beta·C, row-major, every leading dimension given; operands of type P
 * (views, or heap offsets).
 */
export type Gemm<P> = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: P,
  lda: number,
  b: P,
  ldb: number,
  beta: number,
  c: P,
  ldc: number,
) => void;

export interface Blas {
  library: string;
  /** C[M×N] = op(A)·op(B), row-major; lda/ldb are the stored row lengths. */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    c: Float32Array,
  ): void;
  /**
   * C = alpha·op(A)·op(B) + beta·C with every leading dimension given: strided views (one
   * attention head inside a [T, C] activation) need no copies.
   */
  gemm: Gemm<Float32Array>;
  /**
   * OpenBLAS's own threads for the calls that follow (null: this BLAS cannot say). Calls from
   * several threads at once run on one core each only with 1 here.
   */
  threads: { get(): number; set(n: number): void } | null;
}

const LIBC = {
  dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
  __register_atfork: { parameters: ["pointer", "pointer", "pointer", "pointer"], result: "i32" },
  _IO_list_lock: { parameters: [], result: "void" },
  _IO_list_unlock: { parameters: [], result: "void" },
} as const;

const cString = (s: string) => new TextEncoder().encode(s + "\0");

/**
 * A process-wide lock that every sgemm holds and every fork waits for, before OpenBLAS's own
 * prepare handler runs. It is glibc's stdio list lock (`_IO_list_lock`, exported since 2.2.5):
 * recursive, one per process whatever the isolate, and its lock/unlock/reset functions take no
 * arguments, so they can be fork handlers themselves (JS callbacks cannot run inside a fork).
 * Prepare handlers run last-registered first: registered after OpenBLAS is loaded, ours takes
 * the lock before OpenBLAS stops its threads, so no sgemm is in flight when it does; the parent
 * handler releases it and the child resets it (glibc itself takes the same lock around fork).
 * Each isolate registers once; the lock counts, so several registrations stay balanced.
 * Null without glibc (then calls are not guarded).
 */
function forkGuard(): { lock(): void; unlock(): void } | null {
  try {
    const libc = Deno.dlopen("libc.so.6", LIBC).symbols;
    const fn = (name: string) => libc.dlsym(null, cString(name));
    const [lock, unlock, reset] = ["_IO_list_lock", "_IO_list_unlock", "_IO_list_resetlock"].map(
      fn,
    );
    if (!lock || !unlock || !reset) return null;
    if (libc.__register_atfork(lock, unlock, reset, null) !== 0) return null;
    return { lock: libc._IO_list_lock, unlock: libc._IO_list_unlock };
  } catch {
    return null;
  }
}

let cached: Blas | null | undefined;

/** Open the system BLAS, or null when it is absent or turned off. Cached. */
export function loadBlas(): Blas | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (Deno.env.get("DVSFT_BLAS") === "off") return null;
  // a library named by the user is the only one tried: falling back silently would hide a typo
  const named = Deno.env.get("DVSFT_BLAS_LIB");
  const candidates = named ? [named] : ["libopenblas.so.0", "libopenblas.so"];
  for (const library of candidates) {
    try {
      const lib = Deno.dlopen(library, SYMBOLS);
      const f = lib.symbols.cblas_sgemm;
      const guard = forkGuard();
      const lock = guard?.lock ?? (() => {}), unlock = guard?.unlock ?? (() => {});
      const gemm: Blas["gemm"] = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
        lock();
        try {
          f(
            ROW_MAJOR,
            transA ? TRANS : NO_TRANS,
            transB ? TRANS : NO_TRANS,
            m,
            n,
            k,
            alpha,
            a,
            lda,
            b,
            ldb,
            beta,
            c,
            ldc,
          );
        } finally {
          unlock();
        }
      };
      let threads: Blas["threads"] = null;
      try {
        const t = Deno.dlopen(library, THREAD_SYMBOLS).symbols;
        threads = {
          get: () => t.openblas_get_num_threads(),
          set: (n) => t.openblas_set_num_threads(n),
        };
      } catch { /* not OpenBLAS */ }
      cached = {
        library,
        gemm,
        threads,
        sgemm: (transA, transB, m, n, k, a, lda, b, ldb, c) =>
          gemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n),
      };
      return cached;
    } catch { /* next candidate */ }
  }
  return null;
}

/**
 * The warning printed once when the wasm backend starts without BLAS: training still works, an
 * order of magnitude slower, and the user should know why and what to install.
 */
export function missingBlasWarning(): string {
  const named = Deno.env.get("DVSFT_BLAS_LIB");
  return [
    `dvsft: OpenBLAS not found (${named ? `DVSFT_BLAS_LIB=${named}` : "libopenblas.so.0"}):`,
    "the wasm backend's matmuls fall back to tfjs's own kernels and the fused training ops are",
    "off, so training runs ≈ 15× slower (20 steps of the `small` preset: ≈ 154 s instead of ≈ 11 s).",
    "Install it with `apt-get install libopenblas0-pthread` (Debian/Ubuntu) or point",
    "DVSFT_BLAS_LIB at a libopenblas.so; DVSFT_BLAS=off runs without it and silences this.",
  ].join("\n  ");
}
