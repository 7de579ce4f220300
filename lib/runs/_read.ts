/** Reading run files back: JSON and JSON-lines files checked against their schemas. */
import type { z } from "zod";

/** Raised when a run file does not parse; names the file and line. */
export class RunFileError extends Error {
  override name = "RunFileError";
}

export async function readJsonLines<T>(path: string, schema: z.ZodType<T>): Promise<T[] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const out: T[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // a process killed mid-write leaves at most a torn last line
      if (i >= lines.length - 2) break;
      throw new RunFileError(`Cannot read '${path}': line ${i + 1} is not JSON`);
    }
    const r = schema.safeParse(value);
    if (!r.success) {
      throw new RunFileError(`Cannot read '${path}': line ${i + 1}: ${r.error.issues[0]?.message}`);
    }
    out.push(r.data);
  }
  return out;
}

/** A JSON file checked against `schema`; null when the file does not exist. */
export async function readJsonFile<T>(path: string, schema: z.ZodType<T>): Promise<T | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RunFileError(`Cannot read '${path}': not JSON`);
  }
  const r = schema.safeParse(value);
  if (!r.success) throw new RunFileError(`Cannot read '${path}': ${r.error.issues[0]?.message}`);
  return r.data;
}
