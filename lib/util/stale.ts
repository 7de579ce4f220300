import { join } from "node:path";

/**
 * Remove the entries of `dir` whose names contain `marker` and that are older than `maxAgeMs`:
 * half-written leftovers of killed runs, old enough that no live process still writes them.
 */
export async function removeStale(dir: string, marker: string, maxAgeMs: number): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.includes(marker)) continue;
    const st = await Deno.stat(join(dir, e.name)).catch(() => null);
    if (st?.mtime && Date.now() - st.mtime.getTime() > maxAgeMs) {
      await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
    }
  }
}
