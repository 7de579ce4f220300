import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  estimateTrainMemoryMB,
  jobLimitsFromEnv,
  parameterCount,
  resolveJobModel,
} from "./limits.ts";
import { useBackend } from "../backend/mod.ts";
import { SmallVLM } from "../model/mod.ts";

Deno.test("job limits: defaults, env overrides in their units, bad values named", () => {
  const d = jobLimitsFromEnv(() => undefined);
  assertEquals([d.memoryMB, d.killGraceMs, d.stderrBytes, d.maxSteps], [4096, 10_000, 8192, 1e6]);
  const env: Record<string, string> = { DVSFT_JOB_MEMORY_MB: "512", DVSFT_JOB_CANCEL_GRACE_S: "2" };
  const l = jobLimitsFromEnv((n) => env[n]);
  assertEquals([l.memoryMB, l.cancelGraceMs], [512, 2000]);
  assertThrows(
    () => jobLimitsFromEnv((n) => (n === "DVSFT_MAX_STEPS" ? "lots" : undefined)),
    RangeError,
    "DVSFT_MAX_STEPS must be a positive number, got 'lots'",
  );
});

Deno.test("the parameter count matches the model's count; memory grows with the batch", async () => {
  await useBackend("wasm");
  for (const model of ["tiny", "small"] as const) {
    const c = resolveJobModel({ model, modelOverrides: {} });
    const m = new SmallVLM(c);
    try {
      const est = parameterCount(c);
      assert(
        Math.abs(est - m.parameterCount) / m.parameterCount < 0.05,
        `${model}: ${est} vs ${m.parameterCount}`,
      );
    } finally {
      m.dispose();
    }
    assert(estimateTrainMemoryMB(c, 64) > estimateTrainMemoryMB(c, 8));
  }
});
