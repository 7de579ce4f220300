/** What every command-line edge shares: `--shard i/N`, and running `main` as a process. */
import { z } from "zod";

/** `--shard i/N`: this process takes every N-th item, starting at i. */
export const ShardSchema = z.string().regex(/^\d+\/\d+$/, "expected i/N").transform((s) => {
  const [i, n] = s.split("/").map(Number) as [number, number];
  if (!(n >= 1 && i < n)) throw new RangeError(`--shard ${s}: need 0 <= i < N`);
  return { i, n };
});

/**
 * What a command prints for an error: one `error: …` line, or one per issue of a validation
 * error (`error: steps: Too small: expected number to be >=1`) instead of zod's JSON dump.
 */
export function errorLines(e: unknown): string[] {
  if (e instanceof z.ZodError) {
    return e.issues.map((i) =>
      `error: ${i.path.length ? `${i.path.join(".")}: ` : ""}${i.message}`
    );
  }
  // parseArgs' unknown flags and other errors of the edge: their message is already a sentence
  return [`error: ${e instanceof Error ? e.message : String(e)}`];
}

/** Run `main` with the process arguments and exit with its code; errors print one line (exit 1). */
export async function runMain(main: (args: string[]) => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (Deno.env.get("DVSFT_DEBUG")) console.error(e);
    console.error(errorLines(e).join("\n"));
    Deno.exit(1);
  }
}
