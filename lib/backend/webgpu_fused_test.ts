/**
 * The fused webgpu kernels against the composed tfjs ops on webgpu and against `cpu`, values
 * and gradients, on whatever WebGPU adapter is here (Mesa's lavapipe in CI: `.ci/run`
 * installs it). Nothing skips: without navigator.gpu or without an adapter the tests fail.
 */
import { assert, assertAlmostEquals } from "@std/assert";
import {
  attention,
  gelu,
  layerNorm,
  linear,
  setFusedEnabled,
  tf,
  tokenCrossEntropy,
  useBackend,
} from "./mod.ts";
import { splitKPlan, webgpuAdamW, webgpuCounters } from "./webgpu_fused.ts";
import { AdamW, OptimizerConfigSchema } from "../train/optimizer.ts";
import { jointNextTokenLoss } from "../loss/mod.ts";
import {
  MODEL_PRESETS,
  ModelConfigSchema,
  numVisualTokens,
  sequenceLength,
  SmallVLM,
} from "../model/mod.ts";

/** What webgpuAdamW packs by: the device's storage buffers per shader stage. */
async function maxStorageBuffers(): Promise<number> {
  await useBackend("webgpu");
  return (tf.backend() as unknown as { device: GPUDevice }).device.limits
    .maxStorageBuffersPerShaderStage;
}

const hasWebgpuApi = !!(globalThis.navigator as { gpu?: unknown }).gpu;

if (!hasWebgpuApi) {
  // Deno 2.9 has WebGPU without a flag; an older runtime needs --unstable-webgpu
  Deno.test("webgpu fused kernels: navigator.gpu is here", () => {
    throw new Error(
      "navigator.gpu is missing: these tests need Deno's WebGPU (Deno ≥ 2.9, or --unstable-webgpu)",
    );
  });
} else {
  type Case = {
    name: string;
    /** Float inputs (gradients are taken with respect to all of them). */
    inputs: () => tf.Tensor[];
    f: (...xs: tf.Tensor[]) => tf.Tensor;
  };

  const rn = (shape: number[], seed: number, mean = 0, sd = 1) =>
    tf.randomNormal(shape, mean, sd, "float32", seed);
  // targets: one unsupervised (-100) position
  const targets = () => tf.tensor2d([[3, -100, 0], [7, 1, 2]], [2, 3], "int32");

  const CASES: Case[] = [
    {
      name: "layerNorm",
      inputs: () => [rn([2, 3, 70], 1), rn([70], 2, 1, 0.2), rn([70], 3, 0, 0.2)],
      f: (x, g, b) => layerNorm(x!, g!, b!),
    },
    {
      // more rows than one dispatch dimension takes (65 535 workgroups): the dispatch wraps
      name: "layerNorm, 65 537 rows",
      inputs: () => [rn([65537, 2], 18), rn([2], 19, 1, 0.2), rn([2], 20, 0, 0.2)],
      f: (x, g, b) => layerNorm(x!, g!, b!),
    },
    { name: "gelu", inputs: () => [rn([3, 5, 41], 4, 0, 2)], f: (x) => gelu(x!) },
    {
      name: "tokenCrossEntropy",
      inputs: () => [rn([2, 3, 75], 5, 0, 3)],
      f: (l) => tokenCrossEntropy(l!, targets()),
    },
    {
      name: "linear",
      inputs: () => [rn([2, 3, 12], 6), rn([12, 9], 7), rn([9], 8)],
      f: (x, w, b) => linear(x!, w!, b!),
    },
    {
      // 1 100 rows of reduction: the weight gradient is split-K (5 splits, a short last one),
      // K and N not multiples of the 32-wide tile
      name: "linear, tall-skinny (split-K weight gradient)",
      inputs: () => [rn([2, 550, 24], 21), rn([24, 40], 22), rn([40], 23)],
      f: (x, w, b) => linear(x!, w!, b!),
    },
    {
      name: "attention causal",
      inputs: () => [rn([2, 5, 8], 9), rn([2, 5, 8], 10), rn([2, 5, 8], 11)],
      f: (q, k, v) => attention(q!, k!, v!, 2, true),
    },
    {
      name: "attention bidirectional",
      inputs: () => [rn([1, 6, 12], 12), rn([1, 6, 12], 13), rn([1, 6, 12], 14)],
      f: (q, k, v) => attention(q!, k!, v!, 3, false),
    },
    {
      // rows longer than a workgroup (70 > 64) and a head width over it (80)
      name: "attention causal, long rows and wide heads",
      inputs: () => [rn([1, 70, 160], 15), rn([1, 70, 160], 16), rn([1, 70, 160], 17)],
      f: (q, k, v) => attention(q!, k!, v!, 2, true),
    },
  ];

  /** Value and input gradients of Σ f(x)·r (r fixed random), read back to the CPU. */
  const evaluate = async (c: Case): Promise<{ y: Float32Array; grads: Float32Array[] }> => {
    const xs = c.inputs();
    const y = c.f(...xs);
    const r = tf.randomUniform(y.shape, -1, 1, "float32", 99);
    const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(c.f(...a), r)))(xs);
    const out = {
      y: (await y.data()) as Float32Array,
      grads: await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array)),
    };
    tf.dispose([...xs, y, r, ...grads]);
    return out;
  };

  const close = (a: Float32Array, b: Float32Array, what: string): void => {
    assert(a.length === b.length, `${what}: length ${a.length} vs ${b.length}`);
    let scale = 1e-3;
    for (const v of b) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < a.length; i++) {
      assert(Number.isFinite(a[i]!), `${what}[${i}] = ${a[i]}`);
      assertAlmostEquals(a[i]!, b[i]!, 2e-5 * scale + 1e-6, `${what}[${i}]`);
    }
  };

  for (const c of CASES) {
    Deno.test(`webgpu fused ${c.name}: values and gradients match composed webgpu and cpu`, async () => {
      await useBackend("cpu");
      const cpu = await evaluate(c);
      await useBackend("webgpu"); // fails (not skips) when there is no adapter
      const counters = webgpuCounters();
      setFusedEnabled(false);
      counters.reset();
      const composed = await evaluate(c);
      const composedDispatches = counters.dispatches;
      setFusedEnabled(true);
      counters.reset();
      const fused = await evaluate(c);
      const fusedDispatches = counters.dispatches;
      for (const [ref, label] of [[composed, "composed webgpu"], [cpu, "cpu"]] as const) {
        close(fused.y, ref.y, `${c.name} value vs ${label}`);
        fused.grads.forEach((g, i) => close(g, ref.grads[i]!, `${c.name} grad ${i} vs ${label}`));
      }
      assert(
        fusedDispatches < composedDispatches,
        `${c.name}: fused ${fusedDispatches} dispatches, composed ${composedDispatches}`,
      );
      await useBackend("cpu");
    });
  }

  Deno.test("webgpu split-K weight gradient: taken for long reductions only, two dispatches, equal to cpu's Xᵀ·dY", async () => {
    assert(splitKPlan(128, 64, 64) === null, "a short reduction tiles the output alone");
    assert(splitKPlan(4096, 2048, 512) === null, "a wide output has work enough");
    const p = splitKPlan(4096, 96, 384)!;
    assert(p.splits === 16 && p.rows === 256, JSON.stringify(p));
    const q = splitKPlan(1_000_000, 64, 64)!;
    assert(
      q.splits <= 64 && q.splits * q.rows >= 1_000_000 && q.rows % 16 === 0,
      JSON.stringify(q),
    );
    const M = 2 * 1031, K = 70, N = 33; // ragged everywhere
    const x = () => rn([2, 1031, K], 31), dy = () => rn([2, 1031, N], 32);
    const dW = async () => {
      const xs = x(), w = rn([K, N], 33), b = rn([N], 34), d = dy();
      const g = tf.grad((w2: tf.Tensor) => tf.sum(tf.mul(linear(xs, w2, b), d)))(w);
      const out = (await g.data()) as Float32Array;
      tf.dispose([xs, w, b, d, g]);
      return out;
    };
    await useBackend("cpu");
    const cpu = await dW();
    await useBackend("webgpu");
    const counters = webgpuCounters();
    counters.reset();
    const gpu = await dW();
    assert(splitKPlan(M, K, N) !== null);
    assert(
      counters.byProgram.get("dvsft_wgrad_splitk") === 2,
      `programs: ${JSON.stringify([...counters.byProgram])}`,
    );
    close(gpu, cpu, "dW");
    await useBackend("cpu");
  });

  Deno.test("webgpu fused: a target outside the vocabulary gives NaN, not a silent loss", async () => {
    await useBackend("webgpu");
    const l = tf.zeros([1, 2, 4]);
    const t = tf.tensor2d([[1, 4]], [1, 2], "int32");
    const y = await tokenCrossEntropy(l, t).data();
    assertAlmostEquals(y[0]!, Math.log(4), 1e-6);
    assert(Number.isNaN(y[1]!), `target 4 of 4 gave ${y[1]}`);
    tf.dispose([l, t]);
    await useBackend("cpu");
  });

  Deno.test("webgpu AdamW in place: three steps match AdamW.apply on cpu, in P + ⌈P/7⌉ + 1 dispatches", async () => {
    // clip 0.5 so the clip scale is active; a matrix (decayed) and a vector (not)
    const config = OptimizerConfigSchema.parse({ clip: 0.5, weightDecay: 0.1 });
    const run = async (gpu: boolean) => {
      await useBackend(gpu ? "webgpu" : "cpu");
      // 9 parameters: the Σ g² dispatches take 7 gradients each (two of them here)
      const weights = new Map([
        ["a", tf.variable(tf.randomNormal([70, 300], 0, 1, "float32", 1), true, "wa")],
        ["b", tf.variable(tf.randomNormal([33], 0, 1, "float32", 2), true, "wb")],
        ...Array.from(
          { length: 7 },
          (_, i) =>
            [
              `c${i}`,
              tf.variable(tf.randomNormal([5 + i, 3], 0, 1, "float32", 30 + i), true, `wc${i}`),
            ] as const,
        ),
      ]);
      const opt = new AdamW(config, weights);
      const norms: number[] = [];
      let dispatches = 0;
      for (let step = 0; step < 3; step++) {
        const grads: Record<string, tf.Tensor> = {
          wa: tf.randomNormal([70, 300], 0, 0.1, "float32", 10 + step),
          wb: tf.randomNormal([33], 0, 1, "float32", 20 + step),
        };
        for (let i = 0; i < 7; i++) {
          grads[`wc${i}`] = tf.randomNormal([5 + i, 3], 0, 1, "float32", 40 + 10 * step + i);
        }
        const counters = gpu ? webgpuCounters() : undefined;
        counters?.reset();
        const norm = gpu ? webgpuAdamW(opt, grads, 1e-2) : opt.apply(grads, 1e-2);
        dispatches = counters?.dispatches ?? 0;
        norms.push((await norm.data())[0]!);
        tf.dispose([norm, ...Object.values(grads)]);
      }
      const out = {
        a: (await weights.get("a")!.data()) as Float32Array,
        b: (await weights.get("b")!.data()) as Float32Array,
        m: (await opt.m.get("a")!.data()) as Float32Array,
        v: (await opt.v.get("b")!.data()) as Float32Array,
        c6: (await weights.get("c6")!.data()) as Float32Array,
        norms,
        dispatches,
        t: opt.t,
      };
      opt.dispose();
      for (const w of weights.values()) w.dispose();
      return out;
    };
    const cpu = await run(false);
    const gpu = await run(true);
    assert(gpu.t === 3, `t = ${gpu.t}`);
    gpu.norms.forEach((n, i) => assertAlmostEquals(n, cpu.norms[i]!, 1e-4 * cpu.norms[i]!));
    close(gpu.a, cpu.a, "w (matrix)");
    close(gpu.b, cpu.b, "w (vector)");
    close(gpu.m, cpu.m, "m");
    close(gpu.v, cpu.v, "v");
    close(gpu.c6, cpu.c6, "w (the ninth parameter)");
    const perSum = Math.min(15, await maxStorageBuffers() - 1);
    const expected = 9 + Math.ceil(9 / perSum) + 1;
    assert(gpu.dispatches === expected, `${gpu.dispatches} dispatches for 9 parameters`);
    await useBackend("cpu");
  });

  Deno.test("webgpu fused: a tiny training step (loss, then AdamW in place) matches cpu, in fewer dispatches", async () => {
    const c = ModelConfigSchema.parse({ ...MODEL_PRESETS.tiny, vocabSize: 200 });
    const B = 2, S = c.imageSize, T = sequenceLength(c), N = numVisualTokens(c);
    const run = async (backend: "cpu" | "webgpu", fused: boolean) => {
      await useBackend(backend);
      setFusedEnabled(fused);
      const model = new SmallVLM(c, undefined, 0);
      const opt = new AdamW(OptimizerConfigSchema.parse({}), model.weights);
      const pixels = tf.randomUniform([B, S, S, 3], 0, 1, "float32", 1) as tf.Tensor4D;
      const ids = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 2) as tf.Tensor2D;
      const labels = tf.randomUniform([B, T], 6, c.vocabSize - 1, "int32", 3) as tf.Tensor2D;
      const counters = backend === "webgpu" ? webgpuCounters() : undefined;
      counters?.reset();
      const { value, grads } = tf.variableGrads(() =>
        jointNextTokenLoss(model.apply(pixels, ids), labels, [1, N + 1]).total
      );
      const norm = backend === "webgpu" && fused
        ? webgpuAdamW(opt, grads, 1e-3)
        : opt.apply(grads, 1e-3);
      const loss = (await value.data())[0]!;
      const dispatches = counters?.dispatches ?? 0;
      const after = new Map<string, Float32Array>();
      for (const [name, w] of model.weights) after.set(name, (await w.data()) as Float32Array);
      const out = { loss, norm: (await norm.data())[0]!, after, dispatches };
      tf.dispose([value, norm, pixels, ids, labels, ...Object.values(grads)]);
      opt.dispose();
      model.dispose();
      setFusedEnabled(true);
      return out;
    };
    const cpu = await run("cpu", false);
    const composed = await run("webgpu", false);
    const fused = await run("webgpu", true);
    assertAlmostEquals(fused.loss, cpu.loss, 1e-4 * cpu.loss);
    assertAlmostEquals(fused.norm, cpu.norm, 1e-3 * cpu.norm);
    for (const [name, w] of cpu.after) {
      const h = fused.after.get(name)!;
      // one step of lr 1e-3 moves a weight by ≤ ~1e-3: compare to 1e-5
      for (let i = 0; i < w.length; i++) assertAlmostEquals(h[i]!, w[i]!, 1e-5, `${name}[${i}]`);
    }
    assert(
      fused.dispatches * 2 < composed.dispatches,
      `fused step ${fused.dispatches} dispatches, composed ${composed.dispatches}`,
    );
    await useBackend("cpu");
  });
}
