/**
 * Run by `deno task test` before the tests: installs the system packages the tests cannot do
 * without, so the README's test command passes on a bare machine (Node and npm only): Debian's
 * chromium for the browser tests (no registry package ships a browser that runs here) and Mesa's
 * software Vulkan (lavapipe) for the WebGPU kernel and parity tests.
 * Optional engines (native tesseract, poppler, OpenBLAS) are not installed: tests that compare
 * against them run when they are present (.ci/run installs them).
 */
const NEEDED = [
  { pkgs: ["chromium"], present: ["/usr/bin/chromium", "/usr/bin/chromium-browser"] },
  {
    pkgs: ["mesa-vulkan-drivers", "libvulkan1"],
    present: [
      "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
      "/usr/share/vulkan/icd.d/lvp_icd.json",
    ],
  },
];

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

const missing: string[] = [];
for (const n of NEEDED) {
  const given = n.pkgs[0] === "chromium" ? Deno.env.get("CHROMIUM_PATH") : undefined;
  const found = given
    ? await exists(given)
    : (await Promise.all(n.present.map(exists))).some(Boolean);
  if (!found) missing.push(...n.pkgs);
}
if (missing.length) {
  const apt = await exists("/usr/bin/apt-get");
  if (Deno.uid() !== 0 || !apt) {
    console.error(
      `test setup: missing ${missing.join(", ")} and cannot install it here (${
        apt ? "not root" : "no apt-get"
      }): run \`sudo apt-get install -y ${missing.join(" ")}\`; the tests that need it will fail`,
    );
  } else {
    console.error(`test setup: installing ${missing.join(", ")} (apt-get)`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const run = (args: string[]) =>
      new Deno.Command("apt-get", { args, env, stdout: "null", stderr: "inherit" }).output();
    const update = await run(["update", "-qq"]);
    const install = update.success
      ? await run(["install", "-y", "-qq", "--no-install-recommends", ...missing])
      : update;
    if (!install.success) console.error(`test setup: apt-get failed (exit ${install.code})`);
  }
}
