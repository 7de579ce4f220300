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
/** cblas enums, row-major. */
const CBLAS = { ROW_MAJOR: 101, NO_TRANS: 111, TRANS: 112 } as const;
const { ROW_MAJOR, NO_TRANS, TRANS } = CBLAS;

/**
 * The two ways a BLAS library exports sgemm, with the matrix operands as `P` (typed arrays, or
 * raw addresses for a helper thread's heap offsets): the C interface (`cblas_sgemm`: OpenBLAS,
 * MKL's `libmkl_rt`, BLIS), and the Fortran one (`sgemm_`: every BLAS, among them libraries that
 * carry MKL without its C interface), column-major with every argument by reference and the
 * character arguments' hidden lengths last.
 */
function sgemmSymbols<P extends "buffer" | "pointer">(p: P) {
  const i = "i32", f = "f32", r = "pointer";
  return {
    cblas: {
      cblas_sgemm: {
        parameters: [i, i, i, i, i, i, f, p, i, p, i, f, p, i],
        result: "void",
      },
    },
    fortran: {
      sgemm_: {
        parameters: [r, r, r, r, r, r, p, r, p, r, r, p, r, "usize", "usize"],
        result: "void",
      },
    },
  } as const;
}

/** OpenBLAS's thread count: one count for the whole process. */
const OPENBLAS_THREADS = {
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_num_threads: { parameters: [], result: "i32" },
} as const;
/**
 * MKL's: a count for the calling thread (`_Local`), over the process's. The mixed-case names are
 * its C entry points (by value); the lower-case `mkl_set_num_threads_local` is, in some builds,
 * the Fortran one, taking a pointer.
 */
const MKL_THREADS = {
  MKL_Set_Num_Threads_Local: { parameters: ["i32"], result: "i32" },
  MKL_Get_Max_Threads: { parameters: [], result: "i32" },
} as const;

/** A BLAS's own thread count for the sgemms that follow. */
export interface BlasThreads {
  get(): number;
  set(n: number): void;
  /** true: the count is the calling thread's (MKL); false: the whole process's (OpenBLAS) */
  perThread: boolean;
}

/** The thread control of `library` (null: it has none this code knows). */
export function openThreads(library: string): BlasThreads | null {
  try {
    const t = Deno.dlopen(library, OPENBLAS_THREADS).symbols;
    return {
      get: () => t.openblas_get_num_threads(),
      set: (n) => t.openblas_set_num_threads(n),
      perThread: false,
    };
  } catch { /* not OpenBLAS */ }
  try {
    const t = Deno.dlopen(library, MKL_THREADS).symbols;
    return {
      get: () => t.MKL_Get_Max_Threads(),
      set: (n) => void t.MKL_Set_Num_Threads_Local(n),
      perThread: true,
    };
  } catch { /* not MKL */ }
  return null;
}

/** Which of the two interfaces a library was called through. */
export type SgemmInterface = "cblas" | "fortran";

type Operand<P> = P extends "buffer" ? Float32Array : Deno.PointerValue;

/**
 * `library`'s sgemm as a row-major `Gemm` (its C interface where it has one, else the Fortran
 * one; `only` picks one), for the calling thread. Throws when the library does not open or has
 * not the symbol.
 */
export function openGemm<P extends "buffer" | "pointer">(
  library: string,
  operands: P,
  only?: SgemmInterface,
): { gemm: Gemm<Operand<P>>; via: SgemmInterface } {
  // the library itself first, for its own error when it does not open (never closed: unloading
  // a BLAS that started threads is unsafe)
  Deno.dlopen(library, {});
  const symbols = sgemmSymbols(operands);
  type Call = (...a: unknown[]) => void;
  let f: Call | null = null;
  try {
    if (only !== "fortran") {
      f = Deno.dlopen(library, symbols.cblas).symbols.cblas_sgemm as unknown as Call;
    }
  } catch { /* no C interface */ }
  if (f) {
    const call = f;
    return {
      via: "cblas",
      gemm: (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
        call(
          ROW_MAJOR,
          ta ? TRANS : NO_TRANS,
          tb ? TRANS : NO_TRANS,
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
        ),
    };
  }
  if (only === "cblas") throw new Error(`${library} has no cblas_sgemm`);
  let g: Call;
  try {
    g = Deno.dlopen(library, symbols.fortran).symbols.sgemm_ as unknown as Call;
  } catch {
    throw new Error(
      `${library} has ${only === "fortran" ? "no sgemm_" : "neither cblas_sgemm nor sgemm_"}`,
    );
  }
  // the by-reference scalars, in memory of this binding's own (an ArrayBuffer's store does not move)
  const scalars = new ArrayBuffer(64),
    i32 = new Int32Array(scalars),
    f32 = new Float32Array(scalars);
  const bytes = new Uint8Array(scalars);
  bytes[40] = 78; // 'N'
  bytes[41] = 84; // 'T'
  const base = Deno.UnsafePointer.of(bytes)!;
  const [pm, pn, pk, pld1, pld2, pldc, pAlpha, pBeta, pN, pT] = [
    0,
    4,
    8,
    12,
    16,
    20,
    24,
    28,
    40,
    41,
  ]
    .map((o) => Deno.UnsafePointer.offset(base, o));
  return {
    via: "fortran",
    // row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix read
    // column-major is its transpose: B first, the flags unchanged
    gemm: (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
      i32[0] = n, i32[1] = m, i32[2] = k, i32[3] = ldb, i32[4] = lda, i32[5] = ldc;
      f32[6] = alpha, f32[7] = beta;
      g(tb ? pT : pN, ta ? pT : pN, pm, pn, pk, pAlpha, b, pld1, a, pld2, pBeta, c, pldc, 1, 1);
      void scalars; // kept alive with the closure
    },
  };
}

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
   * The BLAS's own threads for the calls that follow (null: this BLAS cannot say). Calls from
   * several threads at once run on one core each only with 1 here (MKL: set on each thread).
   */
  threads: BlasThreads | null;
  /** the interface its sgemm is called through */
  via: SgemmInterface;
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
const envSet: string[] = [];

/**
 * Environment variables `loadBlas` set for this process (a benchmark starts its peers without
 * them, as a user would run the peer).
 */
export function blasEnvSet(): readonly string[] {
  return envSet;
}

/**
 * Set an environment variable the BLAS reads once, when it loads, unless the user set it; recorded
 * for `blasEnvSet`.
 */
function defaultEnv(name: string, value: string): void {
  if (Deno.env.get(name) !== undefined) return;
  Deno.env.set(name, value);
  envSet.push(name);
}

/** Open the system BLAS, or null when it is absent or turned off. Cached. */
export function loadBlas(): Blas | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (Deno.env.get("DVSFT_BLAS") === "off") return null;
  // An OpenMP BLAS (MKL with libgomp) keeps its threads spinning after every call by default, on
  // the cores the SIMD helper threads need between sgemms: a `small` step with MKL ran at 0.77×
  // PyTorch 2.13 so, 0.86× with passive waiting (docs/BENCHMARKS.md). OpenBLAS's pthreads ignore
  // it.
  defaultEnv("OMP_WAIT_POLICY", "passive");
  // OpenBLAS's idle workers spin ≈ 2^28 cycles (0.1 s) after each call by default, on the same
  // core: ≈ 10 % of a `small` step (docs/BENCHMARKS.md, 2026-12-03), and in a benchmark the
  // PyTorch step that follows ours (its 2-thread tiny step: 97 ms, 18 ms with a short wait). Too
  // short a wait (2^4) slows our own step instead (every sgemm wakes a sleeping worker: `small`
  // 1004 vs 399 ms at 2^20, 2026-12-02); 2^20 cycles (≈ 0.4 ms) keeps them awake within a step.
  defaultEnv("OPENBLAS_THREAD_TIMEOUT", "20");
  // a library named by the user is the only one tried: falling back silently would hide a typo
  const named = Deno.env.get("DVSFT_BLAS_LIB");
  const candidates = named ? [named] : ["libopenblas.so.0", "libopenblas.so"];
  for (const library of candidates) {
    try {
      const { gemm: f, via } = openGemm(library, "buffer");
      const guard = forkGuard();
      const lock = guard?.lock ?? (() => {}), unlock = guard?.unlock ?? (() => {});
      const gemm: Blas["gemm"] = (...args) => {
        lock();
        try {
          f(...args);
        } finally {
          unlock();
        }
      };
      const threads = openThreads(library);
      cached = {
        library,
        gemm,
        threads,
        via,
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
    "DVSFT_BLAS_LIB at a libopenblas.so (or any BLAS with cblas_sgemm or sgemm_, e.g. MKL's",
    "libmkl_rt.so.2); DVSFT_BLAS=off runs without it and silences this.",
  ].join("\n  ");
}
