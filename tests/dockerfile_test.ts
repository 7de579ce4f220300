/** No Docker engine runs here: the Dockerfile is linted (dockerfilelint) and checked for the product's rules. */
import { assert, assertEquals } from "@std/assert";
import { run } from "dockerfilelint";

const text = await Deno.readTextFile(new URL("../Dockerfile", import.meta.url));

Deno.test("Dockerfile: lint-clean", () => {
  const issues = run(new URL("..", import.meta.url).pathname, text);
  assertEquals(issues.map((i) => `line ${i.line}: ${i.rule} — ${i.title}`), []);
});

Deno.test("Dockerfile: CPU default and gpu target, non-root users, health checks, nothing fetched at run time", () => {
  const stages = [...text.matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gm)].map((m) => m[1]);
  // a plain `docker build` makes the last stage: the CPU image
  assertEquals(stages, ["base", "gpu", "cpu"]);
  assertEquals((text.match(/^USER\s+(?!root)\S+/gm) ?? []).length, 2);
  assertEquals((text.match(/^HEALTHCHECK/gm) ?? []).length, 2);
  assert(/--cached-only/.test(text), "the CPU image runs from the build-time cache");
  assert(/NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics/.test(text));
});
