/**
 * A Hugging Face checkpoint folder: `config.json` plus weights in `model.safetensors`, or sharded
 * as `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json` (`weight_map`: tensor
 * name → shard file). Tensors are read one at a time from whichever shard holds them.
 */
import { z } from "zod";
import { join } from "node:path";
import {
  type LoadedTensor,
  SafetensorsError,
  SafetensorsFile,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors.ts";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

const IndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string().regex(/^[^/\\]+\.safetensors$/)),
});

/** A config.json larger than this is refused (real ones are a few kB). */
const MAX_CONFIG_BYTES = 1024 * 1024;

/** Read and parse a folder's `config.json` (validated by the caller's schema). */
export async function readConfigJson(dir: string): Promise<unknown> {
  const path = join(dir, "config.json");
  const stat = await Deno.stat(path).catch(() => null);
  if (!stat) throw new SafetensorsError(`Cannot load checkpoint '${dir}': no config.json`);
  if (stat.size > MAX_CONFIG_BYTES) {
    throw new SafetensorsError(
      `Cannot load checkpoint '${dir}': config.json is ${stat.size} bytes`,
    );
  }
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new SafetensorsError(`Cannot load checkpoint '${dir}': config.json is not JSON (${e})`);
  }
}

/**
 * The weights of a checkpoint folder, single-file or sharded.
 *
 * @example
 * ```ts
 * const ckpt = await Checkpoint.open("models/qwen2-vl-tiny");
 * try {
 *   for (const name of ckpt.names()) console.log(name, (await ckpt.read(name)).shape);
 * } finally {
 *   ckpt.close();
 * }
 * ```
 */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    const indexPath = join(dir, INDEX_FILE);
    const single = join(dir, SINGLE_FILE);
    if (await Deno.stat(single).catch(() => null)) {
      const f = await SafetensorsFile.open(single);
      return new Checkpoint(dir, [f], new Map(f.names().map((n) => [n, f])));
    }
    const indexStat = await Deno.stat(indexPath).catch(() => null);
    if (!indexStat) {
      throw new SafetensorsError(
        `Cannot load checkpoint '${dir}': neither ${SINGLE_FILE} nor ${INDEX_FILE} is there`,
      );
    }
    if (indexStat.size > 64 * 1024 * 1024) {
      throw new SafetensorsError(
        `Cannot load checkpoint '${dir}': ${INDEX_FILE} is ${indexStat.size} bytes`,
      );
    }
    let index: z.infer<typeof IndexSchema>;
    try {
      index = IndexSchema.parse(JSON.parse(await Deno.readTextFile(indexPath)));
    } catch (e) {
      throw new SafetensorsError(`Cannot load checkpoint '${dir}': bad ${INDEX_FILE} (${e})`);
    }
    const files: SafetensorsFile[] = [];
    const byShard = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const shard of new Set(Object.values(index.weight_map))) {
        const f = await SafetensorsFile.open(join(dir, shard));
        files.push(f);
        byShard.set(shard, f);
      }
      for (const [name, shard] of Object.entries(index.weight_map)) {
        const f = byShard.get(shard)!;
        if (!f.tensors.has(name)) {
          throw new SafetensorsError(
            `Cannot load checkpoint '${dir}': ${INDEX_FILE} puts '${name}' in '${shard}', which lacks it`,
          );
        }
        where.set(name, f);
      }
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
    return new Checkpoint(dir, files, where);
  }

  /** Every tensor name, sorted. */
  names(): string[] {
    return [...this.where.keys()].sort();
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.where.get(name);
    if (!f) throw new RangeError(`Cannot read tensor '${name}': not in checkpoint '${this.dir}'`);
    return f.tensors.get(name)!;
  }

  read(name: string): Promise<LoadedTensor> {
    const f = this.where.get(name);
    if (!f) throw new RangeError(`Cannot read tensor '${name}': not in checkpoint '${this.dir}'`);
    return f.read(name);
  }

  /** Number of shard files. */
  get shardCount(): number {
    return this.files.length;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/** Options of {@linkcode writeCheckpointWeights}. */
export interface WriteCheckpointOptions {
  /** Start a new shard once one would exceed this many bytes; one file when everything fits.
   * @default 5 GiB (transformers' default `max_shard_size`) */
  maxShardBytes?: number;
  /** `__metadata__` of every file. @default { format: "pt" } (what transformers writes) */
  metadata?: Record<string, string>;
}

/**
 * Write weights into `dir` the way transformers' `save_pretrained` lays them out: one
 *  `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` plus the index. Each tensor
 * is encoded (f32 → its dtype) only when its bytes are written.
 */
export async function writeCheckpointWeights(
  dir: string,
  tensors: readonly TensorToWrite[],
  options: WriteCheckpointOptions = {},
): Promise<{ files: string[] }> {
  const { maxShardBytes = 5 * 1024 ** 3, metadata = { format: "pt" } } = options;
  if (!(maxShardBytes > 0)) {
    throw new RangeError(
      `Cannot write checkpoint: maxShardBytes must be positive, got ${maxShardBytes}`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const bytes = (t: TensorToWrite) => t.data.length * (t.dtype === "F32" || !t.dtype ? 4 : 2);
  const shards: TensorToWrite[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const n = bytes(t);
    if (size > 0 && size + n > maxShardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(t);
    size += n;
  }
  // a stale layout of the other kind would shadow or confuse the new one
  if (shards.length === 1) {
    await writeSafetensors(join(dir, SINGLE_FILE), shards[0]!, metadata);
    await Deno.remove(join(dir, INDEX_FILE)).catch(() => {});
    return { files: [SINGLE_FILE] };
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < shards.length; i++) {
    const name = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
    await writeSafetensors(join(dir, name), shards[i]!, metadata);
    files.push(name);
    for (const t of shards[i]!) {
      weightMap[t.name] = name;
      total += bytes(t);
    }
  }
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  const tmp = join(dir, `${INDEX_FILE}.tmp-${crypto.randomUUID()}`);
  await Deno.writeTextFile(tmp, JSON.stringify(index, null, 2) + "\n");
  await Deno.rename(tmp, join(dir, INDEX_FILE));
  await Deno.remove(join(dir, SINGLE_FILE)).catch(() => {});
  return { files: [...files, INDEX_FILE] };
}
