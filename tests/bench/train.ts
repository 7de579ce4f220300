/**
 * `deno task bench:train`: training-step time of the `tiny` and `small` models on each tfjs
 * backend present, next to (1) the machine's single-precision matmul peak measured in the
 * same run (numpy when python3 has it, else our BLAS through FFI) and (2) PyTorch stepping
 * the same shapes with the same optimizer (tests/bench/torch_step.py) when it is installed.
 *
 *   --steps N (timed steps, default 5)   --presets tiny,small   --backends wasm,cpu,webgpu
 *   --rounds R (default 1): R rounds of PyTorch → tfjs → PyTorch; the table pools them and each
 *   round's own ratio against PyTorch is printed (the spread a single ratio hides on a shared
 *   machine)
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  availableBackends,
  fusedActive,
  setFusedEnabled,
  useBackend,
  webgpuAdapterDescription,
} from "../../lib/backend/mod.ts";
import { loadBlas } from "../../lib/backend/blas.ts";
import {
  MODEL_PRESETS,
  type ModelConfig,
  ModelConfigSchema,
  sequenceLength,
  trainStepFlops,
} from "../../lib/model/mod.ts";
import { buildSmallTokenizerJson } from "../../lib/tokenizer/small.ts";
import { syntheticStep } from "./synthetic_step.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string" },
    presets: { type: "string" },
    backends: { type: "string" },
    rounds: { type: "string" },
  },
});
const flags = z.strictObject({
  steps: z.coerce.number().int().min(1).default(5),
  presets: z.string().default("tiny,small"),
  backends: z.string().optional(),
  rounds: z.coerce.number().int().min(1).max(50).default(1),
}).parse(values);
const BATCH = { tiny: 8, small: 16 } as const;
const vocabSize = Object.keys((buildSmallTokenizerJson().model as { vocab: object }).vocab).length;

async function python(args: string[]): Promise<string | null> {
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      const out = await new Deno.Command(py, { args, stdout: "piped", stderr: "piped" }).output();
      if (out.success) return new TextDecoder().decode(out.stdout).trim();
    } catch { /* not there */ }
  }
  return null;
}

// 1. the machine's matmul peak (fp32, 2048³)
const numpyPeak = await python([
  "-c",
  `
import numpy as np, time
a = np.random.rand(2048, 2048).astype(np.float32); b = np.random.rand(2048, 2048).astype(np.float32); a @ b
t = time.perf_counter()
for _ in range(5): a @ b
print(2 * 2048**3 / ((time.perf_counter() - t) / 5) / 1e9)`,
]);
let ffiPeak: number | null = null;
const blas = loadBlas();
if (blas) {
  const n = 2048,
    a = new Float32Array(n * n).fill(1),
    b = new Float32Array(n * n).fill(1),
    c = new Float32Array(n * n);
  blas.sgemm(false, false, n, n, n, a, n, b, n, c);
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) blas.sgemm(false, false, n, n, n, a, n, b, n, c);
  ffiPeak = (2 * n ** 3) / ((performance.now() - t0) / 5 / 1000) / 1e9;
}
// the peak is the fastest of the two means (numpy's BLAS and the one Deno calls)
const peak = Math.max(Number(numpyPeak ?? NaN) || 0, ffiPeak ?? 0) || NaN;
console.log(
  `matmul peak (fp32 2048³): numpy ${
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

async function startTorchPeer(args: string[]): Promise<TorchPeer | null> {
  for (const py of ["/usr/bin/python3", "python3"]) {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(py, {
        args: [...args, "--serve"],
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      }).spawn();
    } catch {
      continue; // no such interpreter
    }
    const next = lineReader(child.stdout);
    const first = await next();
    if (first === null) { // no torch in this interpreter
      await child.stdin.close().catch(() => {});
      await child.status;
      continue;
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
  return null;
}

/**
 * Median step time of each variant, the variants' steps interleaved on one model (this shared
 * machine drifts by ±20 % within a minute: interleaving keeps the ratio between variants honest),
 * and, with a PyTorch peer, its steps interleaved with them too (its median last).
 */
async function stepTimes(
  c: ModelConfig,
  B: number,
  steps: number,
  variants: Array<() => void>,
  peer?: TorchPeer | null,
): Promise<number[]> {
  const { step: one, dispose } = syntheticStep(c, B);
  const times = variants.map(() => [] as number[]);
  const peerTimes: number[] = [];
  for (let i = -2; i < steps; i++) { // 2 warm-up rounds
    for (const [v, use] of variants.entries()) {
      use();
      const t0 = performance.now();
      await one();
      if (i >= 0) times[v]!.push(performance.now() - t0);
    }
    if (peer) {
      const ms = await peer.step();
      if (i >= 0) peerTimes.push(ms);
    }
  }
  dispose();
  return [...times, ...(peer ? [peerTimes] : [])].map(median);
}

const present = await availableBackends();
const wanted = flags.backends ? flags.backends.split(",") : present;
const gpuDesc = present.includes("webgpu") ? await webgpuAdapterDescription() : "";
const softwareGpu = /llvmpipe|lavapipe|swiftshader/i.test(gpuDesc);
console.log(
  `backends present: ${present.join(", ")}${gpuDesc ? ` (webgpu adapter: ${gpuDesc})` : ""}\n`,
);
const header = [
  "preset",
  "backend",
  "batch",
  "step ms",
  "tokens/s",
  "model GFLOP/s",
  "% of peak",
  "vs PyTorch",
];
const rows: string[][] = [header];
const roundLines: string[] = [];
for (const preset of flags.presets.split(",") as Array<keyof typeof MODEL_PRESETS>) {
  const c = ModelConfigSchema.parse({ ...MODEL_PRESETS[preset], vocabSize });
  const B = BATCH[preset];
  const flops = trainStepFlops(c, B);
  // PyTorch on one thread (wasm's own kernels are single-threaded; BLAS uses every core) and
  // on every core, run before and after the tfjs backends; the faster setting's median over both
  // runs is the peer a user would pick
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
  const torchSteps = new Map<number, { torch: string; steps: number[] }>();
  const runTorch = async (round: Map<number, number[]>) => {
    for (const threads of [1, navigator.hardwareConcurrency]) {
      const out = await python(torchArgs(threads));
      if (!out) continue;
      const r = JSON.parse(out) as { torch: string; stepsMs: number[] };
      const e = torchSteps.get(threads) ?? { torch: r.torch, steps: [] };
      e.steps.push(...r.stepsMs);
      torchSteps.set(threads, e);
      round.set(threads, [...(round.get(threads) ?? []), ...r.stepsMs]);
    }
  };
  /** The faster PyTorch setting's median step, from per-thread-count step lists. */
  const bestTorch = (steps: Iterable<number[]>) => {
    const medians = [...steps].map(median);
    return medians.length ? Math.min(...medians) : null;
  };
  const measured = new Map<string, number[]>(); // backend → per-round median step
  const ratios: number[] = []; // per round: PyTorch's best / the default backend's step
  const interleaved: number[] = []; // per round: the interleaved PyTorch peer's median step
  let interleavedName = "";
  for (let round = 0; round < flags.rounds; round++) {
    const torchRound = new Map<number, number[]>();
    let interleavedRound: number | null = null;
    await runTorch(torchRound);
    const thisRound: Array<[string, number]> = [];
    for (const backend of present.filter((b) => wanted.includes(b))) {
      // the pure-JS reference and software Vulkan take minutes per small step: tiny only
      if (preset === "small" && (backend === "cpu" || (backend === "webgpu" && softwareGpu))) {
        continue;
      }
      await useBackend(backend);
      if (fusedActive()) {
        // the reference: the same step from tfjs's primitive ops (what wasm ran before the fused
        // kernels), interleaved step by step with the fused one, and PyTorch's step on one thread
        // interleaved with both (one thread: its faster setting for `small` here, and no OpenMP
        // team spinning against our BLAS threads between its steps)
        const peer = torchRound.size ? await startTorchPeer(torchArgs(1)) : null;
        try {
          const [fused, composed, torch] = await stepTimes(c, B, flags.steps, [
            () => setFusedEnabled(true),
            () => setFusedEnabled(false),
          ], peer);
          thisRound.push([backend, fused!], [`${backend}, composed tfjs ops`, composed!]);
          if (peer && torch) {
            interleavedName = `pytorch ${peer.torch} cpu (${peer.threads} thread${
              peer.threads > 1 ? "s" : ""
            }), interleaved with ${backend}`;
            interleaved.push(torch);
            interleavedRound = torch;
          }
        } finally {
          setFusedEnabled(true);
          await peer?.close();
        }
      } else {
        thisRound.push([backend, (await stepTimes(c, B, flags.steps, [() => {}]))[0]!]);
      }
    }
    await runTorch(torchRound);
    for (const [name, ms] of thisRound) measured.set(name, [...(measured.get(name) ?? []), ms]);
    // the round's peer: PyTorch interleaved step by step when it ran, else its runs around
    const torchMs = interleavedRound ?? bestTorch(torchRound.values());
    const main = thisRound.find(([name]) => name === "wasm") ?? thisRound[0];
    if (torchMs && main) ratios.push(torchMs / main[1]);
  }
  const torchRows: Array<readonly [string, number]> = [...torchSteps].map(([threads, r]) =>
    [
      `pytorch ${r.torch} cpu (${threads} thread${threads > 1 ? "s" : ""})`,
      median(r.steps),
    ] as const
  );
  // the peer in the "vs PyTorch" column: the interleaved PyTorch steps where they ran (the same
  // minutes as the tfjs steps), else the faster of PyTorch's runs before and after
  const torchMs = interleaved.length
    ? median(interleaved)
    : bestTorch([...torchSteps.values()].map((r) => r.steps));
  if (interleaved.length) torchRows.push([interleavedName, median(interleaved)]);
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
  for (const [name, ms] of [...measured].map(([n, xs]) => [n, median(xs)] as const)) add(name, ms);
  for (const [name, ms] of torchRows) add(name, ms);
  if (flags.rounds > 1 && ratios.length) {
    const sorted = [...ratios].sort((a, b) => a - b);
    roundLines.push(
      `${preset}: vs PyTorch per round ${ratios.map((r) => `${r.toFixed(2)}x`).join(", ")}; ` +
        `median ${median(sorted).toFixed(2)}x, faster in ${
          ratios.filter((r) => r > 1).length
        } of ${ratios.length}`,
    );
  }
}
const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((x, i) => x.padEnd(widths[i]!)).join("  "));
console.log(
  `${
    roundLines.length ? `\n${roundLines.join("\n")}\n` : ""
  }\nmodel FLOPs per step: 3 × forward matmul FLOPs (lib/model/flops.ts); "vs PyTorch" > 1 means faster than PyTorch (on one thread, its steps interleaved with the wasm steps, when both ran; else the faster of its 1-thread and all-core runs before and after); step ms is the median of --steps steps (with --rounds, the median of the rounds' medians; PyTorch pools every step)`,
);
