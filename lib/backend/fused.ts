/**
 * Fused transformer ops: `linear`, `layerNorm`, `gelu` and multi-head `attention`, each one
 * kernel forward and one kernel backward on the `wasm` backend (JS over the wasm heap, BLAS
 * sgemm through FFI on strided views, wasm's own Sigmoid/Softmax for the transcendental
 * parts), and the composed tfjs ops everywhere else.
 *
 * Why: a `small` training step built from tfjs's primitive ops is ≈ 4 600 kernels, most of
 * them elementwise passes (Multiply, Add, Sum, Cast…) plus tape bookkeeping for each one;
 * the fused forms cut that to a few hundred. The composed forms stay as the reference (the
 * `cpu` backend uses them), and the tests compare the two, values and gradients.
 *
 * The fused kernels register under their own names (`DvsftLinear`, …) with gradients
 * (`tf.registerGradient`) whose backward kernels return all input gradients at once.
 */
import { tf } from "./tf.ts";
import { type Blas, loadBlas } from "./blas.ts";

// deno-lint-ignore no-explicit-any
type WasmBackend = any;

interface TensorInfo {
  dataId: object;
  shape: number[];
  dtype: tf.DataType;
}

interface KernelArgs<I, A = Record<string, never>> {
  inputs: I;
  backend: WasmBackend;
  attrs: A;
}

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
const LN_EPS = 1e-5;
const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

let fusedReady = false;
/** Set by tests and benchmarks to compare the fused and composed paths on one backend. */
let fusedDisabled = Deno.env.get("DVSFT_FUSED") === "off";

/** Turn the fused kernels off (or back on) for this process; returns the previous state. */
export function setFusedEnabled(on: boolean): boolean {
  const was = !fusedDisabled;
  fusedDisabled = !on;
  return was;
}

/** True when the current backend runs the fused kernels. */
export function fusedActive(): boolean {
  return fusedReady && !fusedDisabled && tf.getBackend() === "wasm";
}

// ---------------------------------------------------------------------------------------------
// Composed reference forms (any backend)

function composedLayerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, LN_EPS))), g), b);
}

function composedGelu(x: tf.Tensor): tf.Tensor {
  // GPT-2's tanh approximation, 0.5·x·(1 + tanh(u)), written as x·σ(2u) (the same function):
  // wasm's Sigmoid is 7x faster than its Tanh; x·x·x because Pow is slow too
  const u = tf.mul(GELU_C, tf.add(x, tf.mul(GELU_A, tf.mul(tf.mul(x, x), x))));
  return tf.mul(x, tf.sigmoid(tf.mul(2, u)));
}

function composedLinear(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const K = x.shape.at(-1)!;
  const lead = x.shape.slice(0, -1);
  return tf.reshape(tf.add(tf.matMul(tf.reshape(x, [prod(lead), K]), w), b), [
    ...lead,
    w.shape[1]!,
  ]);
}

/** Additive causal masks [T, T] (0 on and below the diagonal, -1e9 above), cached per T. */
const masks = new Map<string, tf.Tensor>();
function causalMask(T: number): tf.Tensor {
  const key = `${tf.getBackend()}:${T}`;
  let m = masks.get(key);
  if (!m || m.isDisposed) {
    const v = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) v[i * T + j] = -1e9;
    m = tf.keep(tf.tensor2d(v, [T, T]));
    masks.set(key, m);
  }
  return m;
}

function composedAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  heads: number,
  causal: boolean,
): tf.Tensor {
  const [B, T, C] = q.shape as [number, number, number];
  const hd = C / heads;
  const split = (x: tf.Tensor) => tf.transpose(tf.reshape(x, [B, T, heads, hd]), [0, 2, 1, 3]);
  let att = tf.mul(tf.matMul(split(q), split(k), false, true), 1 / Math.sqrt(hd)); // [B, H, T, T]
  if (causal) att = tf.add(att, causalMask(T));
  const y = tf.matMul(tf.softmax(att), split(v)); // [B, H, T, hd]
  return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, C]);
}

// ---------------------------------------------------------------------------------------------
// Public ops

/** [..., K] · [K, N] + [N] → [..., N] */
export function linear(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!fusedActive()) return composedLinear(x, w, b);
  return tf.engine().runKernel("DvsftLinear", { x, w, b }) as tf.Tensor;
}

/** Layer norm over the last axis (ε = 1e-5, biased variance). */
export function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!fusedActive()) return composedLayerNorm(x, g, b);
  return tf.engine().runKernel("DvsftLayerNorm", { x, g, b }) as tf.Tensor;
}

/** GELU, tanh approximation. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (!fusedActive()) return composedGelu(x);
  return tf.engine().runKernel("DvsftGelu", { x }) as tf.Tensor;
}

/**
 * Multi-head scaled dot-product attention on projected q, k, v [B, T, C] → [B, T, C] (heads
 * split and merged inside), causal or bidirectional.
 */
export function attention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  heads: number,
  causal: boolean,
): tf.Tensor {
  if (q.shape[2]! % heads !== 0) {
    throw new RangeError(`attention: width ${q.shape[2]} does not divide into ${heads} heads`);
  }
  if (!fusedActive()) return composedAttention(q, k, v, heads, causal);
  return tf.engine().runKernel("DvsftAttention", { q, k, v }, {
    heads,
    causal,
  } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

// ---------------------------------------------------------------------------------------------
// wasm kernels

function views(backend: WasmBackend, infos: TensorInfo[]): Float32Array[] {
  // take views only after every makeOutput: an allocation can grow (and detach) the heap
  return infos.map((i) => backend.typedArrayFromHeap(i) as Float32Array);
}

function linearKernel(blas: Blas) {
  return ({ inputs, backend }: KernelArgs<{ x: TensorInfo; w: TensorInfo; b: TensorInfo }>) => {
    const { x, w, b } = inputs;
    const K = x.shape.at(-1)!, N = w.shape[1]!;
    const M = prod(x.shape) / K;
    const out = backend.makeOutput([...x.shape.slice(0, -1), N], "float32");
    const [xv, wv, bv, ov] = views(backend, [x, w, b, out]);
    for (let r = 0; r < M; r++) ov!.set(bv!, r * N); // C starts as the bias rows; sgemm adds
    blas.gemm(false, false, M, N, K, 1, xv!, K, wv!, N, 1, ov!, N);
    return out;
  };
}

function linearGradKernel(blas: Blas) {
  return (
    { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; w: TensorInfo }>,
  ) => {
    const { dy, x, w } = inputs;
    const K = x.shape.at(-1)!, N = w.shape[1]!;
    const M = prod(x.shape) / K;
    const dx = backend.makeOutput(x.shape, "float32");
    const dw = backend.makeOutput([K, N], "float32");
    const db = backend.makeOutput([N], "float32");
    const [dyv, xv, wv, dxv, dwv, dbv] = views(backend, [dy, x, w, dx, dw, db]);
    blas.gemm(false, true, M, K, N, 1, dyv!, N, wv!, N, 0, dxv!, K); // dx = dy · wᵀ
    blas.gemm(true, false, K, N, M, 1, xv!, K, dyv!, N, 0, dwv!, N); // dw = xᵀ · dy
    const acc = new Float64Array(N);
    for (let r = 0; r < M; r++) {
      const base = r * N;
      for (let c = 0; c < N; c++) acc[c]! += dyv![base + c]!;
    }
    dbv!.set(acc);
    return [dx, dw, db];
  };
}

/** Per-row mean and 1/σ of x [R, C]. */
function rowStats(xv: Float32Array, R: number, C: number) {
  const mean = new Float64Array(R), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    const base = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += xv[base + c]!;
    const m = s / C;
    let ss = 0;
    for (let c = 0; c < C; c++) {
      const d = xv[base + c]! - m;
      ss += d * d;
    }
    mean[r] = m;
    rstd[r] = 1 / Math.sqrt(ss / C + LN_EPS);
  }
  return { mean, rstd };
}

function layerNormKernel(
  { inputs, backend }: KernelArgs<{ x: TensorInfo; g: TensorInfo; b: TensorInfo }>,
) {
  const { x, g, b } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const out = backend.makeOutput(x.shape, "float32");
  const [xv, gv, bv, ov] = views(backend, [x, g, b, out]);
  const { mean, rstd } = rowStats(xv!, R, C);
  for (let r = 0; r < R; r++) {
    const base = r * C, m = mean[r]!, s = rstd[r]!;
    for (let c = 0; c < C; c++) ov![base + c] = (xv![base + c]! - m) * s * gv![c]! + bv![c]!;
  }
  return out;
}

function layerNormGradKernel(
  { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; g: TensorInfo }>,
) {
  const { dy, x, g } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const dx = backend.makeOutput(x.shape, "float32");
  const dg = backend.makeOutput([C], "float32");
  const db = backend.makeOutput([C], "float32");
  const [dyv, xv, gv, dxv, dgv, dbv] = views(backend, [dy, x, g, dx, dg, db]);
  const { mean, rstd } = rowStats(xv!, R, C);
  const accG = new Float64Array(C), accB = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const base = r * C, m = mean[r]!, s = rstd[r]!;
    // dx = s·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)), dŷ = dy·g
    let sumD = 0, sumDX = 0;
    for (let c = 0; c < C; c++) {
      const d = dyv![base + c]!, xh = (xv![base + c]! - m) * s;
      const dh = d * gv![c]!;
      sumD += dh;
      sumDX += dh * xh;
      accG[c]! += d * xh;
      accB[c]! += d;
    }
    const mD = sumD / C, mDX = sumDX / C;
    for (let c = 0; c < C; c++) {
      const xh = (xv![base + c]! - m) * s;
      dxv![base + c] = s * (dyv![base + c]! * gv![c]! - mD - xh * mDX);
    }
  }
  dgv!.set(accG);
  dbv!.set(accB);
  return [dx, dg, db];
}

/** σ(2u) of x by wasm's Sigmoid kernel (a new heap tensor the caller disposes). */
function geluGate(backend: WasmBackend, sigmoid: tf.KernelFunc, x: TensorInfo): TensorInfo {
  const n = prod(x.shape);
  const z = backend.makeOutput(x.shape, "float32");
  const [xv, zv] = views(backend, [x, z]);
  for (let i = 0; i < n; i++) {
    const a = xv![i]!;
    zv![i] = 2 * GELU_C * (a + GELU_A * a * a * a);
  }
  const s = sigmoid({ inputs: { x: z }, backend, attrs: {} }) as TensorInfo;
  backend.disposeData(z.dataId);
  return s;
}

/** GELU forward: y = x·σ(2u). */
function geluKernel(sigmoid: tf.KernelFunc) {
  return ({ inputs, backend }: KernelArgs<{ x: TensorInfo }>) => {
    const { x } = inputs;
    const n = prod(x.shape);
    const s = geluGate(backend, sigmoid, x);
    const y = backend.makeOutput(x.shape, "float32");
    const [xv, sv, yv] = views(backend, [x, s, y]);
    for (let i = 0; i < n; i++) yv![i] = xv![i]! * sv![i]!;
    backend.disposeData(s.dataId);
    return y;
  };
}

/** GELU backward; σ(2u) is recomputed (cheaper than keeping it alive through the step). */
function geluGradKernel(sigmoid: tf.KernelFunc) {
  return ({ inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo }>) => {
    const { dy, x } = inputs;
    const n = prod(x.shape);
    const s = geluGate(backend, sigmoid, x);
    const dx = backend.makeOutput(x.shape, "float32");
    const [dyv, xv, sv, dxv] = views(backend, [dy, x, s, dx]);
    for (let i = 0; i < n; i++) {
      // d/dx x·σ(2u) = σ + x·σ(1−σ)·2u', u' = c(1 + 3a·x²)
      const a = xv![i]!, sg = sv![i]!;
      const du = 2 * GELU_C * (1 + 3 * GELU_A * a * a);
      dxv![i] = dyv![i]! * (sg + a * sg * (1 - sg) * du);
    }
    backend.disposeData(s.dataId);
    return dx;
  };
}

interface AttentionAttrs {
  heads: number;
  causal: boolean;
}

/**
 * P = softmax(QKᵀ/√d + mask) [B, H, T, T] for q, k [B, T, C]: per (batch, head) one sgemm on
 * strided views of the [T, C] activations (no head transposes), then wasm's Softmax over all
 * rows at once. A new heap tensor the caller disposes.
 */
function probabilities(
  blas: Blas,
  softmax: tf.KernelFunc,
  backend: WasmBackend,
  q: TensorInfo,
  k: TensorInfo,
  { heads: H, causal }: AttentionAttrs,
): TensorInfo {
  const [B, T, C] = q.shape as [number, number, number];
  const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T;
  const s = backend.makeOutput([B, H, T, T], "float32");
  const [qv, kv, sv] = views(backend, [q, k, s]);
  for (let bi = 0; bi < B; bi++) {
    for (let h = 0; h < H; h++) {
      const off = bi * T * C + h * hd, so = (bi * H + h) * TT;
      const sView = sv!.subarray(so, so + TT);
      blas.gemm(
        false,
        true,
        T,
        T,
        hd,
        scale,
        qv!.subarray(off),
        C,
        kv!.subarray(off),
        C,
        0,
        sView,
        T,
      );
      if (causal) { for (let i = 0; i < T - 1; i++) sView.fill(-1e9, i * T + i + 1, (i + 1) * T); }
    }
  }
  const p = softmax({ inputs: { logits: s }, backend, attrs: { dim: 3 } }) as TensorInfo;
  backend.disposeData(s.dataId);
  return p;
}

/** Attention forward: P, then Y = P·V written straight into the merged [B, T, C] output. */
function attentionKernel(blas: Blas, softmax: tf.KernelFunc) {
  return (
    { inputs, backend, attrs }: KernelArgs<
      { q: TensorInfo; k: TensorInfo; v: TensorInfo },
      AttentionAttrs
    >,
  ) => {
    const { q, k, v } = inputs;
    const [B, T, C] = q.shape as [number, number, number];
    const H = attrs.heads, hd = C / H, TT = T * T;
    const p = probabilities(blas, softmax, backend, q, k, attrs);
    const y = backend.makeOutput([B, T, C], "float32");
    const [pv, vv, yv] = views(backend, [p, v, y]);
    for (let bi = 0; bi < B; bi++) {
      for (let h = 0; h < H; h++) {
        const off = bi * T * C + h * hd, po = (bi * H + h) * TT;
        blas.gemm(
          false,
          false,
          T,
          hd,
          T,
          1,
          pv!.subarray(po, po + TT),
          T,
          vv!.subarray(off),
          C,
          0,
          yv!.subarray(off),
          C,
        );
      }
    }
    backend.disposeData(p.dataId);
    return y;
  };
}

/** Attention backward; P is recomputed (flash-attention style: nothing [T, T] kept between passes). */
function attentionGradKernel(blas: Blas, softmax: tf.KernelFunc) {
  return (
    { inputs, backend, attrs }: KernelArgs<
      { dy: TensorInfo; q: TensorInfo; k: TensorInfo; v: TensorInfo },
      AttentionAttrs
    >,
  ) => {
    const { dy, q, k, v } = inputs;
    const H = attrs.heads;
    const [B, T, C] = q.shape as [number, number, number];
    const hd = C / H, scale = 1 / Math.sqrt(hd), TT = T * T;
    const p = probabilities(blas, softmax, backend, q, k, attrs);
    const dq = backend.makeOutput(q.shape, "float32");
    const dk = backend.makeOutput(k.shape, "float32");
    const dv = backend.makeOutput(v.shape, "float32");
    const [dyv, qv, kv, vv, pv, dqv, dkv, dvv] = views(backend, [dy, q, k, v, p, dq, dk, dv]);
    const dS = new Float32Array(TT);
    for (let bi = 0; bi < B; bi++) {
      for (let h = 0; h < H; h++) {
        const off = bi * T * C + h * hd, po = (bi * H + h) * TT;
        const P = pv!.subarray(po, po + TT);
        const dyh = dyv!.subarray(off);
        // dV = Pᵀ·dY; dP = dY·Vᵀ
        blas.gemm(true, false, T, hd, T, 1, P, T, dyh, C, 0, dvv!.subarray(off), C);
        blas.gemm(false, true, T, T, hd, 1, dyh, C, vv!.subarray(off), C, 0, dS, T);
        // dS = P ⊙ (dP − rowsum(dP ⊙ P)); masked entries have P = 0
        for (let i = 0; i < T; i++) {
          const r = i * T;
          let dot = 0;
          for (let j = 0; j < T; j++) dot += dS[r + j]! * P[r + j]!;
          for (let j = 0; j < T; j++) dS[r + j] = P[r + j]! * (dS[r + j]! - dot);
        }
        // dQ = scale·dS·K; dK = scale·dSᵀ·Q
        blas.gemm(
          false,
          false,
          T,
          hd,
          T,
          scale,
          dS,
          T,
          kv!.subarray(off),
          C,
          0,
          dqv!.subarray(off),
          C,
        );
        blas.gemm(
          true,
          false,
          T,
          hd,
          T,
          scale,
          dS,
          T,
          qv!.subarray(off),
          C,
          0,
          dkv!.subarray(off),
          C,
        );
      }
    }
    backend.disposeData(p.dataId);
    return [dq, dk, dv];
  };
}

/** Register the fused kernels and their gradients on `wasm` (needs BLAS; idempotent). */
export function registerFusedKernels(): boolean {
  if (fusedReady) return true;
  const blas = loadBlas();
  const sigmoid = tf.getKernel("Sigmoid", "wasm")?.kernelFunc;
  const softmax = tf.getKernel("Softmax", "wasm")?.kernelFunc;
  if (!blas || !sigmoid || !softmax) return false;
  const reg = (kernelName: string, kernelFunc: unknown) =>
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: kernelFunc as tf.KernelFunc });
  reg("DvsftLinear", linearKernel(blas));
  reg("DvsftLinearGrad", linearGradKernel(blas));
  reg("DvsftLayerNorm", layerNormKernel);
  reg("DvsftLayerNormGrad", layerNormGradKernel);
  reg("DvsftGelu", geluKernel(sigmoid));
  reg("DvsftGeluGrad", geluGradKernel(sigmoid));
  reg("DvsftAttention", attentionKernel(blas, softmax));
  reg("DvsftAttentionGrad", attentionGradKernel(blas, softmax));

  // A gradient function runs once per node; the backward kernels return every input's
  // gradient in one call, so they run eagerly and each input takes its share.
  const run = (name: string, inputs: tf.NamedTensorMap, attrs?: tf.NamedAttrMap) =>
    tf.engine().runKernel(name, inputs, attrs) as unknown as tf.Tensor | tf.Tensor[];
  tf.registerGradient({
    kernelName: "DvsftLinear",
    inputsToSave: ["x", "w"],
    gradFunc: (dy, saved) => {
      const [x, w] = saved as tf.Tensor[];
      const [dx, dw, db] = run("DvsftLinearGrad", {
        dy: dy as tf.Tensor,
        x: x!,
        w: w!,
      }) as tf.Tensor[];
      return { x: () => dx!, w: () => dw!, b: () => db! };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftLayerNorm",
    inputsToSave: ["x", "g"],
    gradFunc: (dy, saved) => {
      const [x, g] = saved as tf.Tensor[];
      const [dx, dg, db] = run("DvsftLayerNormGrad", {
        dy: dy as tf.Tensor,
        x: x!,
        g: g!,
      }) as tf.Tensor[];
      return { x: () => dx!, g: () => dg!, b: () => db! };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftGelu",
    inputsToSave: ["x"],
    gradFunc: (dy, saved) => {
      const [x] = saved as tf.Tensor[];
      return { x: () => run("DvsftGeluGrad", { dy: dy as tf.Tensor, x: x! }) as tf.Tensor };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftAttention",
    inputsToSave: ["q", "k", "v"],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v] = saved as tf.Tensor[];
      const [dq, dk, dv] = run(
        "DvsftAttentionGrad",
        { dy: dy as tf.Tensor, q: q!, k: k!, v: v! },
        attrs as tf.NamedAttrMap,
      ) as tf.Tensor[];
      return { q: () => dq!, k: () => dk!, v: () => dv! };
    },
  });
  fusedReady = true;
  return true;
}
