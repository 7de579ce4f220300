/**
 * End to end: the real server (main.ts) on a real port, the real CLI on real files.
 */
import { assert, assertEquals, assertGreater } from "@std/assert";
import { renderPage } from "../lib/render/mod.ts";
import { LabelSetSchema } from "../lib/labels/mod.ts";

const root = new URL("..", import.meta.url).pathname;

/** `deno run -A <args>` in the repository root; stdout discarded unless asked for. */
const denoRun = (args: string[], stdout: "null" | "piped" = "null") =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: root,
    stdout,
    stderr: "null",
  });

/** Files in `dir` (none when it does not exist yet) whose names pass `keep`. */
const countFiles = (dir: string, keep: (name: string) => boolean) => {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => keep(e.name)).length;
  } catch {
    return 0;
  }
};

/** Poll until `done()` holds. */
async function waitUntil(done: () => boolean, everyMs: number): Promise<void> {
  while (!done()) await new Promise((r) => setTimeout(r, everyMs));
}

async function startServer(): Promise<
  { base: string; child: Deno.ChildProcess; log: () => string }
> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "serve"],
    cwd: root,
    env: { PORT: "0", DVSFT_DATA_DIR: Deno.makeTempDirSync({ prefix: "dvsft-e2e-" }) },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log += value;
    const m = log.match(/listening on (http:\/\/[\d.]+:\d+)/);
    if (m) {
      (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) break;
          log += r.value;
        }
      })();
      return { base: m[1]!, child, log: () => log };
    }
  }
  child.kill("SIGKILL");
  throw new Error(`server did not start: ${log}`);
}

Deno.test("e2e: the server labels an upload over a real port and stops cleanly on SIGTERM", async () => {
  const { base, child } = await startServer();
  try {
    assertEquals((await (await fetch(`${base}/healthz`)).json()).status, "ok");
    const page = renderPage({ seed: 21, width: 448, height: 280, fontSize: 24 });
    const fd = new FormData();
    fd.append("image", new File([page.png as Uint8Array<ArrayBuffer>], "p.png"));
    fd.append("options", JSON.stringify({ source: "ocr", geometry: { name: "internvl" } }));
    const res = await fetch(`${base}/v1/label`, { method: "POST", body: fd });
    assertEquals(res.status, 200);
    const ls = LabelSetSchema.parse((await res.json()).items[0].labelSet);
    // 448x280, aspect 1.6 → InternVL picks 3x2 tiles (diff 0.1) + thumbnail = 7 x 256 tokens
    assertEquals(ls.geometry.tokens, 7 * 256);
    assertGreater(ls.stats.wordsLabeled, 5);
    const bad = await fetch(`${base}/v1/label`, {
      method: "POST",
      body: "junk",
      headers: { "content-type": "application/json" },
    });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();
    assertEquals((await fetch(`${base}/healthz`)).status, 200);
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await child.stderr.cancel();
    assertEquals(status.success, true, `exit ${status.code}`);
  }
});

Deno.test("e2e: the label CLI writes label sets, overlays and a summary; a bad file fails alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-cli-" });
  const out = `${dir}/out`;
  try {
    for (const seed of [1, 2]) {
      await Deno.writeFile(
        `${dir}/p${seed}.png`,
        renderPage({ seed, width: 560, height: 280, fontSize: 24 }).png,
      );
    }
    await Deno.writeTextFile(`${dir}/broken.png`, "not a png");
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "functions/label/cli.ts",
        dir,
        "--out",
        out,
        "--overlay",
        "--geometry",
        "llava-1.5",
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(run.stdout);
    assertEquals(run.code, 1, stdout);
    assert(stdout.includes("labeled 2 image(s), 0 already done, 1 failed"), stdout);
    const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
    assertEquals([summary.images, summary.failed, summary.tokens], [2, 1, 2 * 576]);
    assertEquals(summary.failures[0].input, "broken");
    LabelSetSchema.parse(JSON.parse(await Deno.readTextFile(`${out}/p1.labels.json`)));
    assert((await Deno.stat(`${out}/p2.overlay.png`)).size > 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: --shard i/N splits a job; the shards together equal the whole run byte for byte", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-shard-" });
  const cli = (args: string[]) => denoRun(["functions/label/cli.ts", ...args]).output();
  try {
    const whole = await cli(["--source", "render", "--n", "6", "--out", `${dir}/whole`]);
    const shards = await Promise.all(
      [0, 1, 2].map((i) =>
        cli(["--source", "render", "--n", "6", "--shard", `${i}/3`, "--out", `${dir}/shards`])
      ),
    );
    assertEquals([whole.code, ...shards.map((s) => s.code)], [0, 0, 0, 0]);
    for (let k = 0; k < 6; k++) {
      const name = `render-${String(k).padStart(6, "0")}.labels.json`;
      assertEquals(
        await Deno.readTextFile(`${dir}/shards/${name}`),
        await Deno.readTextFile(`${dir}/whole/${name}`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: a label batch SIGKILLed midway, rerun, ends byte-identical to an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-kill-" });
  const args = (
    out: string,
  ) => ["functions/label/cli.ts", "--source", "render", "--n", "40", "--out", out];
  const labelFiles = () => countFiles(`${dir}/killed`, (n) => n.endsWith(".labels.json"));
  try {
    assertEquals((await denoRun(args(`${dir}/whole`)).output()).code, 0);
    const child = denoRun(args(`${dir}/killed`)).spawn();
    await waitUntil(() => labelFiles() >= 8, 10);
    child.kill("SIGKILL");
    await child.status;
    const before = labelFiles();
    assert(before < 40, `all ${before} done before the kill`);
    const rerun = await denoRun(args(`${dir}/killed`), "piped").output();
    const out = new TextDecoder().decode(rerun.stdout);
    assertEquals(rerun.code, 0, out);
    assert(out.includes(`${before} already done`), out);
    for (const e of Deno.readDirSync(`${dir}/whole`)) {
      if (!e.name.endsWith(".labels.json")) continue;
      assertEquals(
        await Deno.readTextFile(`${dir}/killed/${e.name}`),
        await Deno.readTextFile(`${dir}/whole/${e.name}`),
        e.name,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: dataset generation SIGKILLed midway, rerun, gives the same dataset as an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-datakill-" });
  const args = (
    out: string,
  ) => [
    "functions/data/cli.ts",
    "generate",
    "--suite",
    "doc-kv",
    "--n",
    "60",
    "--shard-size",
    "10",
    "--size",
    "112",
    "--out",
    out,
  ];
  const shards = () => countFiles(`${dir}/killed`, (n) => n.startsWith("shard-"));
  try {
    assertEquals((await denoRun(args(`${dir}/whole`)).output()).code, 0);
    const child = denoRun(args(`${dir}/killed`)).spawn();
    await waitUntil(() => shards() >= 2, 5);
    child.kill("SIGKILL");
    await child.status;
    assert(shards() < 6, "finished before the kill");
    assertEquals((await denoRun(args(`${dir}/killed`)).output()).code, 0);
    const manifest = (p: string) => JSON.parse(Deno.readTextFileSync(`${p}/manifest.json`));
    assertEquals(manifest(`${dir}/killed`).shards, manifest(`${dir}/whole`).shards);
    assertEquals(manifest(`${dir}/killed`).complete, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
