/** The Kubernetes examples parse, shard by the Job's completion index, and name real commands. */
import { assert, assertEquals } from "@std/assert";
import { parseAllDocuments } from "yaml";

const read = async (f: string) =>
  parseAllDocuments(await Deno.readTextFile(new URL(`../deploy/${f}`, import.meta.url))).map((d) =>
    d.toJSON()
  );

for (const file of ["data-job.yaml", "label-job.yaml"]) {
  Deno.test(`deploy/${file}: an Indexed Job whose pods take --shard $(JOB_COMPLETION_INDEX)/completions`, async () => {
    const [job] = await read(file);
    assertEquals(job.kind, "Job");
    assertEquals(job.spec.completionMode, "Indexed");
    const args: string = job.spec.template.spec.containers[0].args.join(" ");
    const m = args.match(/--shard \$\(JOB_COMPLETION_INDEX\)\/(\d+)/);
    assert(m, args);
    assertEquals(Number(m![1]), job.spec.completions);
    const script = args.match(/(functions\/\w+\/cli\.ts)/)![1]!;
    await Deno.stat(new URL(`../${script}`, import.meta.url)); // the CLI exists
  });
}

Deno.test("deploy/api.yaml: probes on /readyz and /healthz, API keys from a secret, one writer of the job store", async () => {
  const docs = await read("api.yaml");
  const dep = docs.find((d) => d.kind === "Deployment");
  const c = dep.spec.template.spec.containers[0];
  assertEquals([c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path], [
    "/readyz",
    "/healthz",
  ]);
  assert(c.env.some((e: { name: string }) => e.name === "DVSFT_API_KEYS"));
  assertEquals([dep.spec.replicas, dep.spec.strategy.type], [1, "Recreate"]);
});
