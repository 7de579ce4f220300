/**
 * Kernels a training step needs that tfjs-backend-wasm 4.22 does not register.
 * They run in JS over the wasm heap (no copies): `typedArrayFromHeap` gives views.
 */
import { tf } from "./tf.ts";

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

let registered = false;

/** Register the missing wasm kernels (idempotent). */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: "wasm",
    kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
  });
}
