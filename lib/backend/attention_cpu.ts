/**
 * The fused attention's work on a range of batch items, written once over heap byte offsets, so
 * the calling thread and a SIMD helper thread (`simd_worker.ts`) each run it on their own items.
 * Heads are small matrices (`small`: 256 × 256 × 24), where OpenBLAS's two threads cost more than
 * they give; items split across threads with one-core sgemms keep both cores busy instead (as
 * PyTorch's batched matmul does).
 *
 * Layouts: y, dy [B, T, C] (head h at columns h·hd…); q, k, v, dq, dk, dv the same with rows
 * `ld` floats apart: C for separate tensors, 3C for views into one packed [B, T, 3C] q|k|v (the
 * output of one fused projection); P [B, H, T, T].
 */
import type { Gemm } from "./blas.ts";
import type { Simd } from "./simd.ts";

/** sgemm over heap byte offsets: C = alpha·op(A)·op(B) + beta·C, row-major. */
export type GemmAt = Gemm<number>;

/** The shape of one attention call. */
export interface AttentionShape {
  B: number;
  T: number;
  C: number;
  H: number;
  causal: boolean;
  /** row stride of q, k, v and their gradients, in floats (C, or 3C when packed) */
  ld: number;
}

/**
 * Query rows a block holds: its [rows, T] slice of P stays within ≈ 256 KiB, so the scores, their
 * softmax and the products that read them meet in cache (`medium`'s vision heads are 4 MiB of
 * scores each: whole-head passes ran from memory).
 */
export function blockRows(T: number): number {
  return Math.max(1, Math.min(T, Math.floor(65536 / T)));
}

/**
 * P = softmax(QKᵀ/√d + mask) for items [b0, b1), head by head and block of query rows by block
 * (sgemms on strided views: no head transposes); then, when `y` is given (not 0), Y = P·V of the
 * block straight into the merged [B, T, C] output. Causal blocks compute only the keys up to
 * their last row (the softmax zeroes the rest), halving the decoder's score work.
 */
export function attentionForwardItems(
  gemm: GemmAt,
  simd: Simd,
  { B: _B, T, C, H, causal, ld }: AttentionShape,
  at: { q: number; k: number; v: number; p: number; y: number },
  b0: number,
  b1: number,
): void {
  const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T, rb = blockRows(T);
  for (let bi = b0; bi < b1; bi++) {
    for (let h = 0; h < H; h++) {
      const io = 4 * (bi * T * ld + h * hd), oo = 4 * (bi * T * C + h * hd);
      const po = at.p + 4 * (bi * H + h) * TT;
      for (let q0 = 0; q0 < T; q0 += rb) {
        const rows = Math.min(rb, T - q0), keys = causal ? q0 + rows : T;
        const blk = po + 4 * q0 * T, qo = io + 4 * q0 * ld;
        gemm(false, true, rows, keys, hd, scale, at.q + qo, ld, at.k + io, ld, 0, blk, T);
        simd.softmaxRows(blk, rows, T, causal ? 1 : 0, q0);
        if (at.y) {
          gemm(
            false,
            false,
            rows,
            hd,
            keys,
            1,
            blk,
            T,
            at.v + io,
            ld,
            0,
            at.y + oo + 4 * q0 * C,
            C,
          );
        }
      }
    }
  }
}

/** Floats of scratch one thread's backward needs: a block's dS [rows, T] and a head's row dots [T]. */
export function attentionScratch({ T }: AttentionShape): number {
  return blockRows(T) * T + T;
}

/**
 * Attention backward for items [b0, b1), by head and block of query rows like the forward; dK and
 * dV sum the blocks' products. The softmax backward's row term Σⱼ dPᵢⱼ·Pᵢⱼ equals dYᵢ·Yᵢ
 * (flash-attention's identity, as Yᵢ = Σⱼ Pᵢⱼ·Vⱼ): a dot over the head width instead of a pass
 * over [T, T]. `scratch` holds `attentionScratch` floats of this thread's own.
 */
export function attentionBackwardItems(
  gemm: GemmAt,
  simd: Simd,
  { B: _B, T, C, H, ld }: AttentionShape,
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
  const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T, rb = blockRows(T);
  const dS = at.scratch, dot = at.scratch + 4 * rb * T;
  for (let bi = b0; bi < b1; bi++) {
    for (let h = 0; h < H; h++) {
      const io = 4 * (bi * T * ld + h * hd), oo = 4 * (bi * T * C + h * hd);
      const po = at.p + 4 * (bi * H + h) * TT;
      simd.rowDots(at.dy + oo, at.y + oo, dot, T, C, hd);
      for (let q0 = 0; q0 < T; q0 += rb) {
        const rows = Math.min(rb, T - q0), blk = po + 4 * q0 * T;
        const qi = io + 4 * q0 * ld, dyo = at.dy + oo + 4 * q0 * C;
        const sum = q0 === 0 ? 0 : 1; // dK, dV: the first block writes, the others add
        // dP = dY·Vᵀ, then dS = P ⊙ (dP − dYᵢ·Yᵢ) (masked entries have P = 0)
        gemm(false, true, rows, T, hd, 1, dyo, C, at.v + io, ld, 0, dS, T);
        simd.softmaxBackwardRows(blk, dS, dot + 4 * q0, rows, T);
        // dQ = scale·dS·K; dK += scale·dSᵀ·Q; dV += Pᵀ·dY
        gemm(false, false, rows, hd, T, scale, dS, T, at.k + io, ld, 0, at.dq + qi, ld);
        gemm(true, false, T, hd, rows, scale, dS, T, at.q + qi, ld, sum, at.dk + io, ld);
        gemm(true, false, T, hd, rows, 1, blk, T, dyo, C, sum, at.dv + io, ld);
      }
    }
  }
}

/** Procedures a helper thread runs besides single kernels, with their (i32) parameters. */
export const PROCEDURE_PARAMS = {
  attentionForward: ["B", "T", "C", "H", "causal", "ld", "q", "k", "v", "p", "y", "b0", "b1"],
  attentionBackward: [
    "B",
    "T",
    "C",
    "H",
    "ld",
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

/** A procedure's flat arguments, in `PROCEDURE_PARAMS` order, from named values (extras ignored). */
export function procedureCall(
  name: ProcedureName,
  values: Readonly<Record<string, number>>,
): [ProcedureName, number[]] {
  return [name, PROCEDURE_PARAMS[name].map((n) => values[n]!)];
}

/** Run a procedure from its flat arguments (as a helper receives them). */
export function runProcedure(name: ProcedureName, a: number[], gemm: GemmAt, simd: Simd): void {
  // every parameter is a count or a heap byte offset: unsigned (the posted i32 reads back negative
  // for offsets past 2 GiB)
  const v = Object.fromEntries(PROCEDURE_PARAMS[name].map((n, i) => [n, a[i]! >>> 0]));
  const shape = { B: v.B!, T: v.T!, C: v.C!, H: v.H!, causal: v.causal === 1, ld: v.ld! };
  // the pointer fields, by the names the item functions read
  const at = v as unknown as
    & Parameters<typeof attentionForwardItems>[3]
    & Parameters<typeof attentionBackwardItems>[3];
  if (name === "attentionForward") attentionForwardItems(gemm, simd, shape, at, v.b0!, v.b1!);
  else attentionBackwardItems(gemm, simd, shape, at, v.b0!, v.b1!);
}
