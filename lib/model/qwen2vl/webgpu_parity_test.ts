/**
 * The Qwen2-VL / Qwen2.5-VL parity and LoRA tests again on `webgpu` (software Vulkan on a CPU
 * machine: .ci/run installs Mesa's lavapipe), in a child test process with
 * DVSFT_TEST_BACKEND=webgpu: the same fixtures, the same tolerances.
 */
import { assert } from "@std/assert";

Deno.test("qwen2vl parity and LoRA tests pass on webgpu", async () => {
  // the Vulkan loader wants a runtime folder (lib/backend does the same)
  if (!Deno.env.get("XDG_RUNTIME_DIR")) {
    const dir = await Deno.makeTempDir({ prefix: "dvsft-xdg-" });
    await Deno.chmod(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  }
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) throw new Error("navigator.gpu is missing: this Deno has no WebGPU");
  assert(
    await gpu.requestAdapter(),
    "no WebGPU adapter: install a Vulkan driver (apt-get install mesa-vulkan-drivers libvulkan1)",
  );
  const dir = new URL(".", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", `${dir}qwen2vl_test.ts`, `${dir}lora_test.ts`],
    env: {
      DVSFT_TEST_BACKEND: "webgpu",
      NO_COLOR: "1",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR")!,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, text.slice(-3000));
  const summary = /ok \| (\d+) passed \| 0 failed/.exec(text);
  assert(summary && Number(summary[1]) >= 20, text.slice(-500));
});
