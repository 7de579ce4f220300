import { assert, assertEquals } from "@std/assert";
import { tf, useBackend } from "./mod.ts";
import { loadBlas } from "./blas.ts";
import { registerWasmTrainingKernels } from "./wasm_kernels.ts";

async function onBoth(f: () => tf.Tensor): Promise<[Float32Array, Float32Array]> {
  await useBackend("cpu");
  const a = (await f().data()) as Float32Array;
  await useBackend("wasm");
  const b = (await f().data()) as Float32Array;
  return [a, b];
}

function close(a: Float32Array, b: Float32Array, tol = 1e-4) {
  assertEquals(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(a[i]!)), `[${i}] ${a[i]} vs ${b[i]}`);
  }
}

const rand = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

Deno.test("wasm BatchMatMul (BLAS when present): transposes, batches, broadcast batch", async () => {
  await useBackend("wasm");
  const { blas } = registerWasmTrainingKernels();
  assertEquals(blas, loadBlas()?.library ?? null);
  const cases: Array<[number[], number[], boolean, boolean]> = [
    [[7, 5], [5, 3], false, false],
    [[5, 7], [5, 3], true, false],
    [[7, 5], [3, 5], false, true],
    [[5, 7], [3, 5], true, true],
    [[2, 3, 7, 5], [2, 3, 5, 4], false, false],
    [[2, 3, 7, 5], [2, 3, 4, 5], false, true],
    [[2, 7, 5], [1, 5, 4], false, false],
  ];
  for (const [sa, sb, ta, tb] of cases) {
    const [x, y] = await onBoth(() => tf.matMul(rand(sa, 1), rand(sb, 2), ta, tb));
    close(x, y);
  }
});

Deno.test("wasm Sum over leading axes and others, UnsortedSegmentSum (embedding gradient)", async () => {
  for (
    const [shape, axis] of [[[6, 4], 0], [[3, 4, 5], [0, 1]], [[3, 4, 5], 1], [
      [3, 4, 5],
      -1,
    ]] as const
  ) {
    const [x, y] = await onBoth(() => tf.sum(rand([...shape], 3), axis as number | number[]));
    close(x, y);
  }
  const [x, y] = await onBoth(() =>
    tf.unsortedSegmentSum(rand([5, 3], 4), tf.tensor1d([2, 0, 2, 1, 0], "int32"), 4)
  );
  close(x, y);
});

Deno.test("wasm GatherV2: rows (the embedding lookup) and the other axes", async () => {
  const ids = () => tf.tensor2d([[3, 0, 4], [4, 4, 1]], [2, 3], "int32");
  for (
    const f of [
      () => tf.gather(rand([5, 7], 5), ids()),
      () => tf.gather(rand([5, 2, 3], 6), tf.tensor1d([1, 1, 0, 4], "int32")),
      () => tf.gather(rand([4, 5], 7), tf.tensor1d([4, 0], "int32"), 1),
    ]
  ) {
    const [x, y] = await onBoth(f);
    close(x, y);
  }
});

Deno.test("wasm without BLAS: the trainer's backend says so once, with the fix, before any step", async () => {
  const run = (env: Record<string, string>) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { useBackend } from "${new URL("./mod.ts", import.meta.url).href}";
         await useBackend("wasm"); await useBackend("cpu"); await useBackend("wasm");`,
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
  const missing = await run({ DVSFT_BLAS_LIB: "/nonexistent/libopenblas.so" });
  assert(missing.success, new TextDecoder().decode(missing.stderr));
  const err = new TextDecoder().decode(missing.stderr);
  assertEquals(err.split("OpenBLAS not found").length - 1, 1, err);
  assert(err.includes("apt-get install libopenblas0-pthread"), err);
  assert(err.includes("15×"), err);
  const off = await run({ DVSFT_BLAS: "off" });
  assert(!new TextDecoder().decode(off.stderr).includes("OpenBLAS not found"));
});
