/** What every command-line edge shares: `--shard i/N`, and running `main` as a process. */
import { z } from "zod";

/** `--shard i/N`: this process takes every N-th item, starting at i. */
export const ShardSchema = z.string().regex(/^\d+\/\d+$/, "expected i/N").transform((s) => {
  const [i, n] = s.split("/").map(Number) as [number, number];
  if (!(n >= 1 && i < n)) throw new RangeError(`--shard ${s}: need 0 <= i < N`);
  return { i, n };
});

/** Run `main` with the process arguments and exit with its code; errors print one line (exit 1). */
export async function runMain(main: (args: string[]) => Promise<number>): Promise<never> {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (Deno.env.get("DVSFT_DEBUG")) console.error(e);
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
