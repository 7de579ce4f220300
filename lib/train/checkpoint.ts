/**
 * Checkpoints: weights, optimizer state, config, step and data position, written atomically
 * (a temporary folder renamed into place, then `latest.json` replaced by rename), with
 * SHA-256 of each binary so nothing half-written is read back as good.
 */
import { join } from "node:path";
import { z } from "zod";
import type { tf } from "../backend/mod.ts";
import { sha256Hex } from "../util/hash.ts";

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

async function writeFileSynced(path: string, data: Uint8Array | string): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let written = 0;
    while (written < bytes.length) written += await f.write(bytes.subarray(written));
    await f.sync();
  } finally {
    f.close();
  }
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
  const name = `step-${String(s.step).padStart(6, "0")}`;
  const tmp = join(dir, `.tmp-${name}-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(tmp);
  try {
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
    const final = join(dir, name);
    await Deno.remove(final, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, final);
    const latestTmp = join(dir, `.latest-${crypto.randomUUID().slice(0, 8)}.json`);
    await writeFileSynced(latestTmp, JSON.stringify({ checkpoint: name, step: s.step }) + "\n");
    await Deno.rename(latestTmp, join(dir, "latest.json"));
    // keep the newest `keep` checkpoints
    const all: string[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory && /^step-\d+$/.test(e.name)) all.push(e.name);
    }
    for (const old of all.sort().slice(0, Math.max(0, all.length - keep))) {
      await Deno.remove(join(dir, old), { recursive: true });
    }
    return final;
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** The newest complete checkpoint's path, or null when there is none. */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  try {
    const latest = z.object({ checkpoint: z.string().regex(/^step-\d+$/) }).parse(
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
  const out: string[] = [];
  for await (const e of Deno.readDir(join(runDir, "checkpoints"))) {
    if (e.isDirectory && /^step-\d+$/.test(e.name)) out.push(join(runDir, "checkpoints", e.name));
  }
  return out.sort();
}
