/**
 * Kernels a training step needs that tfjs-backend-wasm 4.22 does not register.
 * They run in JS over the wasm heap (no copies): `typedArrayFromHeap` gives views.
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

/** `UnsortedSegmentSum`: the gradient of `gather` (embeddings). out[s, :] = Σ x[i, :] for ids[i] = s. */
function unsortedSegmentSum(
  { inputs, backend, attrs }: {
    inputs: { x: TensorInfo; segmentIds: TensorInfo };
    backend: WasmBackend;
    attrs: { numSegments: number };
  },
): TensorInfo {
  const { x, segmentIds } = inputs;
  const { numSegments } = attrs;
  const idsSize = segmentIds.shape.reduce((a, b) => a * b, 1);
  // segment ids index the leading dimensions of x; the rest is the row
  const row = x.shape.slice(segmentIds.shape.length).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const xv = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  const ov = backend.typedArrayFromHeap(out);
  ov.fill(0);
  for (let i = 0; i < idsSize; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * row;
    const dst = s * row;
    for (let j = 0; j < row; j++) ov[dst + j] += xv[src + j];
  }
  return out;
}

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

/**
 * `BatchMatMul` by BLAS sgemm over the wasm heap. Batch dimensions must be equal or one side's
 * must be 1 (all the model uses); anything else goes to the original kernel.
 */
function blasBatchMatMul(blas: Blas, fallback: tf.KernelFunc): tf.KernelFunc {
  return function blasBatchMatMulKernel(args) {
    const { inputs, backend, attrs } = args as unknown as {
      inputs: { a: TensorInfo; b: TensorInfo };
      backend: WasmBackend;
      attrs: { transposeA: boolean; transposeB: boolean };
    };
    const { a, b } = inputs;
    const { transposeA, transposeB } = attrs;
    const ra = a.shape.length, rb = b.shape.length;
    if (a.dtype !== "float32" || b.dtype !== "float32" || ra < 2 || rb < 2) return fallback(args);
    const M = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const K = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const Kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
    const N = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
    const sizeA = prod(batchA), sizeB = prod(batchB);
    let outBatch: number[];
    if (
      sizeA === sizeB && batchA.length === batchB.length && batchA.every((d, i) => d === batchB[i])
    ) outBatch = batchA;
    else if (sizeA === 1) outBatch = batchB;
    else if (sizeB === 1) outBatch = batchA;
    else return fallback(args);
    if (K !== Kb || M * N * K === 0) return fallback(args);
    const out = backend.makeOutput([...outBatch, M, N], "float32");
    // views after makeOutput: allocating can grow (and detach) the wasm memory
    const av: Float32Array = backend.typedArrayFromHeap(a);
    const bv: Float32Array = backend.typedArrayFromHeap(b);
    const ov: Float32Array = backend.typedArrayFromHeap(out);
    const lda = transposeA ? M : K;
    const ldb = transposeB ? K : N;
    const batches = prod(outBatch);
    for (let i = 0; i < batches; i++) {
      const ia = sizeA === 1 ? 0 : i, ib = sizeB === 1 ? 0 : i;
      blas.sgemm(
        transposeA,
        transposeB,
        M,
        N,
        K,
        batches === 1 ? av : av.subarray(ia * M * K, (ia + 1) * M * K),
        lda,
        batches === 1 ? bv : bv.subarray(ib * K * N, (ib + 1) * K * N),
        ldb,
        batches === 1 ? ov : ov.subarray(i * M * N, (i + 1) * M * N),
      );
    }
    return out;
  };
}

/**
 * `Sum` over leading axes (bias gradients: [B·T, C] → [C]) as one pass over the heap; wasm's
 * kernel transposes first and is ~10x slower there. Other reductions go to the original kernel.
 */
function leadingAxesSum(fallback: tf.KernelFunc): tf.KernelFunc {
  return function leadingAxesSumKernel(args) {
    const { inputs, backend, attrs } = args as unknown as {
      inputs: { x: TensorInfo };
      backend: WasmBackend;
      attrs: { axis: number | number[]; keepDims: boolean };
    };
    const { x } = inputs;
    const rank = x.shape.length;
    const axes = (Array.isArray(attrs.axis) ? attrs.axis : [attrs.axis]).map((
      a,
    ) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    if (x.dtype !== "float32" || !leading) return fallback(args);
    const rows = prod(x.shape.slice(0, axes.length));
    const cols = prod(x.shape.slice(axes.length));
    const outShape = attrs.keepDims
      ? x.shape.map((d, i) => (i < axes.length ? 1 : d))
      : x.shape.slice(axes.length);
    const out = backend.makeOutput(outShape, "float32");
    const xv: Float32Array = backend.typedArrayFromHeap(x);
    const ov: Float32Array = backend.typedArrayFromHeap(out);
    const acc = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      for (let c = 0; c < cols; c++) acc[c]! += xv[base + c]!;
    }
    ov.set(acc);
    return out;
  };
}

/**
 * `Identity` without a copy: the output shares the input's buffer (reference-counted, as
 * `Reshape` and the cpu backend's Identity do). tfjs clones a tensor for every gradient it
 * passes through unchanged — ~700 full copies a `small` training step on wasm.
 */
function sharedIdentity(fallback: tf.KernelFunc): tf.KernelFunc {
  return function sharedIdentityKernel(args) {
    const { inputs, backend } = args as unknown as {
      inputs: { x: TensorInfo };
      backend: WasmBackend;
    };
    const { x } = inputs;
    if (x.dtype === "string") return fallback(args);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/**
 * `GatherV2` of whole rows (axis 0, no batch dims: the token embedding lookup) as row copies on
 * the heap; wasm's kernel takes ~10 ms for 1 536 rows of 128 here. Other gathers go to the
 * original kernel.
 */
function rowGather(fallback: tf.KernelFunc): tf.KernelFunc {
  return function rowGatherKernel(args) {
    const { inputs, backend, attrs } = args as unknown as {
      inputs: { x: TensorInfo; indices: TensorInfo };
      backend: WasmBackend;
      attrs: { axis: number; batchDims: number };
    };
    const { x, indices } = inputs;
    if (
      attrs.axis !== 0 || (attrs.batchDims ?? 0) !== 0 || x.dtype !== "float32" ||
      indices.dtype !== "int32"
    ) return fallback(args);
    const rows = x.shape[0]!, row = prod(x.shape.slice(1)), n = prod(indices.shape);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], "float32");
    const xv: Float32Array = backend.typedArrayFromHeap(x);
    const iv: Int32Array = backend.typedArrayFromHeap(indices);
    const ov: Float32Array = backend.typedArrayFromHeap(out);
    for (let i = 0; i < n; i++) {
      const r = iv[i]!;
      if (r < 0 || r >= rows) {
        backend.disposeData(out.dataId);
        throw new RangeError(`GatherV2: index ${r} is outside [0, ${rows})`);
      }
      ov.set(xv.subarray(r * row, (r + 1) * row), i * row);
    }
    return out;
  };
}

let registered = false;

/** Register the missing wasm kernels, and BLAS matmul when a BLAS loads (idempotent). */
export function registerWasmTrainingKernels(): { blas: string | null } {
  const blas = loadBlas();
  if (registered) return { blas: blas?.library ?? null };
  registered = true;
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: "wasm",
    kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
  });
  const identity = tf.getKernel("Identity", "wasm");
  if (identity) {
    tf.unregisterKernel("Identity", "wasm");
    tf.registerKernel({ ...identity, kernelFunc: sharedIdentity(identity.kernelFunc) });
  }
  const sum = tf.getKernel("Sum", "wasm");
  if (sum) {
    tf.unregisterKernel("Sum", "wasm");
    tf.registerKernel({ ...sum, kernelFunc: leadingAxesSum(sum.kernelFunc) });
  }
  const gather = tf.getKernel("GatherV2", "wasm");
  if (gather) {
    tf.unregisterKernel("GatherV2", "wasm");
    tf.registerKernel({ ...gather, kernelFunc: rowGather(gather.kernelFunc) });
  }
  const original = tf.getKernel("BatchMatMul", "wasm");
  if (blas && original) {
    tf.unregisterKernel("BatchMatMul", "wasm");
    tf.registerKernel({ ...original, kernelFunc: blasBatchMatMul(blas, original.kernelFunc) });
  }
  return { blas: blas?.library ?? null };
}
