/**
 * `train({ model: "hf:<folder>" })`: a tiny random Qwen2-VL checkpoint (real Qwen vocabulary)
 * saved in Hugging Face's layout, fine-tuned with DV-SFT on a dataset page through the trainer
 * itself; the vision loss goes down, a resume continues, the adapter is written in PEFT's layout.
 */
import { assert, assertEquals } from "@std/assert";
import { join } from "node:path";
import { useBackend } from "../backend/mod.ts";
import { generateDataset } from "../data/mod.ts";
import {
  parseQwenConfig,
  QwenVLModel,
  randomQwenWeights,
  saveQwenVL,
} from "../model/qwen2vl/mod.ts";
import { readMetrics } from "../runs/mod.ts";
import { train } from "./mod.ts";

const CONFIG_JSON = {
  model_type: "qwen2_vl",
  architectures: ["Qwen2VLForConditionalGeneration"],
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
};

Deno.test("train --model hf:<folder>: DV-SFT with LoRA on a dataset page lowers the vision loss; resumes; writes a PEFT adapter", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-hf-" });
  try {
    await useBackend("wasm");
    const config = parseQwenConfig(CONFIG_JSON);
    const model = new QwenVLModel(config, QwenVLModel.variables(randomQwenWeights(config, 2, 0.5)));
    await saveQwenVL(model, CONFIG_JSON, join(dir, "qwen-tiny"));
    model.dispose();
    // one page, its questions cycled: the same words every step
    await generateDataset({ suite: "doc-kv", n: 1, size: 224 }, { out: join(dir, "ds") });
    const base = {
      name: "qwen-dvsft",
      outDir: join(dir, "runs"),
      model: `hf:${join(dir, "qwen-tiny")}`,
      data: { task: "dataset" as const, path: join(dir, "ds") },
      hf: {
        lora: {
          rank: 8,
          alpha: 16,
          targetModules: [
            "q_proj",
            "v_proj",
            "qkv",
            "fc1",
            "fc2",
            "gate_proj",
            "up_proj",
            "down_proj",
            "o_proj",
          ],
        },
      },
      optimizer: { lr: 2e-2, warmupSteps: 0 },
      checkpointEvery: 3,
      backend: "wasm" as const,
    };
    await train({ ...base, steps: 3 });
    const r = await train({ ...base, steps: 6 }, { resume: true });
    assertEquals(r.finalStep, 6);
    const m = (await readMetrics(r.runDir))!;
    assertEquals(m.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
    assert(
      m.at(-1)!.visionLoss < 0.9 * m[0]!.visionLoss,
      m.map((x) => x.visionLoss.toFixed(3)).join(" → "),
    );
    const adapter = JSON.parse(
      await Deno.readTextFile(join(r.runDir, "adapter", "adapter_config.json")),
    );
    assertEquals(adapter.r, 8);
    await Deno.stat(join(r.runDir, "adapter", "adapter_model.safetensors"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
