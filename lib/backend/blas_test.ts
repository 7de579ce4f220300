import { assert, assertEquals } from "@std/assert";
import { loadBlas } from "./blas.ts";

Deno.test({
  name:
    "blas: threaded sgemm in workers while the process forks, and workers at once: no deadlock, exact results",
  ignore: !loadBlas(),
  fn: async () => {
    // without the fork guard OpenBLAS 0.3.21 hangs here within seconds (seen in CI: `deno test
    // --parallel` stuck in exec_blas_async_wait once the browser test had started chromium); the
    // child process keeps a hang from hanging the suite
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./testdata/blas_workers.ts", import.meta.url).pathname,
        "3",
        "4",
        "192",
      ],
      env: { OPENBLAS_NUM_THREADS: "2" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    const err = new TextDecoder().decode(out.stderr).slice(-500);
    assert(out.success, `did not finish: ${out.signal ?? out.code} (deadlock?) ${err}`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(r.workers.length, 3);
    assert(r.forks >= 20, `only ${r.forks} forks`);
    for (const w of r.workers) {
      assert(w.calls > 10, `${w.calls} calls`);
      assertEquals(w.err, 0);
    }
  },
});
