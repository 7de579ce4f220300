import { assert, assertEquals, assertRejects } from "@std/assert";
import { join } from "node:path";
import { tf, useBackend } from "../backend/mod.ts";
import { makeReadingSample, type Sample } from "../data/mod.ts";
import { greedyDecode, modelFromCheckpoint } from "../eval/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { EOS_ID } from "../tokenizer/small.ts";
import { latestCheckpoint } from "../runs/mod.ts";
import { train } from "../train/mod.ts";
import { greedyDecodeCached } from "./decode.ts";
import { MODEL_PRESETS, type ModelConfig, ModelConfigSchema, SmallVLM } from "./mod.ts";

const tokenizer = await getTokenizer("dvsft-small");
const tiny: ModelConfig = ModelConfigSchema.parse({
  ...MODEL_PRESETS.tiny,
  vocabSize: tokenizer.vocabSize,
});

/** Reading samples whose prompts are cut to different lengths (batches mix prompt lengths). */
function samples(config: ModelConfig, n: number, seed: number): Sample[] {
  return Array.from({ length: n }, (_, i) => {
    const s = makeReadingSample(i, { config, tokenizer, seed });
    return { ...s, promptEnd: s.promptEnd - (i % 3) };
  });
}

/** A seeded random model whose EOS logit is scaled by `eosScale` (tied head: its embedding row). */
function randomModel(seed: number, eosScale: number): SmallVLM {
  const model = new SmallVLM(tiny, undefined, seed);
  const tok = model.weights.get("lm.tok")!;
  const scaled = tf.tidy(() => {
    const s = new Float32Array(tiny.vocabSize).fill(1);
    s[EOS_ID] = eosScale;
    return tf.mul(tok, tf.tensor2d(s, [tiny.vocabSize, 1]));
  });
  tok.assign(scaled);
  scaled.dispose();
  return model;
}

// cpu runs the composed ops (wasm the fused kernels); it is slow, so fewer cases there
const CASES = {
  wasm: { models: [[7, 1], [7, 3], [11, 6]], tokens: [30, 4, 1], items: 7 },
  cpu: { models: [[7, 3]], tokens: [30], items: 4 },
} as const;
for (const backend of ["wasm", "cpu"] as const) {
  Deno.test(`KV-cache greedy decoding writes the same ids as full recompute (${backend}, random init)`, async () => {
    await useBackend(backend);
    // eosScale 1: sequences run until they fill the model's length; 3 and 6: EOS stops
    // some of them early (6: some at once), others run on — both rules in one batch
    const { models, tokens, items } = CASES[backend];
    for (const [seed, eosScale] of models) {
      const model = randomModel(seed, eosScale);
      try {
        const batch = samples(tiny, items, seed);
        for (const maxNewTokens of tokens) {
          const old = await greedyDecode(model, batch, maxNewTokens);
          const ids = await greedyDecodeCached(model, batch, maxNewTokens);
          assertEquals(ids, old, `seed ${seed}, EOS ×${eosScale}, ${maxNewTokens} tokens`);
          // flat across calls (the first call of a prompt length may fill the causal-mask cache)
          const before = tf.memory().numTensors;
          await greedyDecodeCached(model, batch, maxNewTokens);
          assertEquals(tf.memory().numTensors, before, "decoding leaves no tensors behind");
          // one sample alone decodes as it does in the batch
          assertEquals(await greedyDecodeCached(model, batch.slice(2, 3), maxNewTokens), [old[2]!]);
        }
        if (eosScale === 1) {
          // the batch really fills the sequence: every sample stops at the model's length
          const full = await greedyDecodeCached(model, batch, 30);
          full.forEach((x, b) =>
            assertEquals(x.length, batch[b]!.inputIds.length - batch[b]!.promptEnd)
          );
        } else {
          const lengths = (await greedyDecodeCached(model, batch, 30)).map((x) => x.length);
          const room = batch.map((s) => s.inputIds.length - s.promptEnd);
          assert(lengths.some((n, b) => n < room[b]!), `EOS never stopped a sequence: ${lengths}`);
        }
      } finally {
        model.dispose();
      }
    }
  });
}

Deno.test("KV-cache greedy decoding: same ids as full recompute on the small preset (random init)", async () => {
  await useBackend("wasm");
  const small = ModelConfigSchema.parse({ ...MODEL_PRESETS.small, vocabSize: tokenizer.vocabSize });
  const model = new SmallVLM(small, undefined, 3);
  try {
    const batch = samples(small, 3, 4);
    assertEquals(await greedyDecodeCached(model, batch, 5), await greedyDecode(model, batch, 5));
  } finally {
    model.dispose();
  }
});

Deno.test("KV-cache greedy decoding: same ids as full recompute on a briefly trained checkpoint", async () => {
  const outDir = await Deno.makeTempDir({ prefix: "dvsft-decode-" });
  try {
    const run = await train({
      outDir,
      name: "dv",
      objective: "dvsft",
      model: "tiny",
      batchSize: 4,
      steps: 20,
      backend: "wasm",
      checkpointEvery: 20,
      data: { task: "reading", seed: 9, size: 4 },
      optimizer: { lr: 0.01, warmupSteps: 5, minLrRatio: 0.5 },
    });
    const { model } = await modelFromCheckpoint(
      (await latestCheckpoint(join(run.runDir, "checkpoints")))!,
    );
    try {
      const batch = samples(model.config, 8, 9);
      assertEquals(
        await greedyDecodeCached(model, batch, 16),
        await greedyDecode(model, batch, 16),
      );
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});

Deno.test("KV-cache decoding rejects a prompt that does not fit, naming the sample", async () => {
  await useBackend("wasm");
  const model = randomModel(1, 1);
  try {
    const [s] = samples(tiny, 1, 1);
    await assertRejects(
      () => greedyDecodeCached(model, [s!, { ...s!, promptEnd: 99 }], 4),
      RangeError,
      "sample 1: promptEnd 99",
    );
    assertEquals(await greedyDecodeCached(model, [], 4), []);
    assertEquals(await greedyDecodeCached(model, [s!], 0), [[]]);
  } finally {
    model.dispose();
  }
});
