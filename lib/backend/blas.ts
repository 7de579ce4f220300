/**
 * BLAS through Deno's FFI: `cblas_sgemm` from the system's OpenBLAS. tfjs-backend-wasm's
 * matmul runs at 1–17 GFLOP/s here; OpenBLAS reaches the machine's matmul limit, and takes
 * transposed operands for free. The wasm backend's `BatchMatMul` is replaced by a kernel that
 * calls sgemm on views of the wasm heap (no copies).
 *
 * `DVSFT_BLAS=off` turns it off; `DVSFT_BLAS_LIB=/path/libopenblas.so` picks the library.
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
      const gemm: Blas["gemm"] = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
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
