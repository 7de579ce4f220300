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
  const candidates = [Deno.env.get("DVSFT_BLAS_LIB"), "libopenblas.so.0", "libopenblas.so"].filter((
    x,
  ): x is string => !!x);
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
