/**
 * Checkpoints: weights, optimizer state, config, step and data position, written atomically
 * (a temporary folder renamed into place, then `latest.json` replaced by rename), with
 * SHA-256 of each binary so nothing half-written is read back as good.
 */
import { join } from "node:path";
import { z } from "zod";
import { tf } from "../backend/mod.ts";
import { sha256Hex } from "../util/hash.ts";
import { writeDirAtomic, writeFileAtomic, writeFileSynced } from "./atomic.ts";
import { CHECKPOINT_DIR_PATTERN, runPaths, stepName } from "./layout.ts";

const TensorEntrySchema = z.strictObject({
  name: z.string(),
  shape: z.array(z.number().int()),
  offset: z.number().int(),
});

export const CheckpointManifestSchema = z.strictObject({
  format: z.literal("dvsft-checkpoint-1"),
  step: z.number().int().min(0),
  /** Index of the next training sample (the data loader's position). */
  dataPosition: z.number().int().min(0),
  adamT: z.number().int().min(0),
  config: z.unknown(),
  weights: z.array(TensorEntrySchema),
  files: z.record(z.string(), z.string()),
});
export type CheckpointManifest = z.infer<typeof CheckpointManifestSchema>;

/** Raised when a checkpoint is missing, corrupt or does not match the model. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

// async reads: webgpu's dataSync needs a canvas that Deno does not have
async function pack(
  tensors: Array<[string, tf.Tensor]>,
): Promise<{ bytes: Uint8Array; entries: z.infer<typeof TensorEntrySchema>[] }> {
  const total = tensors.reduce((s, [, t]) => s + t.size, 0);
  const buf = new Float32Array(total);
  const entries = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    buf.set((await t.data()) as Float32Array, offset);
    entries.push({ name, shape: t.shape, offset });
    offset += t.size;
  }
  return { bytes: new Uint8Array(buf.buffer), entries };
}

export interface CheckpointState {
  step: number;
  dataPosition: number;
  adamT: number;
  config: unknown;
  weights: Map<string, tf.Variable>;
  m: Map<string, tf.Variable>;
  v: Map<string, tf.Variable>;
}

/** Write `step-NNNNNN/` under `dir` and point `latest.json` at it. Returns its path. */
export async function saveCheckpoint(dir: string, s: CheckpointState, keep = 3): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const name = stepName(s.step);
  const final = join(dir, name);
  await writeDirAtomic(final, async (tmp) => {
    const w = await pack([...s.weights]);
    const opt = await pack([
      ...[...s.m].map(([n, t]) => [`${n}.m`, t] as [string, tf.Tensor]),
      ...[...s.v].map(([n, t]) => [`${n}.v`, t] as [string, tf.Tensor]),
    ]);
    await writeFileSynced(join(tmp, "weights.bin"), w.bytes);
    await writeFileSynced(join(tmp, "optimizer.bin"), opt.bytes);
    const manifest: CheckpointManifest = {
      format: "dvsft-checkpoint-1",
      step: s.step,
      dataPosition: s.dataPosition,
      adamT: s.adamT,
      config: s.config,
      weights: w.entries,
      files: {
        "weights.bin": await sha256Hex(w.bytes),
        "optimizer.bin": await sha256Hex(opt.bytes),
      },
    };
    await writeFileSynced(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 1));
  });
  await writeFileAtomic(
    join(dir, "latest.json"),
    JSON.stringify({ checkpoint: name, step: s.step }) + "\n",
  );
  // keep the newest `keep` checkpoints
  const all: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && CHECKPOINT_DIR_PATTERN.test(e.name)) all.push(e.name);
  }
  for (const old of all.sort().slice(0, Math.max(0, all.length - keep))) {
    await Deno.remove(join(dir, old), { recursive: true });
  }
  return final;
}

/** The newest complete checkpoint's path, or null when there is none. */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  try {
    const latest = z.object({ checkpoint: z.string().regex(CHECKPOINT_DIR_PATTERN) }).parse(
      JSON.parse(await Deno.readTextFile(join(dir, "latest.json"))),
    );
    return join(dir, latest.checkpoint);
  } catch {
    return null;
  }
}

export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  weights: Map<string, Float32Array>;
  optimizer: Map<string, Float32Array>;
}

/** Read and verify a checkpoint folder. */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  let manifest: CheckpointManifest;
  try {
    manifest = CheckpointManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(join(path, "manifest.json"))),
    );
  } catch (e) {
    throw new CheckpointError(
      `Cannot load checkpoint '${path}': bad manifest: ${(e as Error).message}`,
    );
  }
  const read = async (file: string) => {
    const bytes = await Deno.readFile(join(path, file));
    if ((await sha256Hex(bytes)) !== manifest.files[file]) {
      throw new CheckpointError(
        `Cannot load checkpoint '${path}': ${file} does not match its checksum`,
      );
    }
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  };
  const wbuf = await read("weights.bin");
  const obuf = await read("optimizer.bin");
  const weights = new Map<string, Float32Array>();
  const optimizer = new Map<string, Float32Array>();
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  let o = 0;
  for (const e of manifest.weights) {
    weights.set(e.name, wbuf.slice(e.offset, e.offset + size(e.shape)));
  }
  for (const suffix of ["m", "v"]) {
    for (const e of manifest.weights) {
      const n = size(e.shape);
      optimizer.set(`${e.name}.${suffix}`, obuf.slice(o, o + n));
      o += n;
    }
  }
  return { manifest, weights, optimizer };
}

/** A run's complete checkpoint folders, oldest first. */
export async function listCheckpoints(runDir: string): Promise<string[]> {
  const dir = runPaths(runDir).checkpoints;
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && CHECKPOINT_DIR_PATTERN.test(e.name)) out.push(join(dir, e.name));
  }
  return out.sort();
}

/** Whether a run folder has a complete checkpoint. */
export async function hasCheckpoint(runDir: string): Promise<boolean> {
  return (await latestCheckpoint(runPaths(runDir).checkpoints)) !== null;
}

/**
 * The checkpoint a path names: a run folder (its latest checkpoint), a checkpoints folder (its
 * latest) or a checkpoint folder itself.
 */
export async function resolveCheckpoint(path: string): Promise<string> {
  return (await latestCheckpoint(runPaths(path).checkpoints)) ?? (await latestCheckpoint(path)) ??
    path;
}

/**
 * Assign a checkpoint's arrays to variables of the same names and sizes (weights, or an
 * optimizer's moments with `suffix` ".m"/".v"); a missing or mis-sized array is an error naming it.
 */
export function restoreVariables(
  target: Map<string, tf.Variable>,
  values: Map<string, Float32Array>,
  source: string,
  suffix = "",
): void {
  for (const [name, w] of target) {
    const v = values.get(`${name}${suffix}`);
    if (!v || v.length !== w.size) {
      throw new CheckpointError(
        `Checkpoint ${source} does not match the model at '${name}${suffix}'`,
      );
    }
    w.assign(tf.tensor(v, w.shape));
  }
}
