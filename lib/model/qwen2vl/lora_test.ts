/**
 * LoRA in PEFT's layout against PEFT itself (tests/fixtures/qwen2vl/make_fixtures.py): adapters
 * PEFT saved load here with PEFT's logits and adapter gradient norms; ours save to the same
 * tensors; adapters we wrote load in PEFT with our logits (check_lora.py's figure); freezing.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { tf, useBackend } from "../../backend/mod.ts";
import { readLoraAdapter } from "../../hf/peft.ts";
import { SafetensorsFile } from "../../hf/safetensors.ts";
import { jointNextTokenLoss } from "../../loss/mod.ts";
import { loadQwenVL } from "./load.ts";
import {
  addLora,
  loadLoraAdapter,
  saveLoraAdapter,
  setTrainable,
  trainableWeights,
} from "./lora.ts";
import { canonicalWeightName, type QwenVisionInput, type QwenVLModel } from "./model.ts";
import type { GridThw } from "./positions.ts";

const FIX = new URL("../../../tests/fixtures/qwen2vl/", import.meta.url).pathname;
interface Fixture {
  cases: Array<{ name: string; input_ids: number[][]; image_grid_thw: GridThw[] }>;
  train: {
    input_ids: number[][];
    labels: number[][];
    vision_range: [number, number];
    images: Array<{ height: number; width: number; rgb_base64: string }>;
  };
  lora: { case: string; total_loss: number; grad_norms: Record<string, number> };
}
const expected = JSON.parse(await Deno.readTextFile(FIX + "expected.json")) as {
  models: Record<string, Fixture>;
};
const ref = await SafetensorsFile.open(FIX + "expected.safetensors");
await useBackend(
  Deno.env.get("DVSFT_TEST_BACKEND") as "wasm" | "cpu" | "webgpu" | undefined ?? "wasm",
);

function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

async function caseInput(
  family: string,
  name: string,
): Promise<{ vision: QwenVisionInput; ids: tf.Tensor2D }> {
  const c = expected.models[family]!.cases.find((x) => x.name === name)!;
  const pv = await ref.read(`${family}.${name}.pixel_values`);
  return {
    vision: {
      pixelValues: tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]),
      gridThw: c.image_grid_thw,
    },
    ids: tf.tensor2d(c.input_ids, undefined, "int32"),
  };
}

async function logitsOf(model: QwenVLModel, family: string, name: string): Promise<Float32Array> {
  const { vision, ids } = await caseInput(family, name);
  const out = tf.tidy(() => model.apply(vision, ids));
  const data = await out.data() as Float32Array;
  tf.dispose([out, vision.pixelValues, ids]);
  return data;
}

for (const family of ["qwen2_vl", "qwen2_5_vl"] as const) {
  const fx = expected.models[family]!;

  Deno.test(`${family}: a PEFT adapter loads with PEFT's logits and adapter gradient norms`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    try {
      const modules = await loadLoraAdapter(model, FIX + `${family}_lora_peft`);
      assert(modules.length >= 5, `adapted ${modules}`);
      const err = relativeError(
        await logitsOf(model, family, fx.lora.case),
        (await ref.read(`${family}.lora.${fx.lora.case}.logits`)).data,
      );
      assert(err < 1e-4, `logits with adapter: relative error ${err.toExponential(2)}`);
      // one DV-SFT step: gradients reach the adapters only
      const t = fx.train;
      const n = t.images.length, [H, W] = [t.images[0]!.height, t.images[0]!.width];
      const px = Float32Array.from(
        t.images.flatMap((im) => Array.from(atob(im.rgb_base64), (c) => c.charCodeAt(0) / 255)),
      );
      const pixels = tf.tensor4d(px, [n, H, W, 3]);
      const ids = tf.tensor2d(t.input_ids, undefined, "int32");
      const labels = tf.tensor2d(t.labels, undefined, "int32");
      const trainable = trainableWeights(model);
      assertEquals(trainable.size, 2 * modules.length, "only adapters train");
      const { value, grads } = tf.variableGrads(
        () => jointNextTokenLoss(model.apply(pixels, ids), labels, t.vision_range).total,
        [...trainable.values()],
      );
      const loss = (await value.data())[0]!;
      assert(
        Math.abs(loss - fx.lora.total_loss) / fx.lora.total_loss < 1e-5,
        `loss ${loss} vs PEFT ${fx.lora.total_loss}`,
      );
      const byName = new Map([...trainable].map(([k, v]) => [k, grads[v.name]!]));
      for (const [name, want] of Object.entries(fx.lora.grad_norms)) {
        const m = /^(.+)\.lora_([AB])\.weight$/.exec(name)!;
        const g = byName.get(`${canonicalWeightName(m[1]!)}.lora_${m[2]}`);
        if (!g) throw new Error(`no gradient for ${name}`);
        const n = tf.norm(g);
        const norm = (await n.data())[0]!;
        n.dispose();
        assert(
          Math.abs(norm - want) / want < 1e-4,
          `${name}: gradient norm ${norm} vs PEFT ${want}`,
        );
      }
      assertEquals(
        Object.keys(fx.lora.grad_norms).length,
        trainable.size,
        "PEFT and we train the same tensors",
      );
      tf.dispose([value, pixels, ids, labels, ...Object.values(grads)]);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`${family}: saveLoraAdapter writes the tensors PEFT wrote, under PEFT's names`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    const dir = await Deno.makeTempDir({ prefix: "dvsft-lora-" });
    try {
      await loadLoraAdapter(model, FIX + `${family}_lora_peft`);
      await saveLoraAdapter(model, dir, { baseModel: FIX + family });
      const ours = await readLoraAdapter(dir);
      const peft = await readLoraAdapter(FIX + `${family}_lora_peft`);
      assertEquals([...ours.modules.keys()].sort(), [...peft.modules.keys()].sort());
      for (const [k, m] of peft.modules) {
        assertEquals(ours.modules.get(k)!.a, m.a, k);
        assertEquals(ours.modules.get(k)!.b, m.b, k);
      }
      assertEquals([ours.config.r, ours.config.lora_alpha], [
        peft.config.r,
        peft.config.lora_alpha,
      ]);
      assertEquals([...ours.config.target_modules].sort(), [...peft.config.target_modules].sort());
    } finally {
      model.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("an adapter we wrote loads in PEFT with our logits (check_lora.py's figure)", async () => {
  const dir = FIX + "qwen2_vl_lora_ours";
  const check = JSON.parse(await Deno.readTextFile(dir + "/check.json")) as {
    relative_error: number;
    peft: string;
  };
  assert(check.relative_error < 1e-4, `PEFT vs tfjs logits: ${check.relative_error}`);
  // and the adapter still gives the logits check_lora.py compared against
  const { model } = await loadQwenVL(FIX + "qwen2_vl");
  try {
    await loadLoraAdapter(model, dir);
    const mine = await SafetensorsFile.open(dir + "/logits_tfjs.safetensors");
    const want = await mine.read("logits");
    mine.close();
    assertEquals(
      relativeError(await logitsOf(model, "qwen2_vl", "two_rows"), want.data) < 1e-5,
      true,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("addLora starts at the base model's logits; freezing picks what trains", async () => {
  const { model } = await loadQwenVL(FIX + "qwen2_5_vl");
  try {
    const base = await logitsOf(model, "qwen2_5_vl", "two_rows");
    assertThrows(
      () => addLora(model, { targetModules: ["proj"] }),
      RangeError,
      "visual.patch_embed.proj",
    );
    assertThrows(
      () => addLora(model, { targetModules: ["nothing"] }),
      RangeError,
      "selects no linear layer",
    );
    assertThrows(() => addLora(model, { targetModules: ["q_proj"], rank: 0 }), RangeError, "rank");
    const modules = addLora(model, {
      rank: 2,
      alpha: 4,
      targetModules: "model\\.language_model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj",
    });
    assertEquals(modules, [
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.1.self_attn.q_proj",
      "model.layers.1.self_attn.v_proj",
    ]);
    assertEquals(await logitsOf(model, "qwen2_5_vl", "two_rows"), base, "B = 0: unchanged");
    assertEquals(trainableWeights(model).size, 8);
    setTrainable(model, { vision: false, merger: true, lm: false });
    const names = [...trainableWeights(model).keys()];
    assert(
      names.every((n) => n.includes(".lora_") || n.startsWith("visual.merger.")),
      names.join(),
    );
    assert(names.some((n) => n.startsWith("visual.merger.")));
  } finally {
    model.dispose();
  }
});
