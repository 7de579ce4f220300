/**
 * DV-SFT on a labeled real page through a tiny Qwen2-VL with the real Qwen vocabulary: the page
 * is rendered, labeled for the `qwen2-vl` geometry with the real Qwen tokenizer, laid out as
 * `<|vision_start|> <|image_pad|>×N <|vision_end|> prompt answer <|im_end|>`, and a few steps of
 * the joint loss (full fine-tuning, then LoRA with the base frozen) bring the vision loss down.
 */
import { assert, assertEquals } from "@std/assert";
import { tf, useBackend } from "../../backend/mod.ts";
import { labelImage, LabelOptionsSchema } from "../../labels/mod.ts";
import { jointNextTokenLoss } from "../../loss/mod.ts";
import { renderPage, renderPageRaw } from "../../render/mod.ts";
import { getTokenizer } from "../../tokenizer/mod.ts";
import { parseQwenConfig } from "./config.ts";
import { addLora, trainableWeights } from "./lora.ts";
import { QwenVLModel, randomQwenWeights } from "./model.ts";

await useBackend(
  Deno.env.get("DVSFT_TEST_BACKEND") as "wasm" | "cpu" | "webgpu" | undefined ?? "wasm",
);

/** Qwen2-VL-2B's token ids and vocabulary, tiny widths. */
const CONFIG = parseQwenConfig({
  model_type: "qwen2_vl",
  image_token_id: 151655,
  video_token_id: 151656,
  vision_start_token_id: 151652,
  vision_end_token_id: 151653,
  tie_word_embeddings: true,
  text_config: {
    vocab_size: 151936,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_type: "default", mrope_section: [1, 1, 2], rope_theta: 1e6 },
  },
  vision_config: { depth: 1, embed_dim: 32, hidden_size: 32, num_heads: 2, mlp_ratio: 2 },
});

async function pageBatch() {
  const tokenizer = await getTokenizer("qwen2");
  const render = { seed: 3, width: 224, height: 112, fontSize: 18 };
  const page = renderPage(render);
  const { labelSet } = await labelImage({
    bytes: page.png,
    source: "render",
    words: page.words,
    tokenizer,
    options: LabelOptionsSchema.parse({}),
  });
  // 224×112 is already a multiple of 28: smart_resize keeps it, the grid is 8 × 4 tokens
  assertEquals([labelSet.geometry.resizedWidth, labelSet.geometry.resizedHeight], [224, 112]);
  const N = labelSet.geometry.tokens;
  const raw = renderPageRaw(render);
  const rgb = new Float32Array(224 * 112 * 3);
  for (let i = 0; i < 224 * 112; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = raw.rgba[4 * i + c]! / 255;
  }
  const prompt = tokenizer.encode("Read the page.");
  const answer = [...tokenizer.encode(page.words.slice(0, 3).map((w) => w.text).join(" ")), 151645];
  const ids = [151652, ...Array(N).fill(151655), 151653, ...prompt, ...answer];
  const labels = [-100, ...labelSet.tokens.label, -100, ...prompt.map(() => -100), ...answer];
  assert(labelSet.stats.labeled >= 8, `labeled cells: ${labelSet.stats.labeled}`);
  return {
    pixels: tf.tensor4d(rgb, [1, 112, 224, 3]),
    ids: tf.tensor2d([ids], undefined, "int32"),
    labels: tf.tensor2d([labels], undefined, "int32"),
    vision: [1, 1 + N] as [number, number],
  };
}

async function train(model: QwenVLModel, steps: number, lr: number): Promise<number[]> {
  const b = await pageBatch();
  const vars = [...trainableWeights(model).values()];
  const opt = tf.train.adam(lr);
  const losses: number[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      let vision: tf.Scalar | null = null;
      const total = opt.minimize(
        () => {
          const l = jointNextTokenLoss(model.apply(b.pixels, b.ids), b.labels, b.vision);
          vision = tf.keep(l.vision);
          return l.total;
        },
        true,
        vars,
      )!;
      losses.push((await vision!.data())[0]!);
      tf.dispose([total, vision!]);
    }
  } finally {
    opt.dispose();
    tf.dispose([b.pixels, b.ids, b.labels]);
  }
  return losses;
}

Deno.test("DV-SFT on a labeled real page: a few full fine-tuning steps lower the vision loss", async () => {
  const model = new QwenVLModel(CONFIG, QwenVLModel.variables(randomQwenWeights(CONFIG, 1)));
  try {
    const before = tf.memory().numTensors;
    const losses = await train(model, 4, 1e-2);
    assert(
      losses.at(-1)! < 0.92 * losses[0]!,
      `vision loss ${losses.map((l) => l.toFixed(3)).join(" → ")}`,
    );
    assert(tf.memory().numTensors <= before + 4, `tensors ${before} → ${tf.memory().numTensors}`);
  } finally {
    model.dispose();
  }
});

Deno.test("DV-SFT with LoRA (base frozen) lowers the vision loss too, and moves only adapters", async () => {
  const model = new QwenVLModel(CONFIG, QwenVLModel.variables(randomQwenWeights(CONFIG, 2, 0.5)));
  try {
    addLora(model, {
      rank: 8,
      alpha: 16,
      targetModules: [
        "q_proj",
        "v_proj",
        "qkv",
        "fc1",
        "fc2",
        "mlp.0",
        "mlp.2",
        "gate_proj",
        "up_proj",
        "down_proj",
        "o_proj",
      ],
    });
    const emb = await model.weights.get("model.embed_tokens.weight")!.data();
    const losses = await train(model, 4, 2e-2);
    assert(
      losses.at(-1)! < 0.8 * losses[0]!,
      `vision loss ${losses.map((l) => l.toFixed(3)).join(" → ")}`,
    );
    assertEquals(
      await model.weights.get("model.embed_tokens.weight")!.data(),
      emb,
      "frozen base unchanged",
    );
  } finally {
    model.dispose();
  }
});
