/** A run's config file and the listing of its files (the artifacts a job exposes). */
import { join, relative } from "node:path";
import { resolveInside } from "../util/paths.ts";
import { writeFileAtomic } from "./atomic.ts";
import { runPaths } from "./layout.ts";

/** Write the run's resolved config (`config.json`). */
export async function writeRunConfig(runDir: string, config: unknown): Promise<void> {
  await writeFileAtomic(runPaths(runDir).config, JSON.stringify(config, null, 2) + "\n");
}

/** The run's resolved config, or null when it has none. */
export async function readRunConfig(runDir: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await Deno.readTextFile(runPaths(runDir).config));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

export interface RunFile {
  /** Relative to the run folder, `/`-separated. */
  path: string;
  bytes: number;
}

/** Every file of a run folder (temporary entries skipped), sorted by path. */
export async function listRunFiles(runDir: string): Promise<RunFile[]> {
  const out: RunFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".")) continue; // temporary checkpoint folders and files
      const p = join(dir, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.isFile) out.push({ path: relative(runDir, p), bytes: (await Deno.stat(p)).size });
    }
  };
  await walk(runDir).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * The real path of a file a client names inside a run folder (already percent-decoded):
 * `..`, absolute paths and symlinks out are refused with a PathError, checked at each use.
 */
export function runFilePath(runDir: string, rel: string): Promise<string> {
  return resolveInside(runDir, rel);
}
