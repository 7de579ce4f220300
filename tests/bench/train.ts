/**
 * `deno task bench:train`: training-step time of the `tiny`, `small` and `medium` models on each
 * tfjs backend present, next to (1) the machine's single-precision matmul limit measured in the
 * same run (fp32 2048³, the faster of numpy — when the PyTorch interpreter has it — and our BLAS
 * through FFI, at the start of every round; a preset's "% of sgemm limit" uses the median of its
 * rounds) and (2) PyTorch stepping the same shapes with the same optimizer
 * (tests/bench/torch_step.py).
 *
 *   --steps N (timed steps, default 5)   --presets tiny,small,medium   --backends wasm,cpu,webgpu
 *   --rounds R (default 1): each round interleaves, step by step, our fused step, the same with
 *     the SIMD kernels on one thread, the composed tfjs ops (tiny and small only) and one
 *     persistent PyTorch process per thread count; each
 *     round's ratio against each PyTorch peer is printed, then the medians over rounds
 *   --torch-python PATH (env DVSFT_TORCH_PYTHON, default `python3`): the interpreter of the
 *     interleaved PyTorch peers (today's PyTorch, e.g. a venv with torch 2.x)
 *   --torch-threads 1,2 (default 1 and every core): thread counts of the interleaved peers
 *   Debian's /usr/bin/python3, when it has a different torch (python3-torch, 1.13), runs as a
 *   second, non-interleaved row before and after each round's interleaved steps.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  availableBackends,
  fusedActive,
  setFusedEnabled,
  startWasmHelpers,
  useBackend,
  webgpuAdapterDescription,
} from "../../lib/backend/mod.ts";
import { blasEnvSet, loadBlas } from "../../lib/backend/blas.ts";
import { setSimdThreads, simdThreads } from "../../lib/backend/simd_pool.ts";

const threads = simdThreads();
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  sequenceLength,
  trainStepFlops,
} from "../../lib/model/mod.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";
import { sgemmLimit, syntheticStep } from "./synthetic_step.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string" },
    presets: { type: "string" },
    backends: { type: "string" },
    rounds: { type: "string" },
    "torch-python": { type: "string" },
    "torch-threads": { type: "string" },
  },
});
const PresetSchema = z.enum(Object.keys(MODEL_PRESETS) as [keyof typeof MODEL_PRESETS]);
const flags = z.strictObject({
  steps: z.coerce.number().int().min(1).max(100).default(5),
  presets: z.string().default("tiny,small,medium").transform((s) => s.split(",")).pipe(
    z.array(PresetSchema).min(1),
  ),
  backends: z.string().optional(),
  rounds: z.coerce.number().int().min(1).max(50).default(1),
  "torch-python": z.string().min(1).default(Deno.env.get("DVSFT_TORCH_PYTHON") ?? "python3"),
  "torch-threads": z.string().default(`1,${navigator.hardwareConcurrency}`).transform((
    s,
  ) => [...new Set(s.split(",").map(Number))]).pipe(
    z.array(z.number().int().min(1).max(256)).min(1),
  ),
}).parse(values);
const BATCH: Record<keyof typeof MODEL_PRESETS, number> = { tiny: 8, small: 16, medium: 8 };
const vocabSize = Object.keys((buildSmallTokenizerJson().model as { vocab: object }).vocab).length;
const TORCH_PY = flags["torch-python"];
const DEBIAN_PY = "/usr/bin/python3";

/**
 * The peers' environment: ours without what loading our BLAS set (`OMP_WAIT_POLICY`), so PyTorch
 * runs as a user runs it.
 */
function peerEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const key of blasEnvSet()) delete env[key];
  return env;
}

/** stdout of `py args` when it exits 0, else null (no such interpreter, no torch). */
async function python(py: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(py, {
      args,
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: peerEnv(),
    }).output();
    if (out.success) return new TextDecoder().decode(out.stdout).trim();
  } catch { /* not there */ }
  return null;
}
const torchInfo = async (py: string) =>
  await python(py, ["-c", "import sys, torch; print(torch.__version__, sys.executable)"]);

const mainTorch = await torchInfo(TORCH_PY);
const debianTorch = await torchInfo(DEBIAN_PY);
// Debian's interpreter is the second row only when it is another torch than the main peer's
const second = debianTorch && debianTorch !== mainTorch ? debianTorch.split(" ")[0]! : null;
console.log(
  `PyTorch peers: ${TORCH_PY} → ${mainTorch ?? "no torch"} (interleaved, threads ${
    flags["torch-threads"].join(", ")
  }); ${DEBIAN_PY} → ${debianTorch ?? "no torch (apt-get install python3-torch for the 1.13 row)"}${
    second ? " (second row, runs before and after)" : ""
  }`,
);

// 1. the machine's matmul limit (fp32, 2048³)
const peakScript = `
import numpy as np, time
a = np.random.rand(2048, 2048).astype(np.float32); b = np.random.rand(2048, 2048).astype(np.float32); a @ b
t = time.perf_counter()
for _ in range(5): a @ b
print(2 * 2048**3 / ((time.perf_counter() - t) / 5) / 1e9)`;
const numpyLimit = async () =>
  Number(
    await python(TORCH_PY, ["-c", peakScript]) ?? await python(DEBIAN_PY, ["-c", peakScript]),
  ) || null;
const numpyPeak = await numpyLimit();
console.log(`SIMD kernels on ${threads} thread(s) (DVSFT_SIMD_THREADS)`);
const blas = loadBlas();
// set by loadBlas unless given (lib/backend/blas.ts: why 2^20 cycles)
console.log(`OPENBLAS_THREAD_TIMEOUT=${Deno.env.get("OPENBLAS_THREAD_TIMEOUT")}`);
/** The BLAS Deno calls at 2048³ (GFLOP/s), measured again in every round: the machine drifts. */
function ffiLimit(): number | null {
  return blas ? sgemmLimit(blas.gemm.bind(blas)) : null;
}
const ffiPeak = ffiLimit();
// the limit is the faster of the two means (numpy's BLAS and the one Deno calls), measured at the
// start of every round; each preset's shares use the median of its rounds' limits
const limitOf = (numpy: number | null, ffi: number | null) =>
  Math.max(numpy ?? 0, ffi ?? 0) || null;
console.log(
  `sgemm limit at the start (fp32 2048³): numpy ${
    numpyPeak ? Number(numpyPeak).toFixed(1) : "n/a"
  } GFLOP/s, OpenBLAS via Deno FFI ${ffiPeak?.toFixed(1) ?? "n/a"} GFLOP/s (${
    blas?.library ?? "no BLAS"
  })`,
);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
/** A PyTorch process that times one step per request (`torch_step.py --serve`). */
interface TorchPeer {
  torch: string;
  threads: number;
  step(): Promise<number>;
  close(): Promise<void>;
}

/** Lines of a byte stream, one per call (null at the end). */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string | null> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    for (;;) {
      const i = buffered.indexOf("\n");
      if (i >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) return null;
      buffered += value;
    }
  };
}

async function startTorchPeer(py: string, args: string[]): Promise<TorchPeer | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(py, {
      args: [...args, "--serve"],
      clearEnv: true,
      env: peerEnv(),
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch {
    return null; // no such interpreter
  }
  const next = lineReader(child.stdout);
  const first = await next();
  if (first === null) { // no torch in this interpreter
    await child.stdin.close().catch(() => {});
    await child.status;
    return null;
  }
  const ready = JSON.parse(first) as { torch: string; threads: number };
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  return {
    ...ready,
    step: async () => {
      await writer.write(encoder.encode("step\n"));
      const line = await next();
      if (line === null) throw new Error("the PyTorch peer exited");
      return Number(line);
    },
    close: async () => {
      await writer.write(encoder.encode("quit\n")).catch(() => {});
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}

/**
 * Median step time of each variant and of each PyTorch peer, all their steps interleaved one
 * by one (this shared machine drifts by ±20 % within a minute: interleaving keeps the ratios
 * honest). Returns the variants' medians, then the peers'.
 */
async function stepTimes(
  c: ModelConfig,
  B: number,
  steps: number,
  variants: Array<() => void>,
  peers: TorchPeer[] = [],
): Promise<number[]> {
  const { step: one, dispose } = syntheticStep(c, B);
  const times = [...variants, ...peers].map(() => [] as number[]);
  try {
    for (let i = -2; i < steps; i++) { // 2 warm-up rounds
      for (const [v, use] of variants.entries()) {
        use();
        const t0 = performance.now();
        await one();
        if (i >= 0) times[v]!.push(performance.now() - t0);
      }
      for (const [p, peer] of peers.entries()) {
        const ms = await peer.step();
        if (i >= 0) times[variants.length + p]!.push(ms);
      }
    }
  } finally {
    dispose();
  }
  return times.map(median);
}

const present = await availableBackends();
const wanted = flags.backends ? flags.backends.split(",") : present;
const gpuDesc = present.includes("webgpu") ? await webgpuAdapterDescription() : "";
const softwareGpu = /llvmpipe|lavapipe|swiftshader/i.test(gpuDesc);
console.log(
  `backends present: ${present.join(", ")}${gpuDesc ? ` (webgpu adapter: ${gpuDesc})` : ""}\n`,
);
const thr = (n: number) => `${n} thread${n > 1 ? "s" : ""}`;
const header = [
  "preset",
  "backend",
  "batch",
  "step ms",
  "tokens/s",
  "model GFLOP/s",
  "% of sgemm limit",
  "vs best PyTorch (interleaved)",
];
const rows: string[][] = [header];
const roundLines: string[] = [];
for (const preset of flags.presets) {
  const c = ModelConfigSchema.parse({ ...MODEL_PRESETS[preset], vocabSize });
  const B = BATCH[preset];
  const flops = trainStepFlops(c, B);
  const torchArgs = (threads: number) => [
    new URL("./torch_step.py", import.meta.url).pathname,
    "--config",
    JSON.stringify(c),
    "--batch",
    String(B),
    "--steps",
    String(flags.steps),
    "--threads",
    String(threads),
  ];
  // Debian's PyTorch (the second row): whole runs before the first round and after the last
  const secondSteps = new Map<number, number[]>();
  const runSecond = async () => {
    if (!second) return;
    for (const threads of [...new Set([1, navigator.hardwareConcurrency])]) {
      const out = await python(DEBIAN_PY, torchArgs(threads));
      if (!out) continue;
      const r = JSON.parse(out) as { stepsMs: number[] };
      secondSteps.set(threads, [...(secondSteps.get(threads) ?? []), ...r.stepsMs]);
    }
  };
  const measured = new Map<string, number[]>(); // backend → per-round median step
  const peerMs = new Map<string, number[]>(); // interleaved peer → per-round median step
  const ratios = new Map<string, number[]>(); // interleaved peer (or "best") → per-round ratio
  const bestMs: number[] = []; // per round: the faster interleaved peer's median step
  const limits: number[] = []; // per round: the sgemm limit (Deno's BLAS, 2048³)
  for (let round = 0; round < flags.rounds; round++) {
    if (round === 0) await runSecond();
    const limit = limitOf(await numpyLimit(), ffiLimit());
    if (limit) limits.push(limit);
    const thisRound: Array<[string, number]> = [];
    for (const backend of present.filter((b) => wanted.includes(b))) {
      // the pure-JS reference and software Vulkan take minutes per small step: tiny only
      if (preset !== "tiny" && (backend === "cpu" || (backend === "webgpu" && softwareGpu))) {
        continue;
      }
      await useBackend(backend);
      const simdHelpers = backend === "wasm" ? await startWasmHelpers() : 0;
      if (!fusedActive()) {
        thisRound.push([backend, (await stepTimes(c, B, flags.steps, [() => {}]))[0]!]);
        continue;
      }
      // the fused step, the composed tfjs ops (the path before the fused kernels; `medium`
      // skips them: minutes a round) and one PyTorch process per thread count, step by step
      const peers: TorchPeer[] = [];
      try {
        for (const threads of flags["torch-threads"]) {
          const peer = await startTorchPeer(TORCH_PY, torchArgs(threads));
          if (peer) peers.push(peer);
        }
        // the SIMD kernels on every core (the default), on one (the path before the helper
        // threads), the composed ops
        const named: Array<[string, () => void]> = [[backend, () => {
          setFusedEnabled(true);
          setSimdThreads(threads);
        }]];
        if (backend === "wasm" && simdHelpers > 0) {
          named.push([`${backend}, SIMD kernels on 1 thread`, () => setSimdThreads(1)]);
        }
        if (preset !== "medium") {
          named.push([`${backend}, composed tfjs ops`, () => {
            setSimdThreads(threads);
            setFusedEnabled(false);
          }]);
        }
        const variants = named.map(([, f]) => f);
        const ms = await stepTimes(c, B, flags.steps, variants, peers);
        for (const [i, [name]] of named.entries()) thisRound.push([name, ms[i]!]);
        if (backend !== "wasm" && thisRound.some(([n]) => n === "wasm")) continue;
        const ours = ms[0]!;
        const peerRound = peers.map((p, i) => [p, ms[variants.length + i]!] as const);
        for (const [p, t] of peerRound) {
          const name = `pytorch ${p.torch} cpu (${thr(p.threads)}), interleaved`;
          peerMs.set(name, [...(peerMs.get(name) ?? []), t]);
          ratios.set(name, [...(ratios.get(name) ?? []), t / ours]);
        }
        if (peerRound.length) {
          const best = Math.min(...peerRound.map(([, t]) => t));
          bestMs.push(best);
          ratios.set("best", [...(ratios.get("best") ?? []), best / ours]);
        }
      } finally {
        setFusedEnabled(true);
        setSimdThreads(threads);
        for (const p of peers) await p.close();
      }
    }
    if (round === flags.rounds - 1) await runSecond();
    for (const [name, ms] of thisRound) measured.set(name, [...(measured.get(name) ?? []), ms]);
  }
  // "vs best PyTorch": the median over rounds of the faster interleaved peer's median step
  const torchMs = bestMs.length ? median(bestMs) : null;
  const peak = limits.length ? median(limits) : NaN;
  if (limits.length) {
    roundLines.push(
      `${preset}: sgemm limit per round (the faster of numpy and Deno FFI) ${
        limits.map((l) => l.toFixed(1)).join(", ")
      } GFLOP/s; "% of sgemm limit" uses the median, ${peak.toFixed(1)}`,
    );
  }
  const add = (backend: string, ms: number) =>
    rows.push([
      preset,
      backend,
      String(B),
      ms.toFixed(1),
      Math.round((B * sequenceLength(c)) / (ms / 1000)).toString(),
      (flops / (ms / 1000) / 1e9).toFixed(2),
      `${((flops / (ms / 1000) / 1e9 / peak) * 100).toFixed(1)}%`,
      torchMs ? `${(torchMs / ms).toFixed(2)}x` : "n/a",
    ]);
  for (const [name, xs] of measured) add(name, median(xs));
  for (const [name, xs] of peerMs) add(name, median(xs));
  for (const [threads, xs] of secondSteps) {
    add(`pytorch ${second} cpu (${thr(threads)}), runs before/after`, median(xs));
  }
  const fmt = (xs: number[]) => xs.map((r) => `${r.toFixed(2)}x`).join(", ");
  for (const [name, xs] of ratios) {
    roundLines.push(
      `${preset}: wasm vs ${name === "best" ? "the faster PyTorch peer" : name} per round ${
        fmt(xs)
      }; median ${median(xs).toFixed(2)}x, faster in ${
        xs.filter((r) => r > 1).length
      } of ${xs.length}`,
    );
  }
  if (!ratios.size) roundLines.push(`${preset}: no interleaved PyTorch peer (${TORCH_PY})`);
}
const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((x, i) => x.padEnd(widths[i]!)).join("  "));
console.log(
  `\n${
    roundLines.join("\n")
  }\n\nmodel FLOPs per step: 3 × forward matmul FLOPs (lib/model/flops.ts); "vs best PyTorch" > 1 means faster than the faster of the interleaved PyTorch peers (${TORCH_PY}, ${
    flags["torch-threads"].map(thr).join(" and ")
  }; its median step per round, then the median over rounds); step ms is the median of --steps steps, then the median over rounds (Debian's rows pool every step)`,
);
