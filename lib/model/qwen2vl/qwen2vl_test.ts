/**
 * Parity with transformers on the tiny random Qwen2-VL and Qwen2.5-VL of
 * tests/fixtures/qwen2vl/make_fixtures.py: pixel_values, M-RoPE positions, window order, logits
 * (1e-4 relative), the DV-SFT loss and gradient norms of one step.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { tf, useBackend } from "../../backend/mod.ts";
import { SafetensorsFile } from "../../hf/safetensors.ts";
import { jointNextTokenLoss } from "../../loss/mod.ts";
import type { VisionLanguageModel } from "../model.ts";
import { loadQwenVL, saveQwenVL } from "./load.ts";
import { imagesToPixelValues } from "./pixels.ts";
import { parseQwenConfig, QwenConfigError, qwenParameterCount } from "./config.ts";
import { type GridThw, ropeIndex, windowIndex } from "./positions.ts";
import {
  backendTensorByteLimit,
  canonicalWeightName,
  type QwenVLModel,
  qwenWeightShapes,
} from "./model.ts";

const FIX = new URL("../../../tests/fixtures/qwen2vl/", import.meta.url).pathname;

interface ImageJson {
  height: number;
  width: number;
  rgb_base64: string;
}
interface CaseJson {
  name: string;
  input_ids: number[][];
  image_grid_thw: GridThw[];
  images: ImageJson[];
}
interface TrainJson {
  input_ids: number[][];
  labels: number[][];
  vision_range: [number, number];
  image_grid_thw: GridThw[];
  images: ImageJson[];
  hf_loss: number;
  text_loss: number;
  vision_loss: number;
  total_loss: number;
  grad_norms: Record<string, number>;
  grad_norm_all: number;
}
const expected = JSON.parse(await Deno.readTextFile(FIX + "expected.json")) as {
  models: Record<string, { cases: CaseJson[]; train: TrainJson }>;
};
const ref = await SafetensorsFile.open(FIX + "expected.safetensors");

function rgb(im: ImageJson): Float32Array {
  const bytes = Uint8Array.from(atob(im.rgb_base64), (c) => c.charCodeAt(0));
  return Float32Array.from(bytes, (b) => b / 255);
}

/** max |a - b| / max |b|: the relative error of a whole tensor. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths");
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

function close(actual: number, want: number, tol: number, what: string) {
  const rel = Math.abs(actual - want) / Math.max(Math.abs(want), 1e-12);
  assert(
    rel <= tol,
    `${what}: ${actual} vs transformers ${want} (relative ${rel.toExponential(2)})`,
  );
}

await useBackend(
  Deno.env.get("DVSFT_TEST_BACKEND") as "wasm" | "cpu" | "webgpu" | undefined ?? "wasm",
);

for (const family of ["qwen2_vl", "qwen2_5_vl"] as const) {
  const fixture = expected.models[family]!;

  Deno.test(`${family}: pixel_values match the HF image processor`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    try {
      for (const c of fixture.cases) {
        const pv = imagesToPixelValues(
          c.images.map((im) => ({ data: rgb(im), height: im.height, width: im.width })),
          model.config.vision,
        );
        assertEquals(pv.grids, c.image_grid_thw);
        const want = await ref.read(`${family}.${c.name}.pixel_values`);
        assertEquals([pv.rows, pv.cols], want.shape);
        assert(relativeError(pv.data, want.data) < 1e-6, `${c.name}: pixel_values differ`);
      }
    } finally {
      model.dispose();
    }
  });

  Deno.test(`${family}: M-RoPE positions match get_rope_index`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    try {
      for (const c of fixture.cases) {
        const B = c.input_ids.length, T = c.input_ids[0]!.length;
        const pos = ropeIndex(
          Int32Array.from(c.input_ids.flat()),
          B,
          T,
          c.image_grid_thw,
          2,
          model.config,
        );
        const want = await ref.read(`${family}.${c.name}.position_ids`);
        assertEquals([3, B, T], want.shape);
        assertEquals(Array.from(pos), Array.from(want.data), c.name);
      }
    } finally {
      model.dispose();
    }
  });

  if (family === "qwen2_5_vl") {
    Deno.test(`${family}: window order matches get_vision_window_index`, async () => {
      for (const c of fixture.cases) {
        const w = windowIndex(c.image_grid_thw, 2, 56, 14);
        assertEquals(
          Array.from(w.index),
          Array.from((await ref.read(`${family}.${c.name}.window_index`)).data),
        );
        assertEquals(
          w.segments,
          Array.from((await ref.read(`${family}.${c.name}.cu_window_seqlens`)).data),
        );
      }
    });
  }

  Deno.test(`${family}: logits match transformers to 1e-4 (relative)`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    try {
      for (const c of fixture.cases) {
        const pv = imagesToPixelValues(
          c.images.map((im) => ({ data: rgb(im), height: im.height, width: im.width })),
          model.config.vision,
        );
        const logits = tf.tidy(() =>
          model.apply(
            { pixelValues: tf.tensor2d(pv.data, [pv.rows, pv.cols]), gridThw: pv.grids },
            tf.tensor2d(c.input_ids, undefined, "int32"),
          )
        );
        const want = await ref.read(`${family}.${c.name}.logits`);
        assertEquals(logits.shape, want.shape);
        const err = relativeError(await logits.data(), want.data);
        logits.dispose();
        assert(err < 1e-4, `${c.name}: logits relative error ${err.toExponential(2)}`);
      }
    } finally {
      model.dispose();
    }
  });

  Deno.test(`${family}: DV-SFT loss and gradient norms of one step match transformers`, async () => {
    const { model } = await loadQwenVL(FIX + family);
    try {
      const t = fixture.train;
      const [H, W] = [t.images[0]!.height, t.images[0]!.width];
      const before = tf.memory().numTensors;
      // the trainer's path: images [B, H, W, 3] in [0, 1], patchified inside apply
      const pixels = tf.tensor4d(
        Float32Array.from(t.images.flatMap((im) => Array.from(rgb(im)))),
        [t.images.length, H, W, 3],
      );
      const ids = tf.tensor2d(t.input_ids, undefined, "int32");
      const labels = tf.tensor2d(t.labels, undefined, "int32");
      let parts: tf.Scalar[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const l = jointNextTokenLoss(model.apply(pixels, ids), labels, t.vision_range, {
          lambda: 1,
          align: "next",
        });
        parts = [tf.keep(l.text), tf.keep(l.vision)];
        return l.total;
      });
      const [total, text, vision] = await Promise.all(
        [value, ...parts].map(async (s) => (await s.data())[0]!),
      );
      close(text!, t.text_loss, 1e-5, "text loss");
      close(vision!, t.vision_loss, 1e-5, "vision loss");
      close(total!, t.total_loss, 1e-5, "total loss");
      // transformers' own loss is the pooled mean over both parts
      const n = (mask: (p: number, b: number) => boolean) =>
        t.labels.reduce(
          (a, row, b) => a + row.slice(1).filter((v, p) => v >= 0 && mask(p + 1, b)).length,
          0,
        );
      const inVis = (p: number) => p >= t.vision_range[0] && p < t.vision_range[1];
      const nv = n((p) => inVis(p)), nt = n((p) => !inVis(p));
      close((text! * nt + vision! * nv) / (nt + nv), t.hf_loss, 1e-5, "pooled loss vs HF loss");
      const byName = new Map<string, tf.Tensor>();
      for (const [name, w] of model.weights) byName.set(name, grads[w.name]!);
      let all = 0;
      // read back asynchronously: webgpu has no synchronous readback in Deno
      const sq = async (g: tf.Tensor) => {
        const s = tf.tidy(() => tf.sum(tf.square(g)));
        const v = (await s.data())[0]!;
        s.dispose();
        return v;
      };
      for (const g of Object.values(grads)) all += await sq(g);
      close(Math.sqrt(all), t.grad_norm_all, 1e-4, "global gradient norm");
      for (const [name, want] of Object.entries(t.grad_norms)) {
        const g = byName.get(canonicalWeightName(name)); // transformers names them model.visual.*, …
        if (!g) throw new Error(`no gradient for ${name}`);
        close(Math.sqrt(await sq(g)), want, 1e-4, `gradient norm of ${name}`);
      }
      tf.dispose([value, ...parts, pixels, ids, labels]);
      tf.dispose(Object.values(grads));
      assert(
        tf.memory().numTensors <= before + 2,
        `leaked ${tf.memory().numTensors - before} tensors`,
      );
    } finally {
      model.dispose();
    }
  });
}

Deno.test("saveQwenVL → loadQwenVL round trip (sharded f32) keeps every weight", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-qwen-" });
  let model: QwenVLModel | null = null, again: QwenVLModel | null = null;
  try {
    const loaded = await loadQwenVL(FIX + "qwen2_vl");
    model = loaded.model;
    const { files } = await saveQwenVL(model, loaded.configJson, dir, { maxShardBytes: 200_000 });
    assert(files.includes("model.safetensors.index.json"), `sharded: ${files}`);
    again = (await loadQwenVL(dir)).model;
    for (const [name, w] of model.weights) {
      assertEquals(await again.weights.get(name)!.data(), await w.data(), name);
    }
  } finally {
    model?.dispose();
    again?.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the bf16 sharded checkpoint loads and gives the f32 logits to bf16 precision", async () => {
  const { model } = await loadQwenVL(FIX + "qwen2_vl_bf16_sharded");
  try {
    const c = expected.models.qwen2_vl!.cases[0]!;
    const pv = await ref.read(`qwen2_vl.${c.name}.pixel_values`);
    const logits = tf.tidy(() =>
      model.apply(
        {
          pixelValues: tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]),
          gridThw: c.image_grid_thw,
        },
        tf.tensor2d(c.input_ids, undefined, "int32"),
      )
    );
    const err = relativeError(
      await logits.data(),
      (await ref.read(`qwen2_vl.${c.name}.logits`)).data,
    );
    logits.dispose();
    assert(err > 1e-6 && err < 5e-2, `bf16 weights: logits relative error ${err}`);
  } finally {
    model.dispose();
  }
});

Deno.test("bad checkpoints and inputs are refused with the offending value named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-qwen-bad-" });
  try {
    const config = JSON.parse(await Deno.readTextFile(FIX + "qwen2_vl/config.json"));
    await Deno.copyFile(FIX + "qwen2_vl/model.safetensors", dir + "/model.safetensors");
    await Deno.writeTextFile(
      dir + "/config.json",
      JSON.stringify({ ...config, text_config: { ...config.text_config, num_hidden_layers: 3 } }),
    );
    await assertRejects(
      () => loadQwenVL(dir),
      RangeError,
      "weight 'model.layers.2.input_layernorm.weight' is missing",
    );
    await Deno.writeTextFile(
      dir + "/config.json",
      JSON.stringify({ ...config, text_config: { ...config.text_config, intermediate_size: 64 } }),
    );
    await assertRejects(() => loadQwenVL(dir), RangeError, "[48,32], the config needs [64,32]");
    await Deno.writeTextFile(
      dir + "/config.json",
      JSON.stringify({ ...config, model_type: "llava" }),
    );
    await assertRejects(() => loadQwenVL(dir), QwenConfigError, "model_type");
    await Deno.writeTextFile(dir + "/config.json", JSON.stringify(config));
    await assertRejects(
      () => loadQwenVL(dir, { maxParameters: 1000 }),
      RangeError,
      "exceed maxParameters 1000",
    );
    const { model } = await loadQwenVL(dir);
    try {
      const c = expected.models.qwen2_vl!.cases[0]!;
      const pv = await ref.read(`qwen2_vl.${c.name}.pixel_values`);
      const input = {
        pixelValues: tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]),
        gridThw: [c.image_grid_thw[0]!],
      };
      assertThrows(
        () => model.apply(input, tf.tensor2d(c.input_ids, undefined, "int32")),
        RangeError,
        "pixel_values is [48,1176], the grids [[1,4,6]] need [24, 1176]",
      );
      const ids = c.input_ids.map((r) => r.map((v) => v === 292 ? 5 : v));
      assertThrows(
        () =>
          model.apply(
            { ...input, gridThw: c.image_grid_thw },
            tf.tensor2d(ids, undefined, "int32"),
          ),
        RangeError,
        "2 image grid(s) given, the input ids hold 0",
      );
      assertThrows(
        () =>
          model.apply(
            { ...input, gridThw: c.image_grid_thw },
            tf.tensor2d([[1, 300]], undefined, "int32"),
          ),
        RangeError,
        "input id 300",
      );
      input.pixelValues.dispose();
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("released Qwen2-VL-2B / Qwen2.5-VL-3B config.json (flat layout, rope_scaling) parse to transformers' parameter counts", async () => {
  const counts = (JSON.parse(await Deno.readTextFile(FIX + "expected.json")) as {
    real_config_parameters: Record<string, number>;
  }).real_config_parameters;
  for (const [name, want] of Object.entries(counts)) {
    const config = parseQwenConfig(
      JSON.parse(await Deno.readTextFile(`${FIX}real_configs/${name}.json`)),
    );
    assertEquals(qwenParameterCount(config), want, name);
    let n = 0;
    for (const shape of qwenWeightShapes(config).values()) n += shape.reduce((a, b) => a * b, 1);
    assertEquals(n, want, `${name}: weight shapes`);
    assertEquals(config.text.mropeSection, [16, 24, 24]);
    assertEquals(config.text.ropeTheta, 1e6);
    assertEquals(config.tieWordEmbeddings, true);
  }
  // too big for the wasm heap: refused before any weight is read
  const dir = await Deno.makeTempDir({ prefix: "dvsft-qwen-big-" });
  try {
    await Deno.copyFile(`${FIX}real_configs/qwen2_vl_2b_instruct.json`, `${dir}/config.json`);
    if (tf.getBackend() === "wasm") {
      await assertRejects(
        () => loadQwenVL(dir),
        RangeError,
        "the wasm heap (32-bit) holds at most 3.9 GiB",
      );
    }
    await assertRejects(
      () => loadQwenVL(dir, { maxParameters: 1e9 }),
      RangeError,
      "2208985600 parameters exceed maxParameters",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "logits larger than one webgpu storage binding are refused, not computed wrong",
  ignore: tf.getBackend() !== "webgpu", // the bound exists only there
}, async () => {
  const { model } = await loadQwenVL(FIX + "qwen2_vl");
  try {
    const limit = backendTensorByteLimit();
    const T = Math.ceil(limit / 4 / 300) + 1; // [1, T, 300] logits just past the limit
    assertThrows(
      () =>
        model.apply({ pixelValues: tf.zeros([0, 1176]), gridThw: [] }, tf.zeros([1, T], "int32")),
      RangeError,
      "maxStorageBufferBindingSize",
    );
  } finally {
    model.dispose();
  }
});

Deno.test("a checkpoint saveQwenVL wrote (bf16, sharded) loads in transformers with our logits (check_lora.py's figure)", async () => {
  const dir = FIX + "qwen2_vl_saved_bf16";
  const check = JSON.parse(await Deno.readTextFile(dir + "/check.json")) as {
    relative_error: number;
  };
  assert(check.relative_error < 1e-4, `transformers vs tfjs logits: ${check.relative_error}`);
  // the files still give the logits check_lora.py compared against
  const { model } = await loadQwenVL(dir);
  try {
    const c = expected.models.qwen2_vl!.cases[0]!;
    const pv = await ref.read(`qwen2_vl.${c.name}.pixel_values`);
    const logits = tf.tidy(() =>
      model.apply(
        {
          pixelValues: tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]),
          gridThw: c.image_grid_thw,
        },
        tf.tensor2d(c.input_ids, undefined, "int32"),
      )
    );
    const f = await SafetensorsFile.open(dir + "/logits_tfjs.safetensors");
    const want = await f.read("logits");
    f.close();
    const err = relativeError(await logits.data(), want.data);
    logits.dispose();
    assert(err < 1e-5, `logits from the saved checkpoint: ${err}`);
  } finally {
    model.dispose();
  }
});

Deno.test("QwenVLModel has the trainer's model shape (weights, apply(images [B, H, W, 3], ids), dispose)", async () => {
  const { model } = await loadQwenVL(FIX + "qwen2_vl");
  try {
    // compile-time: the interface the trainer calls, less the built-in model's own config type
    const asTrainerModel: Omit<VisionLanguageModel, "config"> = model;
    assertEquals(asTrainerModel.weights.size, model.hfShapes.size);
  } finally {
    model.dispose();
  }
});
