/**
 * BLAS through Deno's FFI: `cblas_sgemm` from the system's OpenBLAS. tfjs-backend-wasm's
 * matmul runs at 1–17 GFLOP/s here; OpenBLAS reaches the machine's matmul limit, and takes
 * transposed operands for free. The wasm backend's `BatchMatMul` is replaced by a kernel that
 * calls sgemm on views of the wasm heap (no copies).
 *
 * `DVSFT_BLAS=off` turns it off; `DVSFT_BLAS_LIB=/path/libopenblas.so` picks the library.
 *
 * One caller at a time per process: OpenBLAS 0.3.21 (Debian 12's) deadlocks when two threads of
 * one process enter its threaded sgemm at once — one spins in `exec_blas` on `sched_yield`, the
 * other waits on the server's mutex, for ever. Deno workers (and `deno test --parallel`, whose
 * test files share one process) are such threads, so every call holds a process-wide
 * `pthread_mutex_t` (see `processMutex`).
 */
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

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
  gemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
}

const LIBC = {
  calloc: { parameters: ["usize", "usize"], result: "pointer" },
  free: { parameters: ["pointer"], result: "void" },
  setenv: { parameters: ["buffer", "buffer", "i32"], result: "i32" },
  getenv: { parameters: ["buffer"], result: "pointer" },
  pthread_mutex_lock: { parameters: ["pointer"], result: "i32" },
  pthread_mutex_unlock: { parameters: ["pointer"], result: "i32" },
} as const;

/** The environment variable that holds the process's BLAS mutex address (hex). */
export const BLAS_MUTEX_ENV = "DVSFT_BLAS_MUTEX";

const cString = (s: string) => new TextEncoder().encode(s + "\0");

/**
 * A mutex every isolate of this process shares: JS workers share no memory, but they share the
 * C heap and the environment. The first to come allocates a zeroed `pthread_mutex_t` (glibc's
 * static initializer is all zeros) and publishes its address with `setenv(…, overwrite = 0)`,
 * which glibc serializes; whoever loses the race frees its own and reads the winner's.
 * A child process inherits the variable but not the memory, so the address is keyed by pid.
 * Null when libc cannot be opened (then calls are not serialized).
 */
function processMutex(): { lock(): void; unlock(): void } | null {
  let libc;
  try {
    libc = Deno.dlopen("libc.so.6", LIBC).symbols;
  } catch {
    return null;
  }
  const name = cString(`${BLAS_MUTEX_ENV}_${Deno.pid}`);
  const mine = libc.calloc(1n, 64n); // sizeof(pthread_mutex_t) is 40 on x86_64 and aarch64
  if (mine === null) return null;
  const hex = Deno.UnsafePointer.value(mine).toString(16);
  libc.setenv(name, cString(hex), 0);
  const published = libc.getenv(name);
  const value = published ? new Deno.UnsafePointerView(published).getCString() : hex;
  if (value !== hex) libc.free(mine);
  const mutex = Deno.UnsafePointer.create(BigInt(`0x${value}`));
  return {
    lock: () => void libc.pthread_mutex_lock(mutex),
    unlock: () => void libc.pthread_mutex_unlock(mutex),
  };
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
      const mutex = processMutex();
      const call: typeof f = mutex
        ? (...args) => {
          mutex.lock();
          try {
            f(...args);
          } finally {
            mutex.unlock();
          }
        }
        : f;
      const gemm: Blas["gemm"] = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
        call(
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
      cached = {
        library,
        gemm,
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
