import { isAbsolute, relative, resolve } from "node:path";

/** A path that leaves its root (400), or names nothing (404). */
export class PathError extends Error {
  override name = "PathError";
  constructor(message: string, readonly notFound = false) {
    super(message);
  }
}

const isInside = (base: string, p: string) => {
  const r = relative(base, p);
  return r !== "" && !r.startsWith("..") && !isAbsolute(r);
};

/**
 * Resolve `rel` inside `root`: absolute paths, `..` and symlinks that lead out are refused.
 * Returns the real path of an existing file or folder.
 */
export async function resolveInside(root: string, rel: string): Promise<string> {
  if (isAbsolute(rel) || rel.includes("\0")) {
    throw new PathError(`Path '${rel}' must be relative to its folder`);
  }
  const base = await Deno.realPath(root).catch(() => {
    throw new PathError(`Folder '${root}' does not exist`, true);
  });
  const target = resolve(base, rel);
  if (!isInside(base, target)) throw new PathError(`Path '${rel}' leaves its folder`);
  let real: string;
  try {
    real = await Deno.realPath(target);
  } catch {
    throw new PathError(`No file '${rel}'`, true);
  }
  if (!isInside(base, real)) throw new PathError(`Path '${rel}' leads out of its folder (symlink)`);
  return real;
}
