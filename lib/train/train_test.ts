import { assert, assertAlmostEquals, assertEquals, assertLess, assertRejects } from "@std/assert";
import { join } from "node:path";
import { availableBackends, tf, useBackend } from "../backend/mod.ts";
import { makeReadingSample } from "../data/mod.ts";
import { jointNextTokenLoss } from "../loss/mod.ts";
import { MODEL_PRESETS, ModelConfigSchema, parameterCount, SmallVLM } from "../model/mod.ts";
import { buildSmallTokenizerJson } from "../tokenizer/small.ts";
import { loadTokenizerFile } from "../tokenizer/mod.ts";
import { makeBatch, NonFiniteLossError, stepError, train } from "./mod.ts";
import { loadCheckpoint, resolveCheckpoint, runPaths } from "../runs/mod.ts";
import { periodicEvaluation } from "../eval/mod.ts";
import { sha256Hex } from "../util/hash.ts";

const tmp = () => Deno.makeTempDir({ prefix: "dvsft-train-" });
const base = {
  model: "tiny",
  batchSize: 8,
  optimizer: { lr: 3e-3, warmupSteps: 5 },
  checkpointEvery: 0,
} as const;

Deno.test("train: overfits one batch, loss falls, no leaked tensors", async () => {
  const outDir = await tmp();
  try {
    const r = await train({
      ...base,
      name: "overfit",
      outDir,
      steps: 60,
      backend: "wasm",
      data: { task: "reading", seed: 0, size: 8 },
    });
    const first = r.metrics[0]!;
    const last = r.metrics.at(-1)!;
    assertLess(last.loss, first.loss * 0.45, `loss ${first.loss} → ${last.loss}`);
    assertLess(last.visionLoss, first.visionLoss * 0.6);
    // tensors stay flat after the first step (weights, optimizer state, cached mask)
    const counts = new Set(r.metrics.slice(1).map((m) => m.numTensors));
    assertEquals(counts.size, 1, `numTensors varied: ${[...counts]}`);
    const lines = (await Deno.readTextFile(runPaths(r.runDir).metrics)).trim().split("\n");
    assertEquals(lines.length, 60);
    const svg = await Deno.readTextFile(runPaths(r.runDir).lossPlot);
    assert(svg.startsWith("<svg") && svg.includes("vision"), "loss plot");
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: same seed → same losses on cpu and wasm", async () => {
  const outDir = await tmp();
  try {
    const run = (backend: "cpu" | "wasm") =>
      train({ ...base, name: backend, outDir, steps: 3, backend });
    const a = await run("cpu");
    const b = await run("wasm");
    a.metrics.forEach((m, k) => assertAlmostEquals(m.loss, b.metrics[k]!.loss, 1e-4));
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("backends: a training step's loss and gradients agree with cpu on every backend present", async () => {
  const path = join(await tmp(), "tok.json");
  await Deno.writeTextFile(path, JSON.stringify(buildSmallTokenizerJson()));
  const tokenizer = await loadTokenizerFile(path, "small");
  const config = ModelConfigSchema.parse({ ...MODEL_PRESETS.tiny, vocabSize: tokenizer.vocabSize });
  const samples = Array.from(
    { length: 4 },
    (_, i) => makeReadingSample(i, { config, tokenizer, seed: 3 }),
  );
  const present = await availableBackends();
  assert(present.includes("wasm"), `wasm must train here; present: ${present}`);
  const results: Record<string, { loss: number; grads: Map<string, Float32Array> }> = {};
  for (const backend of present) {
    await useBackend(backend);
    const model = new SmallVLM(config, undefined, 5);
    const batch = makeBatch(samples, config, true);
    const { value, grads } = tf.variableGrads(() =>
      jointNextTokenLoss(model.apply(batch.pixels, batch.inputIds), batch.labels, [1, 5]).total
    );
    const g = new Map<string, Float32Array>();
    for (const [name, w] of model.weights) {
      g.set(name, (await grads[w.name]!.data()) as Float32Array);
    }
    results[backend] = { loss: (await value.data())[0]!, grads: g };
    tf.dispose([value, ...Object.values(grads), batch.pixels, batch.inputIds, batch.labels]);
    model.dispose();
  }
  const ref = results.cpu!;
  for (const backend of present) {
    const r = results[backend]!;
    assertAlmostEquals(r.loss, ref.loss, 1e-3, backend);
    for (const [name, g] of ref.grads) {
      const h = r.grads.get(name)!;
      let scale = 1e-3;
      for (const v of g) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < g.length; i++) {
        assertAlmostEquals(h[i]!, g[i]!, 2e-3 * scale, `${backend} ${name}[${i}]`);
      }
    }
  }
  await useBackend("wasm");
});

Deno.test("train: SIGKILL mid-run, --resume, and the losses equal an uninterrupted run step by step", async () => {
  const outDir = await tmp();
  const root = new URL("../..", import.meta.url).pathname;
  const cli = (name: string, extra: string[] = []) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "functions/train/cli.ts",
        "--quiet",
        "--set",
        `name=${name}`,
        "--set",
        `outDir=${outDir}`,
        "--set",
        "model=tiny",
        "--set",
        "steps=24",
        "--set",
        "batchSize=4",
        "--set",
        "checkpointEvery=4",
        "--set",
        "backend=wasm",
        ...extra,
      ],
      cwd: root,
      stdout: "null",
      stderr: "null",
    });
  try {
    assertEquals((await cli("whole").output()).code, 0);
    const child = cli("killed").spawn();
    const metricsPath = join(outDir, "killed", "metrics.jsonl");
    for (;;) {
      const text = await Deno.readTextFile(metricsPath).catch(() => "");
      if (text.trim().split("\n").filter(Boolean).length >= 10) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGKILL");
    await child.status;
    const ck = await loadCheckpoint(
      join(
        outDir,
        "killed",
        "checkpoints",
        JSON.parse(await Deno.readTextFile(join(outDir, "killed", "checkpoints", "latest.json")))
          .checkpoint,
      ),
    );
    assert(
      ck.manifest.step >= 8 && ck.manifest.step < 24,
      `checkpoint at step ${ck.manifest.step}`,
    );
    assertEquals((await cli("killed", ["--resume"]).output()).code, 0);
    const byStep = async (name: string) => {
      const m = new Map<number, number>();
      for (
        const line of (await Deno.readTextFile(join(outDir, name, "metrics.jsonl"))).trim().split(
          "\n",
        )
      ) {
        const { step, loss } = JSON.parse(line);
        m.set(step, loss); // a step redone after the kill overwrites its first record
      }
      return m;
    };
    const whole = await byStep("whole");
    const resumed = await byStep("killed");
    assertEquals(resumed.size, 24);
    for (const [step, loss] of whole) assertEquals(resumed.get(step), loss, `step ${step}`);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: a NaN loss stops with a clear error and keeps the last good checkpoint", async () => {
  const outDir = await tmp();
  try {
    await train({ ...base, name: "nan", outDir, steps: 2, checkpointEvery: 2, backend: "wasm" });
    // poison the checkpoint's weights (with a valid checksum), then resume
    const dir = join(outDir, "nan", "checkpoints", "step-000002");
    const bytes = await Deno.readFile(join(dir, "weights.bin"));
    new Float32Array(bytes.buffer).fill(NaN, 0, 100);
    await Deno.writeFile(join(dir, "weights.bin"), bytes);
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
    manifest.files["weights.bin"] = await sha256Hex(bytes);
    await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
    await assertRejects(
      () =>
        train({ ...base, name: "nan", outDir, steps: 4, checkpointEvery: 1, backend: "wasm" }, {
          resume: true,
        }),
      NonFiniteLossError,
      "loss is NaN",
    );
    const latest = JSON.parse(
      await Deno.readTextFile(join(outDir, "nan", "checkpoints", "latest.json")),
    );
    assertEquals(latest.step, 2);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("checkpoint: a corrupted file is refused by its checksum", async () => {
  const outDir = await tmp();
  try {
    await train({ ...base, name: "c", outDir, steps: 1, checkpointEvery: 1, backend: "wasm" });
    const dir = join(outDir, "c", "checkpoints", "step-000001");
    const bytes = await Deno.readFile(join(dir, "optimizer.bin"));
    await Deno.writeFile(join(dir, "optimizer.bin"), bytes.subarray(0, bytes.length - 4));
    await assertRejects(() => loadCheckpoint(dir), Error, "does not match its checksum");
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test({
  name:
    "checkpoint: a full disk during a checkpoint write leaves the previous checkpoint intact (tmpfs)",
  // mounting a size-limited tmpfs needs root (CI runs as root)
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const mnt = await tmp();
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1600k", "tmpfs", mnt],
    }).output();
    assert(mount.success, new TextDecoder().decode(mount.stderr));
    try {
      // tiny: one checkpoint ≈ 1 MB (weights + Adam moments), so the second one cannot fit
      const err = await assertRejects(() =>
        train({
          ...base,
          name: "full",
          outDir: mnt,
          steps: 4,
          checkpointEvery: 1,
          keepCheckpoints: 3,
          backend: "wasm",
        })
      );
      assert(/space|ENOSPC|os error 28/i.test(String((err as Error).message)), String(err));
      const latest = JSON.parse(
        await Deno.readTextFile(join(mnt, "full", "checkpoints", "latest.json")),
      );
      assertEquals(latest.step, 1);
      const ck = await loadCheckpoint(join(mnt, "full", "checkpoints", latest.checkpoint));
      assertEquals(ck.manifest.step, 1);
      const leftovers = [...Deno.readDirSync(join(mnt, "full", "checkpoints"))].map((e) => e.name)
        .filter((n) => n.startsWith(".tmp"));
      assertEquals(leftovers, []);
    } finally {
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt, { recursive: true });
    }
  },
});

Deno.test("train: evalEvery evaluates the model on named suites during training → evals.jsonl", async () => {
  const outDir = await tmp();
  try {
    const seen: string[] = [];
    const r = await train(
      {
        ...base,
        name: "ev",
        outDir,
        steps: 4,
        backend: "wasm",
        evalEvery: 2,
        evalSuites: ["text-reading", "charts"],
        evalN: 2,
      },
      { evaluate: periodicEvaluation(), onEval: (e) => seen.push(`${e.step}:${e.suite}`) },
    );
    assertEquals(seen, ["2:text-reading", "2:charts", "4:text-reading", "4:charts"]);
    const lines = (await Deno.readTextFile(runPaths(r.runDir).periodicEvals)).trim().split("\n")
      .map((
        l,
      ) => JSON.parse(l));
    assertEquals(lines.map((l) => [l.step, l.suite, l.n]), [
      [2, "text-reading", 2],
      [2, "charts", 2],
      [4, "text-reading", 2],
      [4, "charts", 2],
    ]);
    assert(lines.every((l) => l.score >= 0 && l.score <= 1));
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: a run refused before its first step leaves no run folder behind", async () => {
  const outDir = await tmp();
  try {
    await assertRejects(() =>
      train({
        ...base,
        name: "refused",
        outDir,
        steps: 2,
        backend: "wasm",
        data: { task: "dataset", path: join(outDir, "no-such-dataset") },
      })
    );
    assertEquals([...Deno.readDirSync(outDir)].map((e) => e.name), []);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: a model past the wasm heap is refused before anything is allocated, with the bound", async () => {
  const outDir = await tmp();
  try {
    await useBackend("wasm");
    const bytes = tf.memory().numBytes;
    // dim 2048 × 8 layers: 415 M parameters, 6.2 GiB of full fine-tuning state
    const e = await assertRejects(
      () =>
        train({
          ...base,
          name: "too-large",
          outDir,
          steps: 1,
          backend: "wasm",
          modelOverrides: { dim: 2048, layers: 8, heads: 32 },
        }),
      RangeError,
    );
    assert(/Cannot train 4\d\d M parameters on wasm/.test(e.message), e.message);
    assert(/6\.\d\d GiB in weights, gradients and AdamW moments/.test(e.message), e.message);
    assertEquals(tf.memory().numBytes, bytes, "refused before any weight was made");
    // a trap in a later step (a real one: a load past a one-page memory) is said as the heap
    const trap = (() => {
      const m = new WebAssembly.Module(
        new Uint8Array([
          ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
          ...[1, 5, 1, 0x60, 0, 1, 0x7f], // type: () -> i32
          ...[3, 2, 1, 0], // func 0
          ...[5, 3, 1, 0, 1], // memory: 1 page
          ...[7, 5, 1, 1, 0x66, 0, 0], // export "f"
          ...[10, 11, 1, 9, 0, 0x41, 0x80, 0x80, 0x08, 0x28, 2, 0, 0x0b], // i32.load (131072)
        ]),
      );
      try {
        (new WebAssembly.Instance(m).exports.f as () => number)();
      } catch (e) {
        return e;
      }
    })();
    assert(trap instanceof WebAssembly.RuntimeError);
    const said = stepError(trap, "wasm", 16 * 229e6, 7, "/runs/x/checkpoints") as Error;
    assert(said instanceof RangeError && said.cause === trap);
    assert(
      /^Training step 8 failed on wasm \(.*out of bounds.*\): .* AdamW moments already hold 3\.41 GiB/
        .test(said.message),
      said.message,
    );
    assert(said.message.endsWith("Checkpoints so far are in /runs/x/checkpoints"), said.message);
    const other = new TypeError("not a trap");
    assertEquals(stepError(other, "wasm", 1, 0, ""), other);
    assertEquals(stepError(trap, "cpu", 1, 0, ""), trap);
    // the count it refused by is the model's own
    const c = ModelConfigSchema.parse({ ...MODEL_PRESETS.tiny, vocabSize: 50 });
    const model = new SmallVLM(c);
    assertEquals(parameterCount(c), model.parameterCount);
    model.dispose();
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: batches made ahead in the data worker equal the main thread's, loss for loss and weight for weight", async () => {
  const outDir = await tmp();
  try {
    const run = (prefetch: boolean) =>
      train({
        ...base,
        name: `prefetch-${prefetch}`,
        outDir,
        steps: 3,
        batchSize: 4,
        backend: "wasm",
        // a mix of a generator suite (rendered images) and the reading task, from a later position
        data: {
          task: "mix",
          start: 7,
          mix: [{ suite: "train", weight: 1 }, { task: "reading", weight: 1 }],
          prefetch,
        },
      });
    const off = await run(false), on = await run(true);
    assertEquals(on.metrics.map((m) => m.loss), off.metrics.map((m) => m.loss));
    const weights = async (dir: string) => {
      const ck = await loadCheckpoint(await resolveCheckpoint(dir));
      assertEquals(ck.manifest.step, 3);
      return [...ck.weights].map(([k, v]) => [k, Array.from(v)]);
    };
    assertEquals(await weights(on.runDir), await weights(off.runDir));
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train: a data error raised in the data worker reaches the caller with its message", async () => {
  const outDir = await tmp();
  try {
    const missing = join(outDir, "no-such-dataset");
    const e = await assertRejects(() =>
      train({
        ...base,
        name: "worker-error",
        outDir,
        steps: 2,
        backend: "wasm",
        data: { task: "dataset", path: missing, prefetch: true },
      })
    );
    assert(String(e).includes("no-such-dataset"), String(e));
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("train CLI: --set evalEvery evaluates during training, prints each evaluation and stores evals.jsonl", async () => {
  const outDir = await tmp();
  try {
    const root = new URL("../..", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "functions/train/cli.ts",
        "--quiet",
        "--model",
        "tiny",
        ...["--set", `outDir=${outDir}`, "--set", "name=ev", "--set", "steps=4"],
        ...["--set", "evalEvery=2", "--set", "evalN=2", "--set", "checkpointEvery=0"],
        ...["--set", "backend=wasm"],
      ],
      cwd: root,
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assert(/eval step 2: text-reading anls \d/.test(stdout), stdout);
    assert(/eval step 4: text-reading anls \d/.test(stdout), stdout);
    const evals = (await Deno.readTextFile(join(outDir, "ev", "evals.jsonl"))).trim().split("\n");
    assertEquals(evals.map((l) => JSON.parse(l).step), [2, 4]);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});
