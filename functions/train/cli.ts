/**
 * `deno task train --config configs/tiny-dvsft.json [--resume] [--set key=value …]`
 *
 * Trains with a progress bar (step, losses, tokens/s, ETA); writes the run folder
 * (config.json, metrics.jsonl, checkpoints/, tokenizer.json).
 */
import { parseArgs } from "node:util";
import { runMain } from "../shared/cli.ts";
import { train, TrainConfigSchema } from "../../lib/train/mod.ts";
import { startProgress } from "../../lib/util/progress.ts";
import { zodIssues } from "../../lib/http/mod.ts";

const USAGE = `Usage: deno task train [--config FILE] [--resume] [--set key=value …]

  --config FILE    JSON training config (see configs/); unknown keys are errors
  --set k=v        override a field, dotted for nested ones (--set loss.lambda=2 --set steps=500)
  --model M        tiny | small | hf:<folder> (a Qwen2-VL / Qwen2.5-VL checkpoint: config.json +
                   safetensors; LoRA, freezing and accumulation under "hf" in the config)
  --data DIR       train on a dataset folder (deno task data generate|import, label --dataset)
  --resume         continue from the run's latest checkpoint
  --quiet          no progress bar`;

function setPath(obj: Record<string, unknown>, path: string, raw: string): void {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch { /* a plain string */ }
  o[keys.at(-1)!] = value;
}

export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      set: { type: "string", multiple: true },
      model: { type: "string" },
      data: { type: "string" },
      resume: { type: "boolean" },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const raw: Record<string, unknown> = values.config
    ? JSON.parse(await Deno.readTextFile(values.config))
    : {};
  if (values.model) raw.model = values.model;
  if (values.data) raw.data = { ...(raw.data as object ?? {}), task: "dataset", path: values.data };
  for (const s of values.set ?? []) {
    const i = s.indexOf("=");
    if (i < 1) throw new Error(`--set '${s}': expected key=value`);
    setPath(raw, s.slice(0, i), s.slice(i + 1));
  }
  const parsed = TrainConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const i of zodIssues(parsed.error)) console.error(`error: config ${i.path}: ${i.message}`);
    return 2;
  }
  const config = parsed.data;
  const bar = values.quiet
    ? null
    : startProgress(`train ${config.name}`, config.steps, ["loss", "text", "vision", "tokps"]);
  const ac = new AbortController();
  const stop = () => ac.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  let first = true;
  // evalEvery: the evaluation hook (lib/eval), loaded only when asked for
  const evaluate = config.evalEvery > 0
    ? (await import("../../lib/eval/mod.ts")).periodicEvaluation()
    : undefined;
  try {
    const r = await train(config, {
      resume: values.resume,
      signal: ac.signal,
      evaluate,
      onEval: (e) => {
        const line = `eval step ${e.step}: ${e.suite} ${e.metric} ${(e.score * 100).toFixed(1)} ` +
          `(probe top-1 ${e.probeTop1 === null ? "—" : (e.probeTop1 * 100).toFixed(1)}, n ${e.n})`;
        if (bar) bar.log(line);
        else console.log(line);
      },
      onStep: (m) => {
        if (first && bar) {
          // a resumed run starts its bar where the checkpoint left off
          for (let k = 1; k < m.step; k++) bar.tick();
          first = false;
        }
        bar?.tick({
          loss: m.loss.toFixed(4),
          text: m.textLoss.toFixed(4),
          vision: m.visionLoss.toFixed(4),
          tokps: Math.round(m.tokensPerSecond),
        });
        if (!bar) console.log(JSON.stringify({ step: m.step, loss: m.loss }));
      },
    });
    bar?.stop();
    const last = r.metrics.at(-1);
    console.log(
      `${
        ac.signal.aborted ? "stopped" : "done"
      }: ${r.finalStep}/${config.steps} steps on ${r.backend}, ${r.parameterCount} parameters` +
        (last
          ? `, loss ${last.loss.toFixed(4)} (text ${last.textLoss.toFixed(4)}, vision ${
            last.visionLoss.toFixed(4)
          })`
          : "") +
        ` → ${r.runDir}`,
    );
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
}

if (import.meta.main) await runMain(main);
