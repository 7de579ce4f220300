/**
 * The fused attention's work on a range of batch items, written once over heap byte offsets, so
 * the calling thread and a SIMD helper thread (`simd_worker.ts`) each run it on their own items.
 * Heads are small matrices (`small`: 256 × 256 × 24), where OpenBLAS's two threads cost more than
 * they give; items split across threads with one-core sgemms keep both cores busy instead (as
 * PyTorch's batched matmul does).
 *
 * Layouts: q, k, v, y, dy, dq, dk, dv [B, T, C] (head h at columns h·hd…); P [B, H, T, T].
 */
import type { Simd } from "./simd.ts";

/** sgemm over heap byte offsets: C = alpha·op(A)·op(B) + beta·C, row-major. */
export type GemmAt = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: number,
  lda: number,
  b: number,
  ldb: number,
  beta: number,
  c: number,
  ldc: number,
) => void;

/** The shape of one attention call. */
export interface AttentionShape {
  B: number;
  T: number;
  C: number;
  H: number;
  causal: boolean;
}

/**
 * P = softmax(QKᵀ/√d + mask) for items [b0, b1), head by head (one sgemm on strided views, no
 * head transposes), the item's H blocks softmaxed in one call; then, when `v`/`y` are given
 * (not 0), Y = P·V straight into the merged [B, T, C] output.
 */
export function attentionForwardItems(
  gemm: GemmAt,
  simd: Simd,
  { B: _B, T, C, H, causal }: AttentionShape,
  at: { q: number; k: number; v: number; p: number; y: number },
  b0: number,
  b1: number,
): void {
  const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T;
  for (let bi = b0; bi < b1; bi++) {
    for (let h = 0; h < H; h++) {
      const off = 4 * (bi * T * C + h * hd), po = at.p + 4 * (bi * H + h) * TT;
      gemm(false, true, T, T, hd, scale, at.q + off, C, at.k + off, C, 0, po, T);
    }
    simd.softmaxRows(at.p + 4 * bi * H * TT, H * T, T, causal ? 1 : 0);
    if (!at.y) continue;
    for (let h = 0; h < H; h++) {
      const off = 4 * (bi * T * C + h * hd), po = at.p + 4 * (bi * H + h) * TT;
      gemm(false, false, T, hd, T, 1, po, T, at.v + off, C, 0, at.y + off, C);
    }
  }
}

/** Floats of scratch one thread's backward needs: an item's dS [H, T, T] and row dots [H, T]. */
export function attentionScratch({ T, H }: AttentionShape): number {
  return H * (T * T + T);
}

/**
 * Attention backward for items [b0, b1). The softmax backward's row term Σⱼ dPᵢⱼ·Pᵢⱼ equals
 * dYᵢ·Yᵢ (flash-attention's identity, as Yᵢ = Σⱼ Pᵢⱼ·Vⱼ): a dot over the head width instead of
 * a pass over [T, T]. `scratch` holds `attentionScratch` floats of this thread's own.
 */
export function attentionBackwardItems(
  gemm: GemmAt,
  simd: Simd,
  { B: _B, T, C, H }: AttentionShape,
  at: {
    dy: number;
    q: number;
    k: number;
    v: number;
    y: number;
    p: number;
    dq: number;
    dk: number;
    dv: number;
    scratch: number;
  },
  b0: number,
  b1: number,
): void {
  const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T;
  const dS = (h: number) => at.scratch + 4 * h * TT, dot = at.scratch + 4 * H * TT;
  for (let bi = b0; bi < b1; bi++) {
    for (let h = 0; h < H; h++) {
      const off = 4 * (bi * T * C + h * hd), po = at.p + 4 * (bi * H + h) * TT;
      simd.rowDots(at.dy + off, at.y + off, dot + 4 * h * T, T, C, hd);
      // dV = Pᵀ·dY; dP = dY·Vᵀ
      gemm(true, false, T, hd, T, 1, po, T, at.dy + off, C, 0, at.dv + off, C);
      gemm(false, true, T, T, hd, 1, at.dy + off, C, at.v + off, C, 0, dS(h), T);
    }
    // dS = P ⊙ (dP − dYᵢ·Yᵢ) for the item's H blocks at once; masked entries have P = 0
    simd.softmaxBackwardRows(at.p + 4 * bi * H * TT, dS(0), dot, H * T, T);
    for (let h = 0; h < H; h++) {
      const off = 4 * (bi * T * C + h * hd);
      // dQ = scale·dS·K; dK = scale·dSᵀ·Q
      gemm(false, false, T, hd, T, scale, dS(h), T, at.k + off, C, 0, at.dq + off, C);
      gemm(true, false, T, hd, T, scale, dS(h), T, at.q + off, C, 0, at.dk + off, C);
    }
  }
}

/** Procedures a helper thread runs besides single kernels, with their (i32) parameters. */
export const PROCEDURE_PARAMS = {
  attentionForward: ["B", "T", "C", "H", "causal", "q", "k", "v", "p", "y", "b0", "b1"],
  attentionBackward: [
    "B",
    "T",
    "C",
    "H",
    "dy",
    "q",
    "k",
    "v",
    "y",
    "p",
    "dq",
    "dk",
    "dv",
    "scratch",
    "b0",
    "b1",
  ],
} as const;
export type ProcedureName = keyof typeof PROCEDURE_PARAMS;

/** Run a procedure from its flat arguments (as a helper receives them). */
export function runProcedure(name: ProcedureName, a: number[], gemm: GemmAt, simd: Simd): void {
  const [B, T, C, H] = a as [number, number, number, number];
  if (name === "attentionForward") {
    const [, , , , causal, q, k, v, p, y, b0, b1] = a as number[];
    attentionForwardItems(
      gemm,
      simd,
      { B, T, C, H, causal: causal === 1 },
      {
        q: q!,
        k: k!,
        v: v!,
        p: p!,
        y: y!,
      },
      b0!,
      b1!,
    );
    return;
  }
  const [, , , , dy, q, k, v, y, p, dq, dk, dv, scratch, b0, b1] = a as number[];
  attentionBackwardItems(
    gemm,
    simd,
    { B, T, C, H, causal: false },
    {
      dy: dy!,
      q: q!,
      k: k!,
      v: v!,
      y: y!,
      p: p!,
      dq: dq!,
      dk: dk!,
      dv: dv!,
      scratch: scratch!,
    },
    b0!,
    b1!,
  );
}
