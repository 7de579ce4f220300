import { assert, assertEquals } from "@std/assert";
import { loadBlas } from "./blas.ts";

Deno.test({
  name:
    "blas: workers of one process calling the threaded sgemm at once neither deadlock nor share a result",
  ignore: !loadBlas(),
  fn: async () => {
    // OpenBLAS 0.3.21 deadlocks here without the process-wide mutex (seen: `deno test
    // --parallel` stuck for an hour in exec_blas); a child process keeps a hang from hanging us
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./testdata/blas_workers.ts", import.meta.url).pathname,
        "4",
        "300",
        "96",
      ],
      env: { OPENBLAS_NUM_THREADS: "2" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    assert(out.success, `the workers did not finish: ${out.signal ?? out.code} (deadlock?)`);
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.length, 4);
    for (const l of lines) assertEquals(l.err, 0);
    // every worker took the same mutex
    assert(lines[0].mutex, "no mutex published");
    assertEquals(new Set(lines.map((l) => l.mutex)).size, 1);
  },
});
