/**
 * Choosing the tfjs backend: `auto | tensorflow | webgpu | wasm | cpu` (docs/ARCHITECTURE.md "Backends").
 */
import { z } from "zod";
import { tf } from "./tf.ts";
import { registerWasmTrainingKernels } from "./wasm_kernels.ts";
import { registerFusedKernels, startWasmHelpers } from "./fused.ts";
import { registerWebgpuFusedKernels } from "./webgpu_fused.ts";
import { compileSimd } from "./simd.ts";
import { simdThreads } from "./simd_pool.ts";
import { sharedHeapWasmPaths } from "./shared_heap.ts";
import { loadBlas, missingBlasWarning } from "./blas.ts";

/**
 * f32 tensor bytes the wasm backend could hold at once, measured on tfjs-backend-wasm 4.22 in
 * Deno 2.9.6 (31 tensors of 128 MiB, the 32nd aborts): the 4 GiB of a 32-bit heap, less its own use.
 */
export const WASM_MAX_TENSOR_BYTES = 31 * 128 * 2 ** 20;

export const BACKENDS = ["auto", "tensorflow", "webgpu", "wasm", "cpu"] as const;
export const BackendNameSchema = z.enum(BACKENDS);
export type BackendName = z.infer<typeof BackendNameSchema>;

/** Raised when a named backend cannot start here; the message says why. */
export class BackendUnavailableError extends Error {
  override name = "BackendUnavailableError";
}

async function initWasm(): Promise<void> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  // the .wasm files ship inside the npm package; tfjs's own threads are off (Deno fails the
  // threads check), so its heap is made shared for the SIMD kernels' helper threads
  const dir = new URL("../wasm-out/", import.meta.resolve("@tensorflow/tfjs-backend-wasm")).href;
  let shared = false;
  if (simdThreads() > 1) {
    try {
      wasm.setWasmPaths(await sharedHeapWasmPaths(dir));
      shared = true;
    } catch (e) {
      console.warn(`dvsft: tfjs's heap stays unshared (${e}); the SIMD kernels run on one thread`);
    }
  }
  if (!shared) wasm.setWasmPaths(dir);
  registerWasmTrainingKernels();
  try {
    await compileSimd(); // the SIMD kernels the fused ops use
  } catch (e) {
    console.warn(`dvsft: SIMD kernels unavailable (${e}); wasm runs the composed tfjs ops`);
  }
  registerFusedKernels(); // fused transformer ops: need BLAS and the SIMD kernels, else composed
  if (!loadBlas() && Deno.env.get("DVSFT_BLAS") !== "off" && !warnedNoBlas) {
    warnedNoBlas = true;
    console.warn(missingBlasWarning());
  }
}
let warnedNoBlas = false;

/** The Vulkan loader wants XDG_RUNTIME_DIR (and prints an error per adapter request without it). */
function ensureXdgRuntimeDir(): void {
  if (Deno.env.get("XDG_RUNTIME_DIR")) return;
  const dir = Deno.makeTempDirSync({ prefix: "dvsft-xdg-" });
  Deno.chmodSync(dir, 0o700);
  Deno.env.set("XDG_RUNTIME_DIR", dir);
}

async function initWebgpu(): Promise<void> {
  ensureXdgRuntimeDir();
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) {
    throw new BackendUnavailableError(
      "webgpu: navigator.gpu is missing (run Deno with --unstable-webgpu)",
    );
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    throw new BackendUnavailableError(
      "webgpu: no adapter (needs Vulkan: a GPU driver, or apt mesa-vulkan-drivers libvulkan1 for software Vulkan)",
    );
  }
  await import("@tensorflow/tfjs-backend-webgpu");
  // the fused WGSL kernels; DVSFT_FUSED=off keeps the composed tfjs ops (for comparison)
  if (Deno.env.get("DVSFT_FUSED") !== "off") registerWebgpuFusedKernels();
}

async function initTensorflow(): Promise<void> {
  // built at run time so `deno check` and the lock file never pull them in: only the GPU
  // image installs them (their install scripts download libtensorflow)
  for (const pkg of ["tfjs-node-gpu", "tfjs-node"]) {
    try {
      await import(["npm:@tensorflow", `${pkg}@4.22.0`].join("/"));
      return;
    } catch { /* not installed here */ }
  }
  throw new BackendUnavailableError(
    "tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed (the GPU image has it)",
  );
}

const INIT: Record<Exclude<BackendName, "auto">, () => Promise<void>> = {
  tensorflow: initTensorflow,
  webgpu: initWebgpu,
  wasm: initWasm,
  cpu: () => Promise.resolve(),
};

/** Backends in the order `auto` tries them. Software Vulkan is slower than wasm, so
 * `auto` takes webgpu only when the adapter is a real GPU. */
const AUTO_ORDER = ["tensorflow", "webgpu", "wasm", "cpu"] as const;

interface AdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}

/** The WebGPU adapter's description ("" when there is none). Fields are prototype getters. */
export async function webgpuAdapterDescription(): Promise<string> {
  ensureXdgRuntimeDir();
  const gpu =
    (globalThis.navigator as { gpu?: { requestAdapter(): Promise<{ info?: AdapterInfo } | null> } })
      .gpu;
  const info = (await gpu?.requestAdapter())?.info;
  if (!info) return "";
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
}

async function isSoftwareAdapter(): Promise<boolean> {
  return /llvmpipe|lavapipe|swiftshader|software/i.test(await webgpuAdapterDescription());
}

/**
 * Start a backend and make it current. Returns the name in use.
 *
 * @example
 * ```ts
 * await useBackend("auto"); // "wasm" on a CPU machine
 * ```
 */
export async function useBackend(name: BackendName): Promise<Exclude<BackendName, "auto">> {
  if (name !== "auto") {
    try {
      await INIT[name]();
      if (!(await tf.setBackend(name))) {
        throw new BackendUnavailableError(`${name}: tfjs could not initialize it`);
      }
    } catch (e) {
      if (e instanceof BackendUnavailableError) throw e;
      throw new BackendUnavailableError(`${name}: ${(e as Error).message}`);
    }
    await tf.ready();
    if (name === "wasm") await startWasmHelpers();
    return name;
  }
  for (const candidate of AUTO_ORDER) {
    try {
      if (candidate === "webgpu" && await isSoftwareAdapter()) continue;
      return await useBackend(candidate);
    } catch { /* try the next */ }
  }
  return await useBackend("cpu");
}

/** Backends that start on this machine (for tests and benchmarks). */
export async function availableBackends(): Promise<Array<Exclude<BackendName, "auto">>> {
  const out: Array<Exclude<BackendName, "auto">> = [];
  const previous = tf.getBackend();
  for (const b of ["cpu", "wasm", "webgpu", "tensorflow"] as const) {
    try {
      await useBackend(b);
      out.push(b);
    } catch { /* absent */ }
  }
  if (previous) await tf.setBackend(previous);
  return out;
}
