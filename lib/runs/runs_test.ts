import { assert, assertEquals, assertRejects } from "@std/assert";
import { join } from "node:path";
import {
  listRunFiles,
  openMetricsLog,
  readEvaluation,
  readEvaluations,
  readMetrics,
  RunFileError,
  runFilePath,
  runPaths,
  type StepMetrics,
  writeDirAtomic,
  writeEvaluation,
  writeFileAtomic,
} from "./mod.ts";

const step = (n: number, loss: number): StepMetrics => ({
  step: n,
  lr: 0,
  loss,
  textLoss: loss,
  visionLoss: 0,
  gradNorm: 0,
  tokensPerSecond: 0,
  stepMs: 1,
  numTensors: 0,
  heapMB: 0,
});

Deno.test("runs: metrics are deduplicated by step (a resumed step's last record wins), a torn last line is skipped", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await readMetrics(dir), null);
    const log = await openMetricsLog(dir, true);
    for (const m of [step(1, 5), step(2, 4), step(3, 3), step(2, 9), step(3, 8)]) {
      await log.append(m);
    }
    log.close();
    await Deno.writeTextFile(runPaths(dir).metrics, '{"step": 4, "lo', { append: true });
    assertEquals((await readMetrics(dir))!.map((m) => [m.step, m.loss]), [[1, 5], [2, 9], [3, 8]]);
    // a bad line that is not the last is an error naming the file and line
    await Deno.writeTextFile(runPaths(dir).metrics, '{"step": 1}\n' + JSON.stringify(step(2, 1)));
    await assertRejects(() => readMetrics(dir), RunFileError, "line 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runs: evaluations of the same weights merge by suite; other weights replace them", async () => {
  const dir = await Deno.makeTempDir();
  const suite = (name: string, score: number) => ({
    suite: name,
    id: `x/${name}@1`,
    domain: "in",
    metric: "anls",
    n: 1,
    score,
    probeTop1: null,
    probeTop5: null,
    items: [{ index: 0, question: "q", answer: "a", prediction: "p", score }],
  });
  const ev = (sha: string, suites: ReturnType<typeof suite>[]) => ({
    checkpoint: { path: dir, step: 7, weightsSha256: sha },
    options: {},
    suites,
  });
  try {
    await writeEvaluation(dir, ev("h1", [suite("a", 0.1), suite("b", 0.2)]));
    await writeEvaluation(dir, ev("h1", [suite("b", 0.5)]));
    assertEquals((await readEvaluation(dir, 7))!.suites.map((s) => [s.suite, s.score]), [
      ["a", 0.1],
      ["b", 0.5],
    ]);
    const predictions = (await Deno.readTextFile(runPaths(dir).predictions(7))).trim().split("\n");
    assertEquals(predictions.length, 2);
    await writeEvaluation(dir, ev("h2", [suite("c", 1)]));
    assertEquals((await readEvaluations(dir)).map((e) => e.suites.map((s) => s.suite)), [["c"]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runs: atomic writes leave the old file or folder when they fail, and no temporary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "f.json");
    await writeFileAtomic(file, "old");
    await writeFileAtomic(file, "new");
    assertEquals(await Deno.readTextFile(file), "new");
    const folder = join(dir, "d");
    await writeDirAtomic(folder, (tmp) => Deno.writeTextFile(join(tmp, "x"), "1"));
    await assertRejects(() =>
      writeDirAtomic(folder, async (tmp) => {
        await Deno.writeTextFile(join(tmp, "x"), "2");
        throw new Error("killed");
      })
    );
    assertEquals(await Deno.readTextFile(join(folder, "x")), "1");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["d", "f.json"]);
    assertEquals((await listRunFiles(dir)).map((f) => f.path), ["d/x", "f.json"]);
    // a name from a client stays inside the run folder
    await assertRejects(() => runFilePath(dir, "../x"));
    assert((await runFilePath(dir, "d/x")).endsWith("/d/x"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
