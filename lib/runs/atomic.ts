/**
 * Files and folders written whole or not at all: the data goes to a temporary name beside the
 * target, is synced, then renamed over it (a rename within a folder is atomic on POSIX), so a
 * killed process never leaves a half-written file under a name a reader trusts.
 */
import { basename, dirname, join } from "node:path";

/** Prefix of temporary names; readers skip entries that start with a dot. */
export const TEMP_PREFIX = ".tmp-";

const tempName = (target: string) =>
  join(dirname(target), `${TEMP_PREFIX}${basename(target)}-${crypto.randomUUID().slice(0, 8)}`);

/** Write `data` to `path` and sync it to disk (not atomic on its own). */
export async function writeFileSynced(path: string, data: Uint8Array | string): Promise<void> {
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

/** Replace `path` by `data` atomically (temporary file, sync, rename). */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempName(path);
  try {
    await writeFileSynced(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Build a folder under a temporary name with `fill`, then move it to `path` (replacing an older
 * folder of that name). Nothing is left behind when `fill` throws.
 */
export async function writeDirAtomic(
  path: string,
  fill: (tmpDir: string) => Promise<void>,
): Promise<void> {
  const tmp = tempName(path);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
    await Deno.remove(path, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}
