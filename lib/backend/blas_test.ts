import { assert, assertEquals, assertThrows } from "@std/assert";
import { loadBlas, openGemm } from "./blas.ts";

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

Deno.test({
  name:
    "blas: the Fortran interface (sgemm_, column-major, by reference) gives the C interface's results, every transpose and stride",
  ignore: !loadBlas(),
  fn: () => {
    const library = loadBlas()!.library;
    const c = openGemm(library, "buffer", "cblas"), f = openGemm(library, "buffer", "fortran");
    assertEquals([c.via, f.via], ["cblas", "fortran"]);
    const rand = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 2);
    // odd sizes, leading dimensions wider than the rows (views into wider matrices), alpha, beta
    const [m, n, k] = [7, 5, 3];
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
        const a = rand((ta ? k : m) * lda, 1), b = rand((tb ? n : k) * ldb, 2);
        const c0 = rand(m * ldc, 3), c1 = c0.slice();
        c.gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, -1.5, c0, ldc);
        f.gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, -1.5, c1, ldc);
        // against a plain sum, too (the padding of C untouched)
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < ldc; j++) {
            let want = rand(m * ldc, 3)[i * ldc + j]!;
            if (j < n) {
              let s = 0;
              for (let p = 0; p < k; p++) {
                s += a[ta ? p * lda + i : i * lda + p]! * b[tb ? j * ldb + p : p * ldb + j]!;
              }
              want = 0.5 * s - 1.5 * want;
            }
            assert(Math.abs(c0[i * ldc + j]! - want) < 1e-5, `cblas ${ta} ${tb} (${i}, ${j})`);
          }
        }
        assertEquals(c1, c0, `fortran vs cblas, transA ${ta}, transB ${tb}`);
      }
    }
    assertThrows(() => openGemm("libc.so.6", "buffer"), Error, "neither cblas_sgemm nor sgemm_");
  },
});

Deno.test({
  name:
    "loadBlas: OpenBLAS's spin timeout and OpenMP's wait policy default on, a user's setting stands",
  ignore: loadBlas() === null,
  async fn() {
    const script = `
      import { blasEnvSet, loadBlas } from ${
      JSON.stringify(new URL("./blas.ts", import.meta.url).href)
    };
      loadBlas();
      console.log(JSON.stringify({
        timeout: Deno.env.get("OPENBLAS_THREAD_TIMEOUT") ?? null,
        wait: Deno.env.get("OMP_WAIT_POLICY") ?? null,
        set: blasEnvSet(),
      }));`;
    const run = async (env: Record<string, string>) => {
      const base = Deno.env.toObject();
      delete base.OPENBLAS_THREAD_TIMEOUT;
      delete base.OMP_WAIT_POLICY;
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--no-check", script],
        clearEnv: true,
        env: { ...base, ...env },
        stdout: "piped",
      }).output();
      assert(out.success);
      return JSON.parse(new TextDecoder().decode(out.stdout).trim());
    };
    assertEquals(await run({}), {
      timeout: "20",
      wait: "passive",
      set: ["OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT"],
    });
    assertEquals(await run({ OPENBLAS_THREAD_TIMEOUT: "4", OMP_WAIT_POLICY: "active" }), {
      timeout: "4",
      wait: "active",
      set: [],
    });
  },
});
