/**
 * Prints the parity figures of lib/model/qwen2vl against transformers (the README's numbers):
 * worst relative logits error per model and case, loss differences and the worst gradient-norm
 * difference of one DV-SFT step, with and without a PEFT LoRA adapter, and the step time.
 *
 *   npx -y deno@2.9.6 run -A tests/bench/qwen2vl_parity.ts [wasm|cpu|webgpu]
 */
import { tf, useBackend } from "../../lib/backend/mod.ts";
import { SafetensorsFile } from "../../lib/hf/mod.ts";
import { jointNextTokenLoss } from "../../lib/loss/mod.ts";
import {
  canonicalWeightName,
  loadLoraAdapter,
  loadQwenVL,
  trainableWeights,
} from "../../lib/model/qwen2vl/mod.ts";

const FIX = new URL("../fixtures/qwen2vl/", import.meta.url).pathname;
const backend = await useBackend((Deno.args[0] ?? "wasm") as "wasm" | "cpu" | "webgpu");
const expected = JSON.parse(await Deno.readTextFile(FIX + "expected.json"));
const ref = await SafetensorsFile.open(FIX + "expected.safetensors");

function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / s;
}

console.log(
  `backend ${backend}; reference transformers ${expected.transformers}, torch ${expected.torch}`,
);
for (const family of ["qwen2_vl", "qwen2_5_vl"]) {
  for (const lora of [false, true]) {
    const { model } = await loadQwenVL(FIX + family);
    const fx = expected.models[family];
    if (lora) await loadLoraAdapter(model, FIX + `${family}_lora_peft`);
    const label = `${family}${lora ? " + LoRA" : ""}`;
    for (const c of fx.cases) {
      if (lora && c.name !== fx.lora.case) continue;
      const pv = await ref.read(`${family}.${c.name}.pixel_values`);
      const px = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
      const ids = tf.tensor2d(c.input_ids, undefined, "int32");
      const out = model.apply({ pixelValues: px, gridThw: c.image_grid_thw }, ids);
      const want = await ref.read(`${family}${lora ? ".lora" : ""}.${c.name}.logits`);
      console.log(
        `${label} ${c.name}: logits relative error ${
          rel(await out.data(), want.data).toExponential(2)
        }`,
      );
      tf.dispose([out, px, ids]);
    }
    const t = fx.train;
    const [H, W] = [t.images[0].height, t.images[0].width];
    const rgb = Float32Array.from(
      t.images.flatMap((im: { rgb_base64: string }) =>
        Array.from(atob(im.rgb_base64), (ch) => ch.charCodeAt(0) / 255)
      ),
    );
    const pixels = tf.tensor4d(rgb, [t.images.length, H, W, 3]);
    const ids = tf.tensor2d(t.input_ids, undefined, "int32");
    const labels = tf.tensor2d(t.labels, undefined, "int32");
    const vars = trainableWeights(model);
    const t0 = performance.now();
    const { value, grads } = tf.variableGrads(
      () => jointNextTokenLoss(model.apply(pixels, ids), labels, t.vision_range).total,
      [...vars.values()],
    );
    const loss = (await value.data())[0]!;
    const ms = performance.now() - t0;
    const wantLoss = lora ? fx.lora.total_loss : t.total_loss;
    const norms: Record<string, number> = lora ? fx.lora.grad_norms : t.grad_norms;
    let worst = 0;
    for (const [name, want] of Object.entries(norms)) {
      const m = /^(.+)\.(lora_[AB])\.weight$/.exec(name);
      const key = m ? `${canonicalWeightName(m[1]!)}.${m[2]}` : canonicalWeightName(name);
      const g = grads[vars.get(key)!.name]!;
      const n = tf.norm(g);
      worst = Math.max(worst, Math.abs((await n.data())[0]! - want) / want);
      n.dispose();
    }
    console.log(
      `${label} DV-SFT step: loss ${loss.toFixed(6)} vs ${wantLoss.toFixed(6)} (relative ${
        (Math.abs(loss - wantLoss) / wantLoss).toExponential(2)
      }), worst gradient-norm relative difference ${worst.toExponential(2)} over ${
        Object.keys(norms).length
      } tensors, forward+backward ${ms.toFixed(0)} ms`,
    );
    tf.dispose([value, pixels, ids, labels, ...Object.values(grads)]);
    model.dispose();
  }
}
const check = JSON.parse(await Deno.readTextFile(FIX + "qwen2_vl_lora_ours/check.json"));
console.log(
  `our saved LoRA adapter in PEFT ${check.peft}: logits relative error ${
    check.relative_error.toExponential(2)
  } (adapter effect ${check.adapter_effect.toFixed(2)}, ${check.adapted_modules} modules)`,
);
