/**
 * tfjs-backend-wasm's heap as a shared memory, so the SIMD kernels' helper threads
 * (`simd_pool.ts`) work on tensors where they lie. The package's single-threaded SIMD build
 * defines its memory (min 256 pages, max 65 536: the 4 GiB the 32-bit heap allows); setting that
 * definition's shared flag is the only change — one byte of the binary. The module's code is the
 * same and needs no atomics: plain loads and stores on a shared memory behave as before on the
 * thread that runs them. tfjs's threaded build is not an option: its pthreads need classic
 * workers, which Deno does not have.
 *
 * The patched binary is written once to the temporary folder under a name made of the original's
 * hash, and tfjs loads it from there. Anything unexpected (another layout, a read-only folder)
 * leaves tfjs on its own binary, single-threaded, with a warning.
 */
import { sha256Hex } from "../util/hash.ts";

export const TFJS_WASM_FILES = [
  "tfjs-backend-wasm.wasm",
  "tfjs-backend-wasm-simd.wasm",
  "tfjs-backend-wasm-threaded-simd.wasm",
] as const;

/** Raised for a binary whose memory cannot be made shared this way. */
export class SharedHeapError extends Error {
  override name = "SharedHeapError";
}

function readLeb(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0, shift = 0, b: number;
  do {
    if (at >= bytes.length) throw new SharedHeapError("truncated LEB128 in the wasm binary");
    b = bytes[at++]!;
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return [value, at];
}

/**
 * A copy of a wasm binary whose one defined memory is shared (flags 0x01 → 0x03: it has a
 * maximum, now shared too). Throws {@linkcode SharedHeapError} for anything else: no memory
 * section, more than one memory, no maximum, already shared.
 */
export function shareMemory(binary: Uint8Array): Uint8Array {
  const magic = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  if (binary.length < 8 || magic.some((b, i) => binary[i] !== b)) {
    throw new SharedHeapError("not a version-1 wasm binary");
  }
  const out = binary.slice();
  let at = 8;
  while (at < out.length) {
    const id = out[at]!;
    const [len, body] = readLeb(out, at + 1);
    if (id === 5) {
      const [count, flagsAt] = readLeb(out, body);
      if (count !== 1) throw new SharedHeapError(`the binary defines ${count} memories, not 1`);
      const flags = out[flagsAt]!;
      if (flags !== 0x01) {
        throw new SharedHeapError(
          `memory flags 0x${flags.toString(16)}: expected 0x01 (a maximum, not shared)`,
        );
      }
      out[flagsAt] = 0x03;
      // the result must still be a valid module with a shared memory
      const memory = WebAssembly.Module.exports(new WebAssembly.Module(out)).find((e) =>
        e.kind === "memory"
      );
      if (!memory) throw new SharedHeapError("the binary does not export its memory");
      return out;
    }
    at = body + len;
  }
  throw new SharedHeapError("the binary has no memory section (it imports its memory)");
}

/**
 * The file map for tfjs-backend-wasm's `setWasmPaths`: the SIMD build with a shared memory
 * (written to the temporary folder once), the other two builds as the package ships them.
 * `dir` is the package's folder of .wasm files (a file: URL ending in /).
 */
export function sharedHeapWasmPaths(dir: string): Promise<Record<string, string>> {
  // once per process and folder: the backend's init runs at every `useBackend("wasm")`
  let paths = pathsByDir.get(dir);
  if (!paths) {
    paths = writeSharedHeap(dir);
    pathsByDir.set(dir, paths);
    paths.catch(() => pathsByDir.delete(dir));
  }
  return paths;
}
const pathsByDir = new Map<string, Promise<Record<string, string>>>();

async function writeSharedHeap(dir: string): Promise<Record<string, string>> {
  const simdName = "tfjs-backend-wasm-simd.wasm";
  const original = await Deno.readFile(new URL(simdName, dir));
  const patched = shareMemory(original);
  const hash = (await sha256Hex(original)).slice(0, 16);
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const folder = `${tmp}/dvsft-tfjs-wasm-${hash}`;
  const path = `${folder}/${simdName}`;
  const same = await Deno.readFile(path).then(
    (b) => b.length === patched.length && b.every((x, i) => x === patched[i]),
    () => false,
  );
  if (!same) {
    await Deno.mkdir(folder, { recursive: true });
    const part = `${path}.${Deno.pid}.part`;
    await Deno.writeFile(part, patched);
    await Deno.rename(part, path); // atomic: another process sees the old file or the whole new one
  }
  const paths: Record<string, string> = {};
  for (const f of TFJS_WASM_FILES) paths[f] = new URL(f, dir).href;
  paths[simdName] = new URL(`file://${path}`).href;
  return paths;
}
