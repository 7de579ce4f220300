import { assert, assertEquals } from "@std/assert";
import { loadBlas } from "../lib/backend/blas.ts";

Deno.test({
  name: "bench:profile --shapes: the step's sgemm calls by shape, timed alone, and their bound",
  ignore: !loadBlas(), // no BLAS: the fused path and its sgemms are off
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tests/bench/step_profile.ts", "--preset", "tiny", "--batch", "4"]
        .concat(["--steps", "2", "--top", "50", "--shapes"]),
      cwd: new URL("..", import.meta.url),
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert(out.success, new TextDecoder().decode(out.stderr));
    const total = text.match(/all (\d+) shapes: ([\d.]+) ms a step in the step, ([\d.]+) ms alone/);
    assert(total, text);
    const [shapes, inStep, alone] = total!.slice(1).map(Number) as [number, number, number];
    // one row per shape (--top 50 lists them all), their step times summing to the total
    const rows = [...text.matchAll(/^([NT]) ([NT]) (\d+) (\d+) (\d+) +(\d) +(\d+) +([\d.]+) /gm)];
    assertEquals(rows.length, shapes, text);
    const sum = rows.reduce((s, r) => s + Number(r[8]), 0);
    assert(Math.abs(sum - inStep) <= 0.1 * shapes, `rows ${sum} vs total ${inStep}`);
    assert(alone > 0 && inStep > 0, text);
    // the bound: model FLOPs over the products' time alone, as a share of the measured limit
    const bound = text.match(
      /≤ ([\d.]+) model GFLOP\/s, ≤ ([\d.]+) % of the limit \(this step: ([\d.]+) GFLOP\/s/,
    );
    assert(bound, text);
    const [most, , now] = bound!.slice(1).map(Number) as [number, number, number];
    assert(now <= most * 1.05, `the step (${now} GFLOP/s) beat its own products alone (${most})`);
  },
});
