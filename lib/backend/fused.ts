/**
 * Fused transformer ops: `linear`, `layerNorm`, `gelu`, multi-head `attention` and the
 * per-token cross-entropy, each one kernel forward and one kernel backward on the `wasm`
 * backend (BLAS sgemm through FFI on strided views of the wasm heap, the SIMD kernels of
 * `simd.ts` for the rest), and the composed tfjs ops everywhere else.
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
import {
  GELU_A,
  GELU_C,
  isShared,
  LN_EPS,
  type Simd,
  SIMD_KERNEL_PARAMS,
  simdCompiled,
  simdFor,
  simdModule,
} from "./simd.ts";
import { helpersOf, MIN_SPLIT, startSimdPool } from "./simd_pool.ts";
import {
  attentionBackwardItems,
  attentionForwardItems,
  attentionScratch,
  type AttentionShape,
  type GemmAt,
  procedureCall,
  type ProcedureName,
} from "./attention_cpu.ts";

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

let fusedReady = false;
/** Set by tests and benchmarks to compare the fused and composed paths on one backend. */
let fusedDisabled = Deno.env.get("DVSFT_FUSED") === "off";

/** Turn the fused kernels off (or back on) for this process; returns the previous state. */
export function setFusedEnabled(on: boolean): boolean {
  const was = !fusedDisabled;
  fusedDisabled = !on;
  return was;
}

/** Backends other than wasm whose fused kernels are registered (`webgpu_fused.ts` adds webgpu). */
const fusedBackends = new Set<string>();
/** Route the public ops to the `Dvsft*` kernels on `backend` (their kernels are registered). */
export function markFusedBackend(backend: string): void {
  fusedBackends.add(backend);
}
/** The public ops run the fused kernels: on wasm as below, or on a marked backend. */
export function fusedOpsActive(): boolean {
  return fusedActive() || (!fusedDisabled && fusedBackends.has(tf.getBackend()));
}

/** True when the current backend runs the fused wasm kernels (and the in-place optimizer). */
export function fusedActive(): boolean {
  return fusedReady && !fusedDisabled && tf.getBackend() === "wasm" && heapReachable();
}

let reachable: boolean | undefined;
/** The wasm backend's memory is where the SIMD kernels expect it (checked once, warned once). */
function heapReachable(): boolean {
  if (reachable === undefined) {
    reachable = heapMemory(tf.backend() as WasmBackend) !== null;
    if (!reachable) {
      console.warn("dvsft: tfjs-backend-wasm's memory is not reachable; the composed ops run");
    }
  }
  return reachable;
}

/**
 * Start the SIMD kernels' helper threads over the current wasm backend's heap, where that heap
 * is shared (`shared_heap.ts`); resolves to the helpers running (0: one thread).
 */
export async function startWasmHelpers(): Promise<number> {
  const memory = heapMemory(tf.backend() as WasmBackend);
  if (!memory || !isShared(memory) || !simdCompiled()) return 0;
  try {
    return await startSimdPool(
      memory,
      simdModule(true),
      SIMD_KERNEL_PARAMS,
      loadBlas()?.library ?? null,
    );
  } catch (e) {
    // training still works, its SIMD kernels on this thread only
    console.warn(`dvsft: the SIMD helper threads did not start (${e}); one thread runs them`);
    return 0;
  }
}

/** The current wasm backend's heap size in bytes — its high-water mark, it never shrinks — or null. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== "wasm") return null;
  return heapMemory(tf.backend() as WasmBackend)?.buffer.byteLength ?? null;
}

/** tfjs-backend-wasm's WebAssembly.Memory (emscripten keeps it on the module's exports). */
function heapMemory(backend: WasmBackend): WebAssembly.Memory | null {
  const m = backend?.wasm;
  const memory = m?.asm?.memory ?? m?.wasmExports?.memory ?? m?.wasmMemory;
  return memory instanceof WebAssembly.Memory ? memory : null;
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

function composedCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Tensor {
  const V = logits.shape.at(-1)!;
  const valid = tf.cast(tf.greaterEqual(targets, 0), "float32");
  const safe = tf.cast(tf.mul(targets, tf.cast(valid, "int32")), "int32");
  const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(safe, V)), -1);
  return tf.mul(tf.neg(picked), valid);
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
  if (!fusedOpsActive()) return composedLinear(x, w, b);
  return tf.engine().runKernel("DvsftLinear", { x, w, b }) as tf.Tensor;
}

/** Layer norm over the last axis (ε = 1e-5, biased variance). */
export function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!fusedOpsActive()) return composedLayerNorm(x, g, b);
  return tf.engine().runKernel("DvsftLayerNorm", { x, g, b }) as tf.Tensor;
}

/** GELU, tanh approximation. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (!fusedOpsActive()) return composedGelu(x);
  return tf.engine().runKernel("DvsftGelu", { x }, saveAttr()) as tf.Tensor;
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
  if (!fusedOpsActive()) return composedAttention(q, k, v, heads, causal);
  return tf.engine().runKernel("DvsftAttention", { q, k, v }, {
    heads,
    causal,
    ...saveAttr(),
  } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * Attention on one packed projection qkv [B, T, 3C] (q, k, v side by side, as one linear layer
 * with the three weights concatenated computes them) → [B, T, C]. On wasm the kernel reads q, k,
 * v in place and returns one packed gradient; elsewhere q, k, v are split off for `attention`.
 */
export function attentionQkv(qkv: tf.Tensor, heads: number, causal: boolean): tf.Tensor {
  if (qkv.rank !== 3 || qkv.shape[2]! % 3 !== 0) {
    throw new RangeError(`attentionQkv: want [B, T, 3C], got [${qkv.shape}]`);
  }
  if (!fusedActive()) {
    const [q, k, v] = tf.split(qkv, 3, 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
    return attention(q, k, v, heads, causal);
  }
  if ((qkv.shape[2]! / 3) % heads !== 0) {
    throw new RangeError(
      `attention: width ${qkv.shape[2]! / 3} does not divide into ${heads} heads`,
    );
  }
  return tf.engine().runKernel("DvsftAttentionQkv", { qkv }, {
    heads,
    causal,
    ...saveAttr(),
  } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * Per-position cross-entropy: logits [..., V], targets [...] int32 → −log softmax(logits)[target],
 * 0 where the target is negative (-100: not supervised).
 */
export function tokenCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Tensor {
  if (!fusedOpsActive()) return composedCrossEntropy(logits, targets);
  return tf.engine().runKernel("DvsftCrossEntropy", { logits, targets }, saveAttr()) as tf.Tensor;
}

/** `save`: the forward kernel keeps what its backward needs (only while gradients are recorded). */
function saveAttr(): tf.NamedAttrMap {
  return { save: stashOn && (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn() };
}
let stashOn = true;
/** Tests: with the stash off every backward kernel recomputes what it needs. */
export function setStashEnabled(on: boolean): void {
  stashOn = on;
}

// ---------------------------------------------------------------------------------------------
// wasm kernels

/** Heap byte offsets of tensors (what the SIMD kernels take). */
function ptrs<T extends TensorInfo[]>(
  backend: WasmBackend,
  infos: [...T],
): { [K in keyof T]: number } {
  return infos.map((i) => ptrOf(backend, i)) as { [K in keyof T]: number };
}
function ptrOf(backend: WasmBackend, info: TensorInfo): number {
  return backend.dataIdMap.get(info.dataId).memoryOffset as number;
}

/** The SIMD kernels bound to this backend's memory. */
function simdOf(backend: WasmBackend): Simd {
  return simdFor(heapMemory(backend)!);
}

/** SIMD kernels over the current wasm backend's heap (the in-place optimizer uses them). */
export function wasmSimd(): { simd: Simd; ptr(x: tf.Tensor): number } | null {
  if (!fusedActive()) return null;
  const backend = tf.backend() as WasmBackend;
  return { simd: simdOf(backend), ptr: (x) => ptrOf(backend, x) };
}

function views(backend: WasmBackend, infos: TensorInfo[]): Float32Array[] {
  // take views only after every makeOutput: an allocation can grow (and detach) the heap
  return infos.map((i) => backend.typedArrayFromHeap(i) as Float32Array);
}

/**
 * What a forward kernel keeps for its backward kernel (attention and cross-entropy
 * probabilities, the GELU gate), keyed by the forward output's buffer: tfjs saves that output
 * for the gradient (a clone sharing the buffer), so the backward kernel finds its entry through it.
 * Entries whose output is gone (no backward ran) are swept at the next save; a backward kernel
 * that finds no entry recomputes.
 */
interface Stashed {
  heap: TensorInfo[];
}
const stash = new Map<object, Stashed>();

function keep(backend: WasmBackend, out: TensorInfo, entry: Stashed): void {
  for (const [dataId, old] of stash) {
    if (!backend.dataIdMap.has(dataId)) {
      for (const info of old.heap) backend.disposeData(info.dataId);
      stash.delete(dataId);
    }
  }
  stash.set(out.dataId, entry);
}

function take(out: TensorInfo): Stashed | undefined {
  const entry = stash.get(out.dataId);
  stash.delete(out.dataId);
  return entry;
}

/** Entries held now (tests: a step must leave none behind). */
export function stashedEntries(): number {
  return stash.size;
}

let ones = new Float32Array(0);
function onesOf(n: number): Float32Array {
  if (ones.length < n) ones = new Float32Array(n).fill(1);
  return ones.subarray(0, n);
}

function linearKernel(blas: Blas) {
  return ({ inputs, backend }: KernelArgs<{ x: TensorInfo; w: TensorInfo; b: TensorInfo }>) => {
    const { x, w, b } = inputs;
    const K = x.shape.at(-1)!, N = w.shape[1]!;
    const M = prod(x.shape) / K;
    const out = backend.makeOutput([...x.shape.slice(0, -1), N], "float32");
    const [xv, wv, bv, ov] = views(backend, [x, w, b, out]);
    // C starts as the bias rows (sgemm adds to it): one row, then doubling copies (a `set` per
    // row cost ≈ 10 ms a `small` step in call overhead)
    ov!.set(bv!, 0);
    for (let filled = N; filled < M * N; filled *= 2) {
      ov!.copyWithin(filled, 0, Math.min(filled, M * N - filled));
    }
    blas.gemm(false, false, M, N, K, 1, xv!, K, wv!, N, 1, ov!, N);
    return out;
  };
}

/**
 * Linear backward, one kernel per input (`part`): tfjs asks only for the gradients on the path
 * to the weights, so the patch embedding's input gradient (the pixels') is never computed.
 */
function linearGradKernel(blas: Blas) {
  return (
    { inputs, backend, attrs }: KernelArgs<
      { dy: TensorInfo; x: TensorInfo; w: TensorInfo },
      { part: "x" | "w" | "b" }
    >,
  ) => {
    const { dy, x, w } = inputs;
    const K = x.shape.at(-1)!, N = w.shape[1]!;
    const M = prod(x.shape) / K;
    if (attrs.part === "x") {
      const dx = backend.makeOutput(x.shape, "float32");
      const [dyv, wv, dxv] = views(backend, [dy, w, dx]);
      blas.gemm(false, true, M, K, N, 1, dyv!, N, wv!, N, 0, dxv!, K); // dx = dy · wᵀ
      return dx;
    }
    if (attrs.part === "w") {
      const dw = backend.makeOutput([K, N], "float32");
      const [dyv, xv, dwv] = views(backend, [dy, x, dw]);
      blas.gemm(true, false, K, N, M, 1, xv!, K, dyv!, N, 0, dwv!, N); // dw = xᵀ · dy
      return dw;
    }
    // db = dyᵀ · 1 (column sums) as an sgemm against a ones vector
    const db = backend.makeOutput([N], "float32");
    const [dyv, dbv] = views(backend, [dy, db]);
    blas.gemm(true, false, N, 1, M, 1, dyv!, N, onesOf(M), 1, 0, dbv!, 1);
    return db;
  };
}

function layerNormKernel(
  { inputs, backend }: KernelArgs<{ x: TensorInfo; g: TensorInfo; b: TensorInfo }>,
) {
  const { x, g, b } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const out = backend.makeOutput(x.shape, "float32");
  simdOf(backend).layerNormForward(...ptrs(backend, [x, g, b, out]), R, C);
  return out;
}

/** Layer-norm backward (row statistics recomputed: two passes over x, cheaper than keeping them). */
function layerNormGradKernel(
  { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; g: TensorInfo }>,
) {
  const { dy, x, g } = inputs;
  const C = x.shape.at(-1)!, R = prod(x.shape) / C;
  const dx = backend.makeOutput(x.shape, "float32");
  const dg = backend.makeOutput([C], "float32");
  const db = backend.makeOutput([C], "float32");
  const simd = simdOf(backend), h = helpersOf(simd);
  const parts = h && R * C >= MIN_SPLIT ? Math.min(h.parts, R) : 1;
  if (parts < 2) {
    simd.layerNormBackward(...ptrs(backend, [dy, x, g, dx, dg, db]), R, C);
    return [dx, dg, db];
  }
  // rows split across the SIMD threads, each summing dγ, dβ over its rows; part k ≥ 1 writes
  // [dγ_k, dβ_k] into `partial`, added after (another summation order: last-bit differences)
  const partial = backend.makeOutput([(parts - 1) * 2 * C], "float32");
  const [dyP, xP, gP, dxP, dgP, dbP, partP] = ptrs(backend, [dy, x, g, dx, dg, db, partial]);
  const at = (k: number) => Math.floor((R * k) / parts);
  const args = (k: number, pg: number, pb: number) => {
    const r0 = at(k), o = 4 * r0 * C;
    return [dyP + o, xP + o, gP, dxP + o, pg, pb, at(k + 1) - r0, C] as const;
  };
  h!.run(
    () => h!.local.layerNormBackward(...args(0, dgP, dbP)),
    Array.from({ length: parts - 1 }, (_, i) => {
      const base = partP + 8 * i * C;
      return ["layerNormBackward", args(i + 1, base, base + 4 * C)] as const;
    }),
  );
  const [dgv, dbv, pv] = views(backend, [dg, db, partial]);
  for (let k = 1; k < parts; k++) {
    for (let c = 0; c < C; c++) {
      dgv![c] = dgv![c]! + pv![2 * (k - 1) * C + c]!;
      dbv![c] = dbv![c]! + pv![(2 * k - 1) * C + c]!;
    }
  }
  backend.disposeData(partial.dataId);
  return [dx, dg, db];
}

/** GELU forward: y = x·σ(2u) (GPT-2's tanh form); the gate σ(2u) is kept when recording. */
function geluKernel({ inputs, backend, attrs }: KernelArgs<{ x: TensorInfo }, { save: boolean }>) {
  const { x } = inputs;
  const n = prod(x.shape), simd = simdOf(backend);
  const y = backend.makeOutput(x.shape, "float32");
  if (!attrs.save) {
    simd.geluForward(...ptrs(backend, [x, y]), n);
    return y;
  }
  const gate = backend.makeOutput(x.shape, "float32");
  simd.geluForwardKeep(...ptrs(backend, [x, y, gate]), n);
  keep(backend, y, { heap: [gate] });
  return y;
}

/** GELU backward (the gate from the forward, or recomputed: one exp an element). */
function geluGradKernel(
  { inputs, backend }: KernelArgs<{ dy: TensorInfo; x: TensorInfo; y: TensorInfo }>,
) {
  const { dy, x, y } = inputs;
  const n = prod(x.shape), simd = simdOf(backend);
  const dx = backend.makeOutput(x.shape, "float32");
  const gate = take(y)?.heap[0];
  if (gate) {
    simd.geluBackwardKept(...ptrs(backend, [dy, x, gate, dx]), n);
    backend.disposeData(gate.dataId);
  } else simd.geluBackward(...ptrs(backend, [dy, x, dx]), n);
  return dx;
}

interface AttentionAttrs {
  heads: number;
  causal: boolean;
  save?: boolean;
}

/** The main thread's sgemm over heap byte offsets (views of the heap as it is now). */
function gemmAt(blas: Blas, backend: WasmBackend): GemmAt {
  const heap = new Float32Array(heapMemory(backend)!.buffer);
  return (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
    blas.gemm(
      ta,
      tb,
      m,
      n,
      k,
      alpha,
      heap.subarray(a >>> 2),
      lda,
      heap.subarray(b >>> 2),
      ldb,
      beta,
      heap.subarray(c >>> 2),
      ldc,
    );
}

/**
 * Run attention work over batch items: split across the SIMD helper threads, each with one-core
 * sgemms (OpenBLAS set to 1 thread meanwhile), where there are helpers with BLAS and ≥ 2 items;
 * else every item here with OpenBLAS's threads. `main(gemm, simd, b0, b1)` does items [b0, b1)
 * on this thread; `helper(b0, b1, part)` is the procedure call that does them on a helper.
 */
function byItems(
  blas: Blas,
  backend: WasmBackend,
  B: number,
  main: (gemm: GemmAt, simd: Simd, b0: number, b1: number) => void,
  helper: (b0: number, b1: number, part: number) => [ProcedureName, number[]],
): void {
  const simd = simdOf(backend), gemm = gemmAt(blas, backend);
  const h = helpersOf(simd), parts = itemParts(blas, backend, B);
  if (parts < 2) return main(gemm, simd, 0, B);
  const edge = (k: number) => Math.floor((B * k) / parts);
  const before = blas.threads!.get();
  blas.threads!.set(1);
  try {
    h!.run(
      () => main(gemm, h!.local, 0, edge(1)),
      Array.from({ length: parts - 1 }, (_, i) => helper(edge(i + 1), edge(i + 2), i + 1)),
    );
  } finally {
    blas.threads!.set(before);
  }
}

/** Threads `byItems` will use for a batch of B (the backward's scratch is per thread). */
function itemParts(blas: Blas, backend: WasmBackend, B: number): number {
  const h = helpersOf(simdOf(backend));
  return h?.procedures && blas.threads ? Math.min(h.parts, B) : 1;
}

/** An attention call's q, k, v: three [B, T, C] tensors, or one packed [B, T, 3C] q|k|v. */
type QkvInputs = { q: TensorInfo; k: TensorInfo; v: TensorInfo } | { qkv: TensorInfo };

/** The heap layout of q, k, v (packed: views 4C bytes apart with rows 3C floats long). */
function qkvLayout(
  backend: WasmBackend,
  inputs: QkvInputs,
  { heads: H, causal }: AttentionAttrs,
): { shape: AttentionShape; q: number; k: number; v: number } {
  if ("qkv" in inputs) {
    const [B, T, C3] = inputs.qkv.shape as [number, number, number];
    const C = C3 / 3, q = ptrOf(backend, inputs.qkv);
    return { shape: { B, T, C, H, causal, ld: C3 }, q, k: q + 4 * C, v: q + 8 * C };
  }
  const [B, T, C] = inputs.q.shape as [number, number, number];
  const [q, k, v] = ptrs(backend, [inputs.q, inputs.k, inputs.v]);
  return { shape: { B, T, C, H, causal, ld: C }, q, k, v };
}

/**
 * P = softmax(QKᵀ/√d + mask) [B, H, T, T] (`attentionForwardItems`), and Y = P·V into `y` when
 * given. P is a new heap tensor the caller disposes.
 */
function probabilities(
  blas: Blas,
  backend: WasmBackend,
  { shape, q, k, v }: ReturnType<typeof qkvLayout>,
  y?: TensorInfo,
): TensorInfo {
  const { B, T, H } = shape;
  const s = backend.makeOutput([B, H, T, T], "float32");
  const at = { q, k, v: y ? v : 0, p: ptrOf(backend, s), y: y ? ptrOf(backend, y) : 0 };
  byItems(
    blas,
    backend,
    B,
    (gemm, simd, b0, b1) => attentionForwardItems(gemm, simd, shape, at, b0, b1),
    (b0, b1) =>
      procedureCall("attentionForward", {
        ...shape,
        causal: shape.causal ? 1 : 0,
        ...at,
        b0,
        b1,
      }),
  );
  return s;
}

/** Attention forward: P per item and head, then Y = P·V written straight into [B, T, C]. */
function attentionKernel(blas: Blas) {
  return ({ inputs, backend, attrs }: KernelArgs<QkvInputs, AttentionAttrs>) => {
    const layout = qkvLayout(backend, inputs, attrs);
    const { B, T, C } = layout.shape;
    const y = backend.makeOutput([B, T, C], "float32");
    const p = probabilities(blas, backend, layout, y);
    if (attrs.save) keep(backend, y, { heap: [p] });
    else backend.disposeData(p.dataId);
    return y;
  };
}

/**
 * Attention backward (`attentionBackwardItems`). P comes from the forward (or is recomputed).
 * Gradients in the inputs' layout: dq, dk, dv, or one packed dqkv.
 */
function attentionGradKernel(blas: Blas) {
  return (
    { inputs, backend, attrs }: KernelArgs<
      QkvInputs & { dy: TensorInfo; y: TensorInfo },
      AttentionAttrs
    >,
  ) => {
    const { dy, y } = inputs;
    const layout = qkvLayout(backend, inputs, attrs), { shape } = layout;
    const { B, T, C, H, ld } = shape;
    const p = take(y)?.heap[0] ?? probabilities(blas, backend, layout);
    const grads = "qkv" in inputs
      ? [backend.makeOutput(inputs.qkv.shape, "float32")]
      : [0, 1, 2].map(() => backend.makeOutput([B, T, C], "float32"));
    const dq = ptrOf(backend, grads[0]!);
    const [dk, dv] = grads.length === 1
      ? [dq + 4 * C, dq + 8 * C]
      : [ptrOf(backend, grads[1]!), ptrOf(backend, grads[2]!)];
    const perThread = attentionScratch(shape), parts = itemParts(blas, backend, B);
    const scratch = backend.makeOutput([parts * perThread], "float32");
    const [dyP, yP, pP, scP] = ptrs(backend, [dy, y, p, scratch]);
    const at = (part: number) => ({
      dy: dyP,
      q: layout.q,
      k: layout.k,
      v: layout.v,
      y: yP,
      p: pP,
      dq,
      dk,
      dv,
      scratch: scP + 4 * part * perThread,
    });
    byItems(
      blas,
      backend,
      B,
      (gemm, simd, b0, b1) => attentionBackwardItems(gemm, simd, shape, at(0), b0, b1),
      (b0, b1, part) => procedureCall("attentionBackward", { B, T, C, H, ld, ...at(part), b0, b1 }),
    );
    backend.disposeData(p.dataId);
    backend.disposeData(scratch.dataId);
    return grads;
  };
}

/** Softmax over the last axis by the SIMD kernel (a new heap tensor the caller disposes). */
function lastAxisSoftmax(backend: WasmBackend, x: TensorInfo): TensorInfo {
  const V = x.shape.at(-1)!, n = prod(x.shape);
  const p = backend.makeOutput(x.shape, "float32");
  const [xPtr, pPtr] = ptrs(backend, [x, p]);
  (backend.wasm.HEAPU8 as Uint8Array).copyWithin(pPtr, xPtr, xPtr + 4 * n);
  simdOf(backend).softmaxRows(pPtr, n / V, V, 0, 0);
  return p;
}

/**
 * Cross-entropy forward: the SIMD softmax over the vocabulary, then −log p[target] per row (a row
 * whose p[target] underflows float32 is recomputed exactly as logsumexp − logit). P is kept for
 * the backward when recording.
 */
function crossEntropyKernel() {
  return (
    { inputs, backend, attrs }: KernelArgs<
      { logits: TensorInfo; targets: TensorInfo },
      { save: boolean }
    >,
  ) => {
    const { logits, targets } = inputs;
    const V = logits.shape.at(-1)!, R = prod(logits.shape) / V;
    const p = lastAxisSoftmax(backend, logits);
    const out = backend.makeOutput(targets.shape, "float32");
    const [lv, pv, ov] = views(backend, [logits, p, out]);
    const tv = backend.typedArrayFromHeap(targets) as Int32Array;
    for (let r = 0; r < R; r++) {
      const t = tv[r]!, base = r * V;
      if (t < 0) {
        ov![r] = 0;
        continue;
      }
      if (t >= V) {
        backend.disposeData(p.dataId);
        backend.disposeData(out.dataId);
        throw new RangeError(`cross-entropy: target ${t} is outside the vocabulary (${V})`);
      }
      const q = pv![base + t]!;
      if (q > 1e-30) {
        ov![r] = -Math.log(q);
        continue;
      }
      let m = -Infinity, z = 0;
      for (let j = 0; j < V; j++) m = Math.max(m, lv![base + j]!);
      for (let j = 0; j < V; j++) z += Math.exp(lv![base + j]! - m);
      ov![r] = m + Math.log(z) - lv![base + t]!;
    }
    if (attrs.save) keep(backend, out, { heap: [p] });
    else backend.disposeData(p.dataId);
    return out;
  };
}

/** Cross-entropy backward: dlogits = dy·(P − onehot(target)); rows without a target get 0. */
function crossEntropyGradKernel() {
  return (
    { inputs, backend }: KernelArgs<
      { dy: TensorInfo; logits: TensorInfo; targets: TensorInfo; y: TensorInfo }
    >,
  ) => {
    const { dy, logits, targets, y } = inputs;
    const V = logits.shape.at(-1)!, R = prod(logits.shape) / V;
    const p = take(y)?.heap[0] ?? lastAxisSoftmax(backend, logits);
    const dx = backend.makeOutput(logits.shape, "float32");
    const scales = backend.makeOutput([R], "float32");
    const [dyv, dxv, sv] = views(backend, [dy, dx, scales]);
    const tv = backend.typedArrayFromHeap(targets) as Int32Array;
    for (let r = 0; r < R; r++) sv![r] = tv[r]! < 0 ? 0 : dyv![r]!;
    simdOf(backend).scaleRows(...ptrs(backend, [p, dx, scales]), R, V);
    for (let r = 0; r < R; r++) {
      const t = tv[r]!;
      if (t >= 0) dxv![r * V + t] = dxv![r * V + t]! - sv![r]!;
    }
    backend.disposeData(p.dataId);
    backend.disposeData(scales.dataId);
    return dx;
  };
}

/** `Add` for same-shape float32 inputs by the SIMD kernel; the original kernel otherwise. */
function simdAdd(original: tf.KernelFunc) {
  return (args: KernelArgs<{ a: TensorInfo; b: TensorInfo }>) => {
    const { a, b } = args.inputs;
    const same = a.dtype === "float32" && b.dtype === "float32" &&
      a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
    if (!same || fusedDisabled) return original(args as unknown as Parameters<tf.KernelFunc>[0]);
    const { backend } = args;
    const y = backend.makeOutput(a.shape, "float32");
    simdOf(backend).add(...ptrs(backend, [a, b, y]), prod(a.shape));
    return y;
  };
}

/** Register the fused kernels and their gradients on `wasm` (needs BLAS; idempotent). */
export function registerFusedKernels(): boolean {
  if (fusedReady) return true;
  const blas = loadBlas();
  if (!blas || !simdCompiled()) return false;
  const reg = (kernelName: string, kernelFunc: unknown) =>
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: kernelFunc as tf.KernelFunc });
  reg("DvsftLinear", linearKernel(blas));
  reg("DvsftLinearGrad", linearGradKernel(blas));
  reg("DvsftLayerNorm", layerNormKernel);
  reg("DvsftLayerNormGrad", layerNormGradKernel);
  reg("DvsftGelu", geluKernel);
  reg("DvsftGeluGrad", geluGradKernel);
  reg("DvsftAttention", attentionKernel(blas));
  reg("DvsftAttentionGrad", attentionGradKernel(blas));
  reg("DvsftAttentionQkv", attentionKernel(blas));
  reg("DvsftAttentionQkvGrad", attentionGradKernel(blas));
  reg("DvsftCrossEntropy", crossEntropyKernel());
  reg("DvsftCrossEntropyGrad", crossEntropyGradKernel());
  // tfjs's Add runs on one core; same-shape float32 adds (residuals, the tape's gradient sums)
  // take the SIMD kernel, split across its threads; anything else stays with tfjs
  const add = tf.getKernel("Add", "wasm");
  if (add) {
    tf.unregisterKernel("Add", "wasm");
    tf.registerKernel({ ...add, kernelFunc: simdAdd(add.kernelFunc) as tf.KernelFunc });
  }

  registerFusedGradients();
  fusedReady = true;
  return true;
}

let gradientsRegistered = false;

/**
 * The gradients of the fused kernels: one per kernel name, whichever backend (wasm, webgpu)
 * runs the kernels they call. Idempotent.
 */
export function registerFusedGradients(): void {
  if (gradientsRegistered) return;
  // A gradient function runs once per node. Layer norm's and attention's backward kernels
  // return every input's gradient in one call (they share a pass), so they run eagerly and each
  // input takes its share; linear's inputs are independent and computed only when asked for.
  const run = (name: string, inputs: tf.NamedTensorMap, attrs?: tf.NamedAttrMap) =>
    tf.engine().runKernel(name, inputs, attrs) as unknown as tf.Tensor | tf.Tensor[];
  tf.registerGradient({
    kernelName: "DvsftLinear",
    inputsToSave: ["x", "w"],
    gradFunc: (dy, saved) => {
      const [x, w] = saved as tf.Tensor[];
      const part = (p: string) => () =>
        run("DvsftLinearGrad", { dy: dy as tf.Tensor, x: x!, w: w! }, { part: p }) as tf.Tensor;
      return { x: part("x"), w: part("w"), b: part("b") };
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
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [x, y] = saved as tf.Tensor[];
      return { x: () => run("DvsftGeluGrad", { dy: dy as tf.Tensor, x: x!, y: y! }) as tf.Tensor };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftAttention",
    inputsToSave: ["q", "k", "v"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, y] = saved as tf.Tensor[];
      const [dq, dk, dv] = run(
        "DvsftAttentionGrad",
        { dy: dy as tf.Tensor, q: q!, k: k!, v: v!, y: y! },
        attrs as tf.NamedAttrMap,
      ) as tf.Tensor[];
      return { q: () => dq!, k: () => dk!, v: () => dv! };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftAttentionQkv",
    inputsToSave: ["qkv"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [qkv, y] = saved as tf.Tensor[];
      const [dqkv] = run(
        "DvsftAttentionQkvGrad",
        { dy: dy as tf.Tensor, qkv: qkv!, y: y! },
        attrs as tf.NamedAttrMap,
      ) as tf.Tensor[];
      return { qkv: () => dqkv! };
    },
  });
  tf.registerGradient({
    kernelName: "DvsftCrossEntropy",
    inputsToSave: ["logits", "targets"],
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [logits, targets, y] = saved as tf.Tensor[];
      return {
        logits: () =>
          run("DvsftCrossEntropyGrad", {
            dy: dy as tf.Tensor,
            logits: logits!,
            targets: targets!,
            y: y!,
          }) as tf.Tensor,
        targets: () => tf.zerosLike(targets!),
      };
    },
  });
  gradientsRegistered = true;
}
