/**
 * The fused transformer ops of `fused.ts` (`DvsftLinear`, `DvsftLayerNorm`, `DvsftGelu`,
 * `DvsftAttention`, `DvsftCrossEntropy` and their `…Grad` kernels) on the `webgpu` backend.
 *
 * Why: on webgpu every tfjs primitive is a dispatch (and a tape node), and a `small` step
 * composed from them runs thousands of dispatches, most of them elementwise passes. Here:
 * - layer norm: one WGSL dispatch forward (a workgroup per row), four backward (row statistics,
 *   dx, dg, db);
 * - GELU: one dispatch forward, one backward;
 * - per-token cross-entropy over the vocabulary: one dispatch forward (max, logsumexp and the
 *   picked logit per row), one backward (softmax − one-hot, scaled, written once);
 * - linear: tfjs's fused matmul with the bias (one dispatch), and backward only the gradients
 *   asked for, one matmul (or column sum) each; the weight gradient of a tall-skinny shape (a
 *   long reduction over batch × tokens) as a split-K matmul, two dispatches;
 * - attention: batched matmuls and a softmax inside one kernel (no tape nodes for the pieces),
 *   and a hand-written backward using the identity Σⱼ dPᵢⱼPᵢⱼ = dYᵢ·Yᵢ.
 *
 * The WGSL programs go through tfjs-backend-webgpu's `runWebGPUProgram`, so they share its
 * command encoder, buffer pool and pipeline cache. Row reductions use a 64-wide workgroup.
 */
import { tf } from "./tf.ts";
import { GELU_A, GELU_C, LN_EPS } from "./simd.ts";
import { fusedOpsActive, markFusedBackend, registerFusedGradients } from "./fused.ts";

interface TensorInfo {
  dataId: object;
  shape: number[];
  dtype: tf.DataType;
}

/** The part of tfjs-backend-webgpu's `WebGPUBackend` used here. */
interface WebGpuBackend {
  runWebGPUProgram(
    program: Program,
    inputs: TensorInfo[],
    dtype: tf.DataType,
    uniforms?: Array<{ type: "int32" | "float32"; data: number[] }>,
  ): TensorInfo;
  disposeData(dataId: object): void;
}

interface Program {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  uniforms?: string;
  getUserCode(): string;
}

interface KernelArgs<I, A = Record<string, never>> {
  inputs: I;
  backend: WebGpuBackend;
  attrs: A;
}

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
const WG = 64; // row workgroups
const EW = 128; // elementwise workgroups
/** Workgroups along one dispatch dimension (WebGPU's default limit); more rows wrap to y. */
const MAX_ROWS = 65535;

/** A WGSL program for `runWebGPUProgram` (flat dispatch layout; `main(index)` is the entry). */
function program(
  key: string,
  variableNames: string[],
  outputShape: number[],
  groups: number,
  workgroup: number,
  uniforms: string,
  body: string,
): Program {
  return {
    outputShape,
    shaderKey: `dvsft_${key}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.min(groups, MAX_ROWS), Math.ceil(groups / MAX_ROWS), 1],
    variableNames,
    workgroupSize: [workgroup, 1, 1],
    uniforms,
    getUserCode: () => body,
  };
}

const i32s = (...data: number[]) => data.map((d) => ({ type: "int32" as const, data: [d] }));

/** Shared-memory row reductions (every invocation of the workgroup calls them). */
const ROW_OF = `
  // this workgroup's row; the spare workgroups of a wrapped 2-D dispatch redo the last row
  // (same values written twice), so every invocation reaches the barriers
  fn rowOf(rows : i32) -> i32 {
    return min(i32(workgroupId.y * numWorkgroups.x + workgroupId.x), rows - 1);
  }
`;

const ROW_REDUCE = `${ROW_OF}
  var<workgroup> red : array<f32, ${WG}>;
  fn rowSum(v : f32) -> f32 {
    red[localIndex] = v;
    workgroupBarrier();
    for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
      if (localIndex < s) { red[localIndex] = red[localIndex] + red[localIndex + s]; }
      workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
  }
  fn rowMax(v : f32) -> f32 {
    red[localIndex] = v;
    workgroupBarrier();
    for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
      if (localIndex < s) { red[localIndex] = max(red[localIndex], red[localIndex + s]); }
      workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
  }
`;

// ---------------------------------------------------------------------------------------------
// Layer norm

/**
 * Σᵣ term(r, k = r·C + c) for each column c of an [R, C] layout: a workgroup per column, its
 * threads over the rows, then a tree sum (a single running sum over tens of thousands of rows
 * loses float32 digits). A program binds only the inputs it reads (WebGPU's automatic layout
 * drops unused bindings), so `names`/`inputs` are exactly those `term` uses.
 */
function columnSums(
  backend: WebGpuBackend,
  key: string,
  names: string[],
  inputs: TensorInfo[],
  R: number,
  C: number,
  term: string,
): TensorInfo {
  return backend.runWebGPUProgram(
    program(
      key,
      names,
      [C],
      C,
      WG,
      "rows : i32, cols : i32,",
      `${ROW_REDUCE}
      fn main(index : i32) {
        let C = uniforms.cols;
        let c = rowOf(C);
        var acc = 0.0;
        for (var r = i32(localIndex); r < uniforms.rows; r = r + ${WG}) {
          let k = r * C + c;
          acc = acc + ${term};
        }
        let total = rowSum(acc);
        if (localIndex == 0u) { result[c] = total; }
      }`,
    ),
    inputs,
    "float32",
    i32s(R, C),
  );
}

/** WGSL: the row's `row`, `C`, `base`, `mean` and `rstd` (1/σ) of X, one workgroup a row. */
const LN_ROW_STATS = `let row = rowOf(uniforms.rows);
      let C = uniforms.cols;
      let base = row * C;
      var s = 0.0;
      for (var j = i32(localIndex); j < C; j = j + ${WG}) { s = s + X[base + j]; }
      let mean = rowSum(s) / f32(C);
      var q = 0.0;
      for (var j = i32(localIndex); j < C; j = j + ${WG}) {
        let d = X[base + j] - mean;
        q = q + d * d;
      }
      let rstd = inverseSqrt(rowSum(q) / f32(C) + ${LN_EPS});`;

function layerNormForward(
  { inputs, backend }: KernelArgs<{ x: TensorInfo; g: TensorInfo; b: TensorInfo }>,
): TensorInfo {
  const { x, g, b } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const p = program(
    "ln_fwd",
    ["X", "G", "Bi"],
    x.shape,
    R,
    WG,
    "rows : i32, cols : i32,",
    `${ROW_REDUCE}
    fn main(index : i32) {
      ${LN_ROW_STATS}
      for (var j = i32(localIndex); j < C; j = j + ${WG}) {
        result[base + j] = (X[base + j] - mean) * rstd * G[j] + Bi[j];
      }
    }`,
  );
  return backend.runWebGPUProgram(p, [x, g, b], "float32", i32s(R, C));
}

function layerNormBackward(
  { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; g: TensorInfo }>,
): TensorInfo[] {
  const { dy, x, g } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const u = i32s(R, C);
  // row statistics [R, 2]: mean, 1/σ
  const stats = backend.runWebGPUProgram(
    program(
      "ln_stats",
      ["X"],
      [R, 2],
      R,
      WG,
      "rows : i32, cols : i32,",
      `${ROW_REDUCE}
      fn main(index : i32) {
      ${LN_ROW_STATS}
        if (localIndex == 0u) {
          result[2 * row] = mean;
          result[2 * row + 1] = rstd;
        }
      }`,
    ),
    [x],
    "float32",
    u,
  );
  // dx = rstd · (dŷ − mean(dŷ) − x̂ · mean(dŷ · x̂)), dŷ = dy · g
  const dx = backend.runWebGPUProgram(
    program(
      "ln_dx",
      ["DY", "X", "G", "S"],
      x.shape,
      R,
      WG,
      "rows : i32, cols : i32,",
      `${ROW_REDUCE}
      fn main(index : i32) {
        let row = rowOf(uniforms.rows);
        let C = uniforms.cols;
        let base = row * C;
        let mean = S[2 * row];
        let rstd = S[2 * row + 1];
        var a = 0.0;
        var c = 0.0;
        for (var j = i32(localIndex); j < C; j = j + ${WG}) {
          let d = DY[base + j] * G[j];
          a = a + d;
          c = c + d * (X[base + j] - mean) * rstd;
        }
        let ma = rowSum(a) / f32(C);
        let mc = rowSum(c) / f32(C);
        for (var j = i32(localIndex); j < C; j = j + ${WG}) {
          let xh = (X[base + j] - mean) * rstd;
          result[base + j] = rstd * (DY[base + j] * G[j] - ma - xh * mc);
        }
      }`,
    ),
    [dy, x, g, stats],
    "float32",
    u,
  );
  // dg = Σᵣ dy · x̂, db = Σᵣ dy
  const column = (key: string, names: string[], inputs: TensorInfo[], term: string) =>
    columnSums(backend, key, names, inputs, R, C, term);
  const dg = column(
    "ln_dg",
    ["DY", "X", "S"],
    [dy, x, stats],
    "DY[k] * (X[k] - S[2 * r]) * S[2 * r + 1]",
  );
  const db = column("ln_db", ["DY"], [dy], "DY[k]");
  backend.disposeData(stats.dataId);
  return [dx, dg, db];
}

// ---------------------------------------------------------------------------------------------
// GELU (GPT-2's tanh form as x·σ(2u), u = c·(x + a·x³), like the composed op)

function elementwise(
  backend: WebGpuBackend,
  key: string,
  names: string[],
  inputs: TensorInfo[],
  expr: string,
): TensorInfo {
  const n = prod(inputs[0]!.shape);
  return backend.runWebGPUProgram(
    program(
      key,
      names,
      inputs[0]!.shape,
      Math.ceil(n / EW),
      EW,
      "n : i32,",
      `fn main(index : i32) {
        if (index >= uniforms.n) { return; }
        let x = X[index];
        let s = 1.0 / (1.0 + exp(-2.0 * ${GELU_C} * (x + ${GELU_A} * x * x * x)));
        result[index] = ${expr};
      }`,
    ),
    inputs,
    "float32",
    i32s(n),
  );
}

function geluForward({ inputs, backend }: KernelArgs<{ x: TensorInfo }>): TensorInfo {
  return elementwise(backend, "gelu_fwd", ["X"], [inputs.x], "x * s");
}

function geluBackward(
  { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; y: TensorInfo }>,
): TensorInfo {
  // d(x·s)/dx = s + x·s·(1 − s)·2c·(1 + 3a·x²)
  return elementwise(
    backend,
    "gelu_bwd",
    ["X", "DY"],
    [inputs.x, inputs.dy],
    `DY[index] * (s + x * s * (1.0 - s) * ${2 * GELU_C} * (1.0 + ${3 * GELU_A} * x * x))`,
  );
}

// ---------------------------------------------------------------------------------------------
// Per-token cross-entropy: a workgroup per row of the vocabulary

/** Shared by forward and backward: m = max, z = Σ exp(l − m) over row `row` of L. */
const ROW_LSE = `
  fn rowLse(base : i32, V : i32) -> vec2<f32> {
    var m = -3.4e38;
    for (var j = i32(localIndex); j < V; j = j + ${WG}) { m = max(m, L[base + j]); }
    let mx = rowMax(m);
    var z = 0.0;
    for (var j = i32(localIndex); j < V; j = j + ${WG}) { z = z + exp(L[base + j] - mx); }
    return vec2<f32>(mx, rowSum(z));
  }
`;

function crossEntropyForward(
  { inputs, backend }: KernelArgs<{ logits: TensorInfo; targets: TensorInfo }>,
): TensorInfo {
  const { logits, targets } = inputs;
  const V = logits.shape.at(-1)!, R = prod(logits.shape) / V;
  // a target ≥ V gives NaN (the loss shows it; checking here would cost a GPU→CPU read)
  return backend.runWebGPUProgram(
    program(
      "ce_fwd",
      ["L", "Tg"],
      targets.shape,
      R,
      WG,
      "rows : i32, cols : i32,",
      `${ROW_REDUCE}${ROW_LSE}
      fn main(index : i32) {
        let row = rowOf(uniforms.rows);
        let V = uniforms.cols;
        let base = row * V;
        let t = Tg[row];
        let mz = rowLse(base, V);
        if (localIndex == 0u) {
          if (t < 0) {
            result[row] = 0.0;
          } else if (t >= V) {
            result[row] = uniforms.NAN;
          } else {
            result[row] = mz.x + log(mz.y) - L[base + t];
          }
        }
      }`,
    ),
    [logits, targets],
    "float32",
    i32s(R, V),
  );
}

function crossEntropyBackward(
  { inputs, backend }: KernelArgs<
    { dy: TensorInfo; logits: TensorInfo; targets: TensorInfo; y: TensorInfo }
  >,
): TensorInfo {
  const { dy, logits, targets } = inputs;
  const V = logits.shape.at(-1)!, R = prod(logits.shape) / V;
  return backend.runWebGPUProgram(
    program(
      "ce_bwd",
      ["L", "Tg", "DY"],
      logits.shape,
      R,
      WG,
      "rows : i32, cols : i32,",
      `${ROW_REDUCE}${ROW_LSE}
      fn main(index : i32) {
        let row = rowOf(uniforms.rows);
        let V = uniforms.cols;
        let base = row * V;
        let t = Tg[row];
        let mz = rowLse(base, V);
        var scale = DY[row];
        if (t < 0) { scale = 0.0; }
        for (var j = i32(localIndex); j < V; j = j + ${WG}) {
          var p = exp(L[base + j] - mz.x) / mz.y;
          if (j == t) { p = p - 1.0; }
          result[base + j] = scale * p;
        }
      }`,
    ),
    [logits, targets, dy],
    "float32",
    i32s(R, V),
  );
}

// ---------------------------------------------------------------------------------------------
// Linear and attention: tfjs's own webgpu kernels (matmul with bias, batched matmul, softmax)
// run inside one kernel here, so the pieces leave no tape nodes and no broadcast adds.

/**
 * A tensor over a kernel input's buffer, for tfjs ops inside a kernel. The backend's reference
 * count goes up first, so disposing the wrapper (the tidy does) leaves the input alive.
 */
function asTensor(info: TensorInfo): tf.Tensor {
  const backend = tf.backend() as unknown as { incRef(dataId: object): void };
  backend.incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info as unknown as tf.TensorInfo, tf.backend());
}

function linearForward(
  { inputs }: KernelArgs<{ x: TensorInfo; w: TensorInfo; b: TensorInfo }>,
): tf.Tensor {
  return tf.tidy(() => {
    const x = asTensor(inputs.x), w = asTensor(inputs.w), b = asTensor(inputs.b);
    const K = x.shape.at(-1)!, N = w.shape[1]!;
    const y = tf.fused.matMul({
      a: tf.reshape(x, [x.size / K, K]) as tf.Tensor2D,
      b: w as tf.Tensor2D,
      bias: b,
    });
    return tf.reshape(y, [...x.shape.slice(0, -1), N]);
  });
}

function linearBackward(
  { inputs, backend, attrs }: KernelArgs<
    { dy: TensorInfo; x: TensorInfo; w: TensorInfo },
    { part: "x" | "w" | "b" }
  >,
): tf.Tensor | TensorInfo {
  if (attrs.part === "b") {
    // one dispatch (tfjs's Sum over axis 0 transposes first: two)
    const N = inputs.w.shape[1]!;
    return columnSums(
      backend,
      "lin_db",
      ["DY"],
      [inputs.dy],
      prod(inputs.dy.shape) / N,
      N,
      "DY[k]",
    );
  }
  if (attrs.part === "w") {
    const K = inputs.x.shape.at(-1)!, N = inputs.w.shape[1]!, M = prod(inputs.x.shape) / K;
    const plan = splitKPlan(M, K, N);
    if (plan) return weightGradSplitK(backend, inputs.x, inputs.dy, M, K, N, plan);
  }
  return tf.tidy(() => {
    const dy = asTensor(inputs.dy), x = asTensor(inputs.x), w = asTensor(inputs.w);
    const K = x.shape.at(-1)!, N = w.shape[1]!, M = x.size / K;
    const dy2 = tf.reshape(dy, [M, N]) as tf.Tensor2D;
    if (attrs.part === "x") {
      return tf.reshape(tf.matMul(dy2, w as tf.Tensor2D, false, true), x.shape);
    }
    return tf.matMul(tf.reshape(x, [M, K]) as tf.Tensor2D, dy2, true);
  });
}

/** Output tile side of the split-K kernel (16 × 16 threads, 2 × 2 outputs each). */
const SK_TILE = 32;
/** Rows of the reduction each split takes at least (and the most splits a matmul uses). */
const SK_ROWS = 256, SK_MAX_SPLITS = 64;

/**
 * The split-K plan for dW = Xᵀ·dY with X [M, K], dY [M, N]: tall-skinny shapes (the reduction M
 * = batch × tokens is long, the output K × N small) leave most of a GPU idle under a tiling of
 * the output alone, so the reduction is cut into `splits` slices whose partial products are
 * summed by a second dispatch. Null where one pass over the output already has work enough.
 */
export function splitKPlan(
  M: number,
  K: number,
  N: number,
): { splits: number; rows: number } | null {
  if (M < 2 * SK_ROWS || M < 4 * Math.max(K, N)) return null;
  const splits = Math.min(SK_MAX_SPLITS, Math.ceil(M / SK_ROWS));
  // rows per split, a multiple of the 16-row chunk the kernel steps by
  const rows = Math.ceil(M / splits / 16) * 16;
  return { splits: Math.ceil(M / rows), rows };
}

/**
 * dW [K, N] = Σₘ X[m, k]·dY[m, n] in two dispatches: each workgroup a 32 × 32 tile of one
 * split's partial product (16-row chunks of X and dY staged in workgroup memory), then a sum
 * over the splits. Used for the weight gradient of `linear` when {@linkcode splitKPlan} says so.
 */
function weightGradSplitK(
  backend: WebGpuBackend,
  x: TensorInfo,
  dy: TensorInfo,
  M: number,
  K: number,
  N: number,
  plan: { splits: number; rows: number },
): TensorInfo {
  const tilesK = Math.ceil(K / SK_TILE), tilesN = Math.ceil(N / SK_TILE);
  const groups = plan.splits * tilesK * tilesN;
  const partial = backend.runWebGPUProgram(
    program(
      "wgrad_splitk",
      ["X", "DY"],
      [plan.splits, K, N],
      groups,
      256,
      "M : i32, K : i32, N : i32, splits : i32, rows : i32,",
      `var<workgroup> xs : array<f32, ${16 * SK_TILE}>;
      var<workgroup> ds : array<f32, ${16 * SK_TILE}>;
      fn main(index : i32) {
        let K = uniforms.K;
        let N = uniforms.N;
        let tilesN = (N + ${SK_TILE - 1}) / ${SK_TILE};
        let tiles = ((K + ${SK_TILE - 1}) / ${SK_TILE}) * tilesN;
        // spare workgroups of a wrapped dispatch redo the last tile (same values written twice)
        let g = min(i32(workgroupId.y * numWorkgroups.x + workgroupId.x), tiles * uniforms.splits - 1);
        let split = g / tiles;
        let k0 = ((g % tiles) / tilesN) * ${SK_TILE};
        let n0 = ((g % tiles) % tilesN) * ${SK_TILE};
        let m0 = split * uniforms.rows;
        let m1 = min(m0 + uniforms.rows, uniforms.M);
        let li = i32(localIndex);
        let ty = li / 16;
        let tx = li % 16;
        var a00 = 0.0; var a01 = 0.0; var a10 = 0.0; var a11 = 0.0;
        for (var m = m0; m < m1; m = m + 16) {
          // 512 values of each operand, two per thread: chunk row r, tile column c
          for (var e = li; e < ${16 * SK_TILE}; e = e + 256) {
            let r = e / ${SK_TILE};
            let c = e % ${SK_TILE};
            let mm = m + r;
            var xv = 0.0;
            var dv = 0.0;
            if (mm < m1) {
              if (k0 + c < K) { xv = X[mm * K + k0 + c]; }
              if (n0 + c < N) { dv = DY[mm * N + n0 + c]; }
            }
            xs[e] = xv;
            ds[e] = dv;
          }
          workgroupBarrier();
          for (var r = 0; r < 16; r = r + 1) {
            let x0 = xs[r * ${SK_TILE} + ty];
            let x1 = xs[r * ${SK_TILE} + ty + 16];
            let d0 = ds[r * ${SK_TILE} + tx];
            let d1 = ds[r * ${SK_TILE} + tx + 16];
            a00 = a00 + x0 * d0; a01 = a01 + x0 * d1;
            a10 = a10 + x1 * d0; a11 = a11 + x1 * d1;
          }
          workgroupBarrier();
        }
        let base = split * K * N;
        let k = k0 + ty;
        let n = n0 + tx;
        if (k < K && n < N) { result[base + k * N + n] = a00; }
        if (k < K && n + 16 < N) { result[base + k * N + n + 16] = a01; }
        if (k + 16 < K && n < N) { result[base + (k + 16) * N + n] = a10; }
        if (k + 16 < K && n + 16 < N) { result[base + (k + 16) * N + n + 16] = a11; }
      }`,
    ),
    [x, dy],
    "float32",
    i32s(M, K, N, plan.splits, plan.rows),
  );
  const KN = K * N;
  const out = backend.runWebGPUProgram(
    program(
      "wgrad_splitk_sum",
      ["P"],
      [K, N],
      Math.ceil(KN / EW),
      EW,
      "n : i32, splits : i32,",
      `fn main(index : i32) {
        if (index >= uniforms.n) { return; }
        var acc = 0.0;
        for (var s = 0; s < uniforms.splits; s = s + 1) { acc = acc + P[s * uniforms.n + index]; }
        result[index] = acc;
      }`,
    ),
    [partial],
    "float32",
    i32s(KN, plan.splits),
  );
  backend.disposeData(partial.dataId);
  return out;
}

interface AttentionAttrs {
  heads: number;
  causal: boolean;
}

const masks = new Map<number, tf.Tensor>();
/** Additive causal mask [T, T] (0 on and below the diagonal, −1e9 above), kept per T. */
function causalMask(T: number): tf.Tensor {
  let m = masks.get(T);
  if (!m || m.isDisposed) {
    const v = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) v[i * T + j] = -1e9;
    m = tf.keep(tf.tensor2d(v, [T, T]));
    masks.set(T, m);
  }
  return m;
}

/** Heads split [B, T, C] → [B, H, T, d] and merged back. */
function heads(B: number, T: number, H: number, d: number) {
  return {
    split: (x: tf.Tensor) => tf.transpose(tf.reshape(x, [B, T, H, d]), [0, 2, 1, 3]),
    merge: (x: tf.Tensor) => tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, H * d]),
  };
}

function attentionProbabilities(
  qh: tf.Tensor,
  kh: tf.Tensor,
  T: number,
  scale: number,
  causal: boolean,
) {
  let s = tf.mul(tf.matMul(qh, kh, false, true), scale);
  if (causal) s = tf.add(s, causalMask(T));
  return tf.softmax(s);
}

function composedAttentionForward(
  { inputs, attrs }: KernelArgs<{ q: TensorInfo; k: TensorInfo; v: TensorInfo }, AttentionAttrs>,
): tf.Tensor {
  const [B, T, C] = inputs.q.shape as [number, number, number];
  const H = attrs.heads, d = C / H;
  if (attrs.causal) causalMask(T); // made outside the tidy (kept across steps)
  return tf.tidy(() => {
    const { split, merge } = heads(B, T, H, d);
    const p = attentionProbabilities(
      split(asTensor(inputs.q)),
      split(asTensor(inputs.k)),
      T,
      1 / Math.sqrt(d),
      attrs.causal,
    );
    return merge(tf.matMul(p, split(asTensor(inputs.v))));
  });
}

function composedAttentionBackward(
  { inputs, attrs }: KernelArgs<
    { dy: TensorInfo; q: TensorInfo; k: TensorInfo; v: TensorInfo; y: TensorInfo },
    AttentionAttrs
  >,
): tf.Tensor[] {
  const [B, T, C] = inputs.q.shape as [number, number, number];
  const H = attrs.heads, d = C / H, scale = 1 / Math.sqrt(d);
  if (attrs.causal) causalMask(T);
  return tf.tidy(() => {
    const { split, merge } = heads(B, T, H, d);
    const qh = split(asTensor(inputs.q)), kh = split(asTensor(inputs.k));
    const vh = split(asTensor(inputs.v)), dyh = split(asTensor(inputs.dy));
    const p = attentionProbabilities(qh, kh, T, scale, attrs.causal);
    const dv = tf.matMul(p, dyh, true, false); // Pᵀ·dY
    const dp = tf.matMul(dyh, vh, false, true); // dY·Vᵀ
    // softmax backward: dS = P ⊙ (dP − Σⱼ dPᵢⱼPᵢⱼ), and Σⱼ dPᵢⱼPᵢⱼ = dYᵢ·Yᵢ
    const rowDot = tf.sum(tf.mul(dyh, split(asTensor(inputs.y))), -1, true);
    const ds = tf.mul(p, tf.sub(dp, rowDot));
    const dq = tf.mul(tf.matMul(ds, kh), scale);
    const dk = tf.mul(tf.matMul(ds, qh, true, false), scale);
    return [merge(dq), merge(dk), merge(dv)];
  });
}

/**
 * Longest sequence the WGSL attention takes (a row's scores live in workgroup memory); longer
 * ones run the batched-matmul form above.
 */
const MAX_T = 1024;

/** Row r of [B, H, T] → the offset of (b, i, head h) in a [B, T, C] tensor, and i. */
const ATT_COMMON = `
  var<workgroup> sc : array<f32, ${MAX_T}>;
  fn rowOffset(r : i32) -> vec2<i32> {
    let T = uniforms.T;
    let H = uniforms.H;
    let b = r / (H * T);
    let h = (r / T) % H;
    let i = r % T;
    return vec2<i32>((b * T + i) * uniforms.C + h * uniforms.D, i);
  }
  fn dotRows(a : i32, bOff : i32) -> f32 {
    var s = 0.0;
    for (var d = 0; d < uniforms.D; d = d + 1) { s = s + QA(a + d) * KB(bOff + d); }
    return s;
  }
`;

const ATT_UNIFORMS = "rows : i32, T : i32, H : i32, C : i32, D : i32, causal : i32, scale : f32,";

function attUniforms(q: TensorInfo, attrs: AttentionAttrs) {
  const [B, T, C] = q.shape as [number, number, number];
  const D = C / attrs.heads;
  return [
    ...i32s(B * attrs.heads * T, T, attrs.heads, C, D, attrs.causal ? 1 : 0),
    { type: "float32" as const, data: [1 / Math.sqrt(D)] },
  ];
}

/** Forward, one dispatch: a workgroup per (b, h, i) row: scores, softmax, P·V, written merged. */
function attentionForward(
  args: KernelArgs<{ q: TensorInfo; k: TensorInfo; v: TensorInfo }, AttentionAttrs>,
): TensorInfo | tf.Tensor {
  const { inputs: { q, k, v }, backend, attrs } = args;
  const [B, T] = q.shape as [number, number, number];
  const rows = B * attrs.heads * T;
  if (T > MAX_T) return composedAttentionForward(args);
  return backend.runWebGPUProgram(
    program(
      "att_fwd",
      ["Q", "K", "V"],
      q.shape,
      rows,
      WG,
      ATT_UNIFORMS,
      `${ROW_REDUCE}
      fn QA(i : i32) -> f32 { return Q[i]; }
      fn KB(i : i32) -> f32 { return K[i]; }
      ${ATT_COMMON}
      fn main(index : i32) {
        let T = uniforms.T;
        let ro = rowOffset(rowOf(uniforms.rows));
        let off = ro.x;
        let i = ro.y;
        let kv0 = off - i * uniforms.C; // row 0 of this (b, h)
        var n = T;
        if (uniforms.causal == 1) { n = i + 1; }
        var m = -3.4e38;
        for (var j = i32(localIndex); j < n; j = j + ${WG}) {
          let s = dotRows(off, kv0 + j * uniforms.C) * uniforms.scale;
          sc[j] = s;
          m = max(m, s);
        }
        let mx = rowMax(m);
        var z = 0.0;
        for (var j = i32(localIndex); j < n; j = j + ${WG}) {
          let p = exp(sc[j] - mx);
          sc[j] = p;
          z = z + p;
        }
        let zs = rowSum(z);
        for (var d = i32(localIndex); d < uniforms.D; d = d + ${WG}) {
          var acc = 0.0;
          for (var j = 0; j < n; j = j + 1) { acc = acc + sc[j] * V[kv0 + j * uniforms.C + d]; }
          result[off + d] = acc / zs;
        }
      }`,
    ),
    [q, k, v],
    "float32",
    attUniforms(q, attrs),
  );
}

/**
 * Backward, four dispatches, P recomputed from Q, K and the row log-sum-exp (flash-attention
 * style): row statistics (logsumexp, Dᵢ = dYᵢ·Yᵢ), then dQ by rows i, dK and dV by rows j.
 * dSᵢⱼ = Pᵢⱼ(dPᵢⱼ − Dᵢ), dPᵢⱼ = dYᵢ·Vⱼ.
 */
function attentionBackward(
  args: KernelArgs<
    { dy: TensorInfo; q: TensorInfo; k: TensorInfo; v: TensorInfo; y: TensorInfo },
    AttentionAttrs
  >,
): TensorInfo[] | tf.Tensor[] {
  const { inputs: { dy, q, k, v, y }, backend, attrs } = args;
  const [B, T] = q.shape as [number, number, number];
  const rows = B * attrs.heads * T;
  if (T > MAX_T) return composedAttentionBackward(args);
  const u = attUniforms(q, attrs);
  const stats = backend.runWebGPUProgram(
    program(
      "att_stats",
      ["Q", "K", "DY", "Y"],
      [rows, 2],
      rows,
      WG,
      ATT_UNIFORMS,
      `${ROW_REDUCE}
      fn QA(i : i32) -> f32 { return Q[i]; }
      fn KB(i : i32) -> f32 { return K[i]; }
      ${ATT_COMMON}
      fn main(index : i32) {
        let r = rowOf(uniforms.rows);
        let ro = rowOffset(r);
        let off = ro.x;
        let i = ro.y;
        let kv0 = off - i * uniforms.C;
        var n = uniforms.T;
        if (uniforms.causal == 1) { n = i + 1; }
        var m = -3.4e38;
        for (var j = i32(localIndex); j < n; j = j + ${WG}) {
          let s = dotRows(off, kv0 + j * uniforms.C) * uniforms.scale;
          sc[j] = s;
          m = max(m, s);
        }
        let mx = rowMax(m);
        var z = 0.0;
        for (var j = i32(localIndex); j < n; j = j + ${WG}) { z = z + exp(sc[j] - mx); }
        let zs = rowSum(z);
        var dd = 0.0;
        for (var d = i32(localIndex); d < uniforms.D; d = d + ${WG}) {
          dd = dd + DY[off + d] * Y[off + d];
        }
        let dsum = rowSum(dd);
        if (localIndex == 0u) {
          result[2 * r] = mx + log(zs);
          result[2 * r + 1] = dsum;
        }
      }`,
    ),
    [q, k, dy, y],
    "float32",
    u,
  );
  // dQᵢ = scale·Σⱼ dSᵢⱼ Kⱼ
  const dq = backend.runWebGPUProgram(
    program(
      "att_dq",
      ["Q", "K", "V", "DY", "S"],
      q.shape,
      rows,
      WG,
      ATT_UNIFORMS,
      `${ROW_OF}
      fn QA(i : i32) -> f32 { return Q[i]; }
      fn KB(i : i32) -> f32 { return K[i]; }
      ${ATT_COMMON}
      fn main(index : i32) {
        let r = rowOf(uniforms.rows);
        let ro = rowOffset(r);
        let off = ro.x;
        let i = ro.y;
        let kv0 = off - i * uniforms.C;
        var n = uniforms.T;
        if (uniforms.causal == 1) { n = i + 1; }
        let lse = S[2 * r];
        let di = S[2 * r + 1];
        for (var j = i32(localIndex); j < n; j = j + ${WG}) {
          let jo = kv0 + j * uniforms.C;
          let p = exp(dotRows(off, jo) * uniforms.scale - lse);
          var dp = 0.0;
          for (var d = 0; d < uniforms.D; d = d + 1) { dp = dp + DY[off + d] * V[jo + d]; }
          sc[j] = p * (dp - di);
        }
        workgroupBarrier();
        for (var d = i32(localIndex); d < uniforms.D; d = d + ${WG}) {
          var acc = 0.0;
          for (var j = 0; j < n; j = j + 1) { acc = acc + sc[j] * K[kv0 + j * uniforms.C + d]; }
          result[off + d] = acc * uniforms.scale;
        }
      }`,
    ),
    [q, k, v, dy, stats],
    "float32",
    u,
  );
  // by key rows j: i runs over the rows that see j (causal: i ≥ j); wantDk picks dK or dV
  const byKey = (wantDk: boolean) =>
    backend.runWebGPUProgram(
      program(
        wantDk ? "att_dk" : "att_dv",
        ["Q", "K", "V", "DY", "S"],
        q.shape,
        rows,
        WG,
        ATT_UNIFORMS,
        `${ROW_OF}
        fn QA(i : i32) -> f32 { return Q[i]; }
        fn KB(i : i32) -> f32 { return K[i]; }
        ${ATT_COMMON}
        fn main(index : i32) {
          let r = rowOf(uniforms.rows);
          let ro = rowOffset(r);
          let jo = ro.x;
          let j = ro.y;
          let q0 = jo - j * uniforms.C;
          let r0 = r - j; // stats row of i = 0 in this (b, h)
          var first = 0;
          if (uniforms.causal == 1) { first = j; }
          for (var i = first + i32(localIndex); i < uniforms.T; i = i + ${WG}) {
            let io = q0 + i * uniforms.C;
            let p = exp(dotRows(io, jo) * uniforms.scale - S[2 * (r0 + i)]);
            ${
          wantDk
            ? `var dp = 0.0;
            for (var d = 0; d < uniforms.D; d = d + 1) { dp = dp + DY[io + d] * V[jo + d]; }
            sc[i] = p * (dp - S[2 * (r0 + i) + 1]);`
            : `sc[i] = p + 0.0 * V[jo];`
        }
          }
          workgroupBarrier();
          for (var d = i32(localIndex); d < uniforms.D; d = d + ${WG}) {
            var acc = 0.0;
            for (var i = first; i < uniforms.T; i = i + 1) {
              acc = acc + sc[i] * ${wantDk ? "Q" : "DY"}[q0 + i * uniforms.C + d];
            }
            result[jo + d] = acc${wantDk ? " * uniforms.scale" : ""};
          }
        }`,
      ),
      [q, k, v, dy, stats],
      "float32",
      u,
    );
  const dk = byKey(true);
  const dv = byKey(false);
  backend.disposeData(stats.dataId);
  return [dq, dk, dv];
}

// ---------------------------------------------------------------------------------------------

let registered = false;

/**
 * Register the fused kernels (and their gradients, the same as `fused.ts`'s) on `webgpu`, and
 * let the public ops of `fused.ts` use them there. Idempotent.
 */
export function registerWebgpuFusedKernels(): void {
  if (registered) return;
  const reg = (kernelName: string, kernelFunc: unknown) =>
    tf.registerKernel({
      kernelName,
      backendName: "webgpu",
      kernelFunc: kernelFunc as tf.KernelFunc,
    });
  reg("DvsftLinear", linearForward);
  reg("DvsftLinearGrad", linearBackward);
  reg("DvsftLayerNorm", layerNormForward);
  reg("DvsftLayerNormGrad", layerNormBackward);
  reg("DvsftGelu", geluForward);
  reg("DvsftGeluGrad", geluBackward);
  reg("DvsftAttention", attentionForward);
  reg("DvsftAttentionGrad", attentionBackward);
  reg("DvsftCrossEntropy", crossEntropyForward);
  reg("DvsftCrossEntropyGrad", crossEntropyBackward);
  registerFusedGradients();
  markFusedBackend("webgpu");
  registered = true;
}

/** Work the webgpu backend has done since `reset()` (for tests and `bench:gpu`). */
export interface WebgpuCounters {
  /** Compute dispatches (one per tfjs program run). */
  dispatches: number;
  /** GPU→CPU reads that wait on the GPU: async (`data()`) and synchronous (`dataSync()`). */
  reads: number;
  syncReads: number;
  /** Dispatches by program (tfjs's program class, or `dvsft_<kernel>`). */
  byProgram: Map<string, number>;
  reset(): void;
}

interface InstrumentedBackend {
  recordAndSubmit(...args: unknown[]): unknown;
  getBufferData(...args: unknown[]): Promise<unknown>;
  readSync(dataId: object): unknown;
  tensorMap: { get(dataId: object): { values?: unknown } | undefined };
  dvsftCounters?: WebgpuCounters;
}

/**
 * Count dispatches and GPU→CPU reads on the current backend (must be webgpu), by wrapping its
 * `recordAndSubmit` (where every program is dispatched), `getBufferData` (every async read
 * copies through it) and `readSync` (counted when the values are not already on the CPU).
 * Installed once per backend instance.
 */
export function webgpuCounters(): WebgpuCounters {
  if (tf.getBackend() !== "webgpu") {
    throw new Error(`webgpuCounters: the backend is ${tf.getBackend()}, not webgpu`);
  }
  const be = tf.backend() as unknown as InstrumentedBackend;
  if (be.dvsftCounters) return be.dvsftCounters;
  const c: WebgpuCounters = {
    dispatches: 0,
    reads: 0,
    syncReads: 0,
    byProgram: new Map(),
    reset() {
      c.dispatches = c.reads = c.syncReads = 0;
      c.byProgram.clear();
    },
  };
  const record = be.recordAndSubmit.bind(be);
  be.recordAndSubmit = (...args) => {
    c.dispatches++;
    const p = args[0] as { constructor: { name: string }; shaderKey: string };
    const name = p.constructor.name !== "Object"
      ? p.constructor.name
      : p.shaderKey.split("_").slice(0, 3).join("_");
    c.byProgram.set(name, (c.byProgram.get(name) ?? 0) + 1);
    return record(...args);
  };
  const getData = be.getBufferData.bind(be);
  be.getBufferData = (...args) => {
    c.reads++;
    return getData(...args);
  };
  const readSync = be.readSync.bind(be);
  be.readSync = (dataId) => {
    if (be.tensorMap.get(dataId)?.values == null) c.syncReads++;
    return readSync(dataId);
  };
  be.dvsftCounters = c;
  return c;
}

// ---------------------------------------------------------------------------------------------
// AdamW in place: per parameter one sum-of-squares dispatch into a norms buffer, then one
// update dispatch (w, m, v read and written in place; the clip scale from the norms buffer).
// tfjs programs have one output, so these are our own pipelines, recorded into the backend's
// compute pass (the same command encoder, so ordering with its programs holds).

interface GpuTensorData {
  resource?: unknown;
  values?: unknown;
  refCount: number;
}

interface GpuBackendInternals extends WebGpuBackend {
  device: GPUDevice;
  tensorMap: { get(dataId: object): GpuTensorData | undefined };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  commandEncoder: GPUCommandEncoder;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  makeTensorInfo(shape: number[], dtype: tf.DataType): TensorInfo;
  makeUniforms(u: Array<{ type: "int32" | "float32"; data: number[] }>): GPUBufferBinding;
  submitQueue(): void;
  endComputePassEncoder(): void;
  dvsftCounters?: WebgpuCounters;
}

const ADAM_WG = 256;
const pipelines = new WeakMap<
  GPUDevice,
  { sumsq: Map<number, GPUComputePipeline>; adamw: GPUComputePipeline }
>();

/**
 * Σ g² of `k` gradients in one dispatch: workgroup `w` sums gradient `w` into
 * norms[slot + w] (bindings cannot be indexed, so a switch picks the buffer).
 */
function sumSquaresShader(k: number): string {
  const gs = Array.from({ length: k }, (_, i) => i);
  return `
    struct U { slot : u32, ${gs.map((i) => `n${i} : u32`).join(", ")} };
    ${gs.map((i) => `@group(0) @binding(${i}) var<storage, read> g${i} : array<f32>;`).join("\n")}
    @group(0) @binding(${k}) var<storage, read_write> norms : array<f32>;
    @group(0) @binding(${k + 1}) var<uniform> u : U;
    var<workgroup> red : array<f32, ${ADAM_WG}>;
    @compute @workgroup_size(${ADAM_WG})
    fn main(@builtin(local_invocation_index) li : u32, @builtin(workgroup_id) wid : vec3<u32>) {
      var s = 0.0;
      switch wid.x {
        ${
    gs.map((i) =>
      `case ${i}u: { for (var j = li; j < u.n${i}; j = j + ${ADAM_WG}u) { s = s + g${i}[j] * g${i}[j]; } }`
    ).join("\n")
  }
        default: {}
      }
      red[li] = s;
      workgroupBarrier();
      for (var h = ${ADAM_WG / 2}u; h > 0u; h = h >> 1u) {
        if (li < h) { red[li] = red[li] + red[li + h]; }
        workgroupBarrier();
      }
      if (li == 0u) { norms[u.slot + wid.x] = red[0]; }
    }`;
}

function adamPipelines(device: GPUDevice) {
  let p = pipelines.get(device);
  if (p) return p;
  const make = (code: string) =>
    device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
  p = {
    sumsq: new Map(),
    adamw: make(`
      struct U {
        n : u32, count : u32, lr : f32, beta1 : f32, beta2 : f32, eps : f32,
        bc1 : f32, bc2 : f32, clip : f32, decay : f32,
      };
      @group(0) @binding(0) var<storage, read_write> w : array<f32>;
      @group(0) @binding(1) var<storage, read_write> m : array<f32>;
      @group(0) @binding(2) var<storage, read_write> v : array<f32>;
      @group(0) @binding(3) var<storage, read> g : array<f32>;
      @group(0) @binding(4) var<storage, read> norms : array<f32>;
      @group(0) @binding(5) var<uniform> u : U;
      @compute @workgroup_size(${ADAM_WG})
      fn main(@builtin(global_invocation_id) gid : vec3<u32>,
              @builtin(num_workgroups) nw : vec3<u32>) {
        let i = gid.y * nw.x * ${ADAM_WG}u + gid.x;
        if (i >= u.n) { return; }
        var total = 0.0;
        for (var k = 0u; k < u.count; k = k + 1u) { total = total + norms[k]; }
        var scale = 1.0;
        if (u.clip > 0.0) { scale = min(1.0, u.clip / (sqrt(total) + 1e-6)); }
        let gi = g[i] * scale;
        let mi = m[i] * u.beta1 + gi * (1.0 - u.beta1);
        let vi = v[i] * u.beta2 + gi * gi * (1.0 - u.beta2);
        m[i] = mi;
        v[i] = vi;
        let update = (mi / u.bc1) / (sqrt(vi / u.bc2) + u.eps) + w[i] * u.decay;
        w[i] = w[i] - update * u.lr;
      }`),
  };
  pipelines.set(device, p);
  return p;
}

function sumSquaresPipeline(device: GPUDevice, k: number): GPUComputePipeline {
  const cache = adamPipelines(device).sumsq;
  let p = cache.get(k);
  if (!p) {
    p = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: sumSquaresShader(k) }),
        entryPoint: "main",
      },
    });
    cache.set(k, p);
  }
  return p;
}

/**
 * True when the current backend is webgpu with the fused kernels on: where `AdamW.apply` can
 * hand its update to `webgpuAdamW` (`if (webgpuFusedActive()) return webgpuAdamW(this, grads,
 * lr);` before its `this.t++`).
 */
export function webgpuFusedActive(): boolean {
  return registered && tf.getBackend() === "webgpu" && fusedOpsActive();
}

/** The optimizer state `webgpuAdamW` updates: `AdamW` of lib/train/optimizer.ts has it. */
export interface AdamWState {
  t: number;
  readonly config: {
    beta1: number;
    beta2: number;
    eps: number;
    weightDecay: number;
    clip: number;
  };
  readonly weights: Map<string, tf.Variable>;
  readonly m: Map<string, tf.Variable>;
  readonly v: Map<string, tf.Variable>;
}

/**
 * One AdamW step on webgpu, in place: Σ g² of up to 7 gradients a dispatch (the storage
 * buffers a shader may bind), one update dispatch a parameter, one for the norm. The same
 * update as `AdamW.apply`'s tensor path (global-norm clip, bias correction, decoupled weight
 * decay on matrices). Increments `opt.t`. Returns the gradient norm before clipping (a scalar
 * the caller disposes).
 */
export function webgpuAdamW(
  opt: AdamWState,
  grads: Record<string, tf.Tensor>,
  lr: number,
): tf.Scalar {
  if (tf.getBackend() !== "webgpu") {
    throw new Error(`webgpuAdamW: the backend is ${tf.getBackend()}, not webgpu`);
  }
  const be = tf.backend() as unknown as GpuBackendInternals;
  const c = opt.config;
  opt.t++;
  const bc1 = 1 - c.beta1 ** opt.t, bc2 = 1 - c.beta2 ** opt.t;
  const names = [...opt.weights.keys()].filter((n) => grads[opt.weights.get(n)!.name]);
  if (names.length === 0) return tf.scalar(0);
  // in place only on buffers nothing else shares (a clone shares its source's buffer)
  const own = (x: tf.Variable) => {
    if (be.tensorMap.get(x.dataId)!.refCount > 1) {
      const copy = tf.mul(x, tf.scalar(1));
      x.assign(copy);
      copy.dispose();
    }
  };
  const norms = be.makeTensorInfo([names.length], "float32");
  be.uploadToGPU(norms.dataId);
  const buffer = (info: { dataId: object }): GPUBuffer => {
    be.uploadToGPU(info.dataId);
    const data = be.tensorMap.get(info.dataId)!;
    if (!(data.resource instanceof GPUBuffer)) throw new Error("webgpuAdamW: not a GPU buffer");
    be.commandQueueOwnedIds.add(info.dataId);
    return data.resource;
  };
  const { adamw } = adamPipelines(be.device);
  // gradients per Σ g² dispatch: the storage buffers a shader may bind, less the norms buffer
  const perSum = Math.max(1, Math.min(15, be.device.limits.maxStorageBuffersPerShaderStage - 1));
  const dispatch = (
    pipeline: GPUComputePipeline,
    buffers: GPUBuffer[],
    uniforms: Array<{ type: "int32" | "float32"; data: number[] }>,
    groups: number,
  ) => {
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({
      binding: i,
      resource: { buffer: b },
    }));
    entries.push({ binding: buffers.length, resource: be.makeUniforms(uniforms) });
    const bindGroup = be.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries,
    });
    be.ensureCommandEncoderReady();
    if (!be.computePassEncoder) be.computePassEncoder = be.commandEncoder.beginComputePass({});
    be.computePassEncoder.setPipeline(pipeline);
    be.computePassEncoder.setBindGroup(0, bindGroup);
    // more than 65535 workgroups go to a second dimension
    const x = Math.min(groups, MAX_ROWS), y = Math.ceil(groups / MAX_ROWS);
    be.computePassEncoder.dispatchWorkgroups(x, y, 1);
    be.dispatchCountInPass++;
    if (be.dvsftCounters) {
      be.dvsftCounters.dispatches++;
      const by = be.dvsftCounters.byProgram, key = "dvsft_adamw";
      by.set(key, (by.get(key) ?? 0) + 1);
    }
  };
  const u32 = (d: number) => ({ type: "int32" as const, data: [d] });
  const f32 = (d: number) => ({ type: "float32" as const, data: [d] });
  const normsBuffer = buffer(norms);
  for (let slot = 0; slot < names.length; slot += perSum) {
    const gs = names.slice(slot, slot + perSum).map((n) => grads[opt.weights.get(n)!.name]!);
    dispatch(
      sumSquaresPipeline(be.device, gs.length),
      [...gs.map(buffer), normsBuffer],
      [u32(slot), ...gs.map((g) => u32(g.size))],
      gs.length,
    );
  }
  for (const name of names) {
    const w = opt.weights.get(name)!, m = opt.m.get(name)!, v = opt.v.get(name)!;
    const g = grads[w.name]!;
    for (const x of [w, m, v]) own(x);
    const decay = w.rank >= 2 ? c.weightDecay : 0;
    dispatch(
      adamw,
      [buffer(w), buffer(m), buffer(v), buffer(g), normsBuffer],
      [
        u32(w.size),
        u32(names.length),
        f32(lr),
        f32(c.beta1),
        f32(c.beta2),
        f32(c.eps),
        f32(bc1),
        f32(bc2),
        f32(c.clip),
        f32(decay),
      ],
      Math.ceil(w.size / ADAM_WG),
    );
    // the GPU copy changed: drop any values cached on the CPU
    for (const x of [w, m, v]) be.tensorMap.get(x.dataId)!.values = undefined;
  }
  if (
    (tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE") as number) <= be.dispatchCountInPass
  ) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
  const normInfo = be.runWebGPUProgram(
    program(
      "sqrt_sum",
      ["N"],
      [],
      1,
      1,
      "count : i32,",
      `fn main(index : i32) {
        var s = 0.0;
        for (var k = 0; k < uniforms.count; k = k + 1) { s = s + N[k]; }
        result[0] = sqrt(s);
      }`,
    ),
    [norms],
    "float32",
    i32s(names.length),
  );
  be.disposeData(norms.dataId);
  return tf.engine().makeTensorFromTensorInfo(
    normInfo as unknown as tf.TensorInfo,
    tf.backend(),
  ) as tf.Scalar;
}
