/**
 * Qwen2-VL and Qwen2.5-VL in tfjs, built from a Hugging Face checkpoint's config.json and
 * weights, behind the trainer's `apply(pixels, inputIds) → logits`.
 *
 * Vision tower: the Conv3d patch embedding as one matmul over flattened patches, blocks with
 * 2-D RoPE attention inside each image (Qwen2.5-VL: inside windows, except the full-attention
 * blocks), LayerNorm + QuickGELU MLP (Qwen2-VL) or RMSNorm + SwiGLU (Qwen2.5-VL), then the 2×2
 * patch merger. Decoder: Qwen2 (RMSNorm, grouped-query attention with qkv bias, SwiGLU, M-RoPE
 * over (t, h, w) positions), tied or untied LM head. The image features replace the
 * `<|image_pad|>` tokens in order, as transformers' `masked_scatter` does.
 *
 * Weights are keyed by the checkpoint names transformers writes (`visual.blocks.0.attn.qkv.weight`,
 * `model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`). Linear weights are held as
 * [in, out] (the transpose of PyTorch's [out, in]) and the patch embedding as
 * [C·tps·ps·ps, dim]; {@linkcode fromHfTensor} / {@linkcode toHfTensor} convert.
 */
import { tf } from "../../backend/mod.ts";
import { type Activation, qwenParameterCount, type QwenVLConfig } from "./config.ts";
import {
  frameSegments,
  gridPatches,
  type GridThw,
  gridTokens,
  inversePermutation,
  mropeCosSin,
  ropeIndex,
  visionPositionIds,
  visionRope,
  windowIndex,
} from "./positions.ts";
import { imagesToPixelValues } from "./pixels.ts";
import { Rng } from "../../util/rng.ts";

/**
 * The visual input of a Qwen2-VL-family model, as transformers' processor gives it:
 * `pixelValues` [patches, C·tps·ps·ps] (see `pixels.ts`) and one (t, h, w) grid per image, in the
 * order the images' `<|image_pad|>` runs appear in the batch (row by row).
 */
export interface QwenVisionInput {
  pixelValues: tf.Tensor2D;
  gridThw: GridThw[];
}

/** One LoRA adapter on a linear layer: y += (x·A)·B · alpha / rank. */
export interface LoraAdapter {
  /** [in, rank] */
  a: tf.Variable;
  /** [rank, out] */
  b: tf.Variable;
  scale: number;
}

let instances = 0;

/** Names of the weights a config has, with their checkpoint (PyTorch) shapes. */
export function qwenWeightShapes(c: QwenVLConfig): Map<string, number[]> {
  const s = new Map<string, number[]>();
  const v = c.vision;
  const t = c.text;
  s.set("visual.patch_embed.proj.weight", [
    v.dim,
    v.inChannels,
    v.temporalPatchSize,
    v.patchSize,
    v.patchSize,
  ]);
  for (let i = 0; i < v.depth; i++) {
    const p = `visual.blocks.${i}`;
    s.set(`${p}.norm1.weight`, [v.dim]);
    s.set(`${p}.norm2.weight`, [v.dim]);
    if (v.kind === "layer") {
      s.set(`${p}.norm1.bias`, [v.dim]);
      s.set(`${p}.norm2.bias`, [v.dim]);
    }
    s.set(`${p}.attn.qkv.weight`, [3 * v.dim, v.dim]);
    s.set(`${p}.attn.qkv.bias`, [3 * v.dim]);
    s.set(`${p}.attn.proj.weight`, [v.dim, v.dim]);
    s.set(`${p}.attn.proj.bias`, [v.dim]);
    if (v.kind === "layer") {
      s.set(`${p}.mlp.fc1.weight`, [v.mlpDim, v.dim]);
      s.set(`${p}.mlp.fc1.bias`, [v.mlpDim]);
      s.set(`${p}.mlp.fc2.weight`, [v.dim, v.mlpDim]);
      s.set(`${p}.mlp.fc2.bias`, [v.dim]);
    } else {
      for (const g of ["gate_proj", "up_proj"]) {
        s.set(`${p}.mlp.${g}.weight`, [v.mlpDim, v.dim]);
        s.set(`${p}.mlp.${g}.bias`, [v.mlpDim]);
      }
      s.set(`${p}.mlp.down_proj.weight`, [v.dim, v.mlpDim]);
      s.set(`${p}.mlp.down_proj.bias`, [v.dim]);
    }
  }
  const m = v.dim * v.mergeSize ** 2;
  s.set("visual.merger.ln_q.weight", [v.dim]);
  if (v.kind === "layer") s.set("visual.merger.ln_q.bias", [v.dim]);
  s.set("visual.merger.mlp.0.weight", [m, m]);
  s.set("visual.merger.mlp.0.bias", [m]);
  s.set("visual.merger.mlp.2.weight", [v.outDim, m]);
  s.set("visual.merger.mlp.2.bias", [v.outDim]);
  s.set("model.embed_tokens.weight", [t.vocabSize, t.hidden]);
  const kv = t.kvHeads * t.headDim;
  for (let i = 0; i < t.layers; i++) {
    const p = `model.layers.${i}`;
    s.set(`${p}.input_layernorm.weight`, [t.hidden]);
    s.set(`${p}.post_attention_layernorm.weight`, [t.hidden]);
    s.set(`${p}.self_attn.q_proj.weight`, [t.hidden, t.hidden]);
    s.set(`${p}.self_attn.q_proj.bias`, [t.hidden]);
    s.set(`${p}.self_attn.k_proj.weight`, [kv, t.hidden]);
    s.set(`${p}.self_attn.k_proj.bias`, [kv]);
    s.set(`${p}.self_attn.v_proj.weight`, [kv, t.hidden]);
    s.set(`${p}.self_attn.v_proj.bias`, [kv]);
    s.set(`${p}.self_attn.o_proj.weight`, [t.hidden, t.hidden]);
    s.set(`${p}.mlp.gate_proj.weight`, [t.intermediate, t.hidden]);
    s.set(`${p}.mlp.up_proj.weight`, [t.intermediate, t.hidden]);
    s.set(`${p}.mlp.down_proj.weight`, [t.hidden, t.intermediate]);
  }
  s.set("model.norm.weight", [t.hidden]);
  if (!c.tieWordEmbeddings) s.set("lm_head.weight", [t.vocabSize, t.hidden]);
  return s;
}

/** Checkpoint names of the newer layout (`model.language_model.*`, `model.visual.*`) → ours. */
export function canonicalWeightName(name: string): string {
  if (name.startsWith("model.language_model.")) {
    return "model." + name.slice("model.language_model.".length);
  }
  if (name.startsWith("model.visual.")) return name.slice("model.".length);
  return name;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  }
  return out;
}

/** Does this weight live transposed here ([in, out])? Linear weights and the patch embedding. */
function isMatrix(name: string, hfShape: readonly number[]): boolean {
  return name !== "model.embed_tokens.weight" && name.endsWith(".weight") && hfShape.length >= 2;
}

/** A checkpoint tensor (PyTorch layout) → our layout. */
export function fromHfTensor(
  name: string,
  hfShape: readonly number[],
  data: Float32Array,
): { shape: number[]; data: Float32Array } {
  if (!isMatrix(name, hfShape)) return { shape: [...hfShape], data };
  const out = hfShape[0]!;
  const inner = data.length / out;
  return { shape: [inner, out], data: transpose2d(data, out, inner) };
}

/** Our layout → the checkpoint's (PyTorch) layout. */
export function toHfTensor(
  name: string,
  hfShape: readonly number[],
  data: Float32Array,
): Float32Array {
  if (!isMatrix(name, hfShape)) return data;
  const out = hfShape[0]!;
  return transpose2d(data, data.length / out, out);
}

/**
 * Randomly initialised weights for a config, in our layout (transformers' scheme: normal(0, std)
 * matrices and embeddings, zero biases, unit norms), seeded. For tests and from-scratch runs.
 */
export function randomQwenWeights(
  config: QwenVLConfig,
  seed = 0,
  std = 0.02,
): Map<string, { shape: number[]; data: Float32Array }> {
  const rng = new Rng(seed);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of qwenWeightShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (/norm\d?\.weight$|layernorm\.weight$|ln_q\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith(".bias")) {
      for (let i = 0; i < n; i++) {
        const u = Math.max(rng.next(), 1e-12), v = rng.next();
        data[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
      }
    }
    // iid values: drawn straight into our layout (a transpose would only cost time)
    const ours = isMatrix(name, shape) ? [n / shape[0]!, shape[0]!] : [...shape];
    out.set(name, { shape: ours, data });
  }
  return out;
}

/**
 * The largest single tensor the current backend computes correctly, in bytes: on webgpu the
 * device's `maxStorageBufferBindingSize` (tfjs binds a tensor as one storage buffer; past it,
 * results are silently wrong — measured on lavapipe, whose limit is 128 MiB), elsewhere unbounded
 * here (wasm's whole heap is bounded separately at load).
 */
export function backendTensorByteLimit(): number {
  if (tf.getBackend() !== "webgpu") return Infinity;
  const device =
    (tf.backend() as unknown as { device?: { limits?: { maxStorageBufferBindingSize?: number } } })
      .device;
  return device?.limits?.maxStorageBufferBindingSize ?? Infinity;
}

/** Refuse a tensor the backend cannot hold in one piece (see backendTensorByteLimit). */
export function checkTensorBytes(what: string, elements: number): void {
  const limit = backendTensorByteLimit();
  if (4 * elements >= limit) {
    throw new RangeError(
      `Cannot run Qwen2-VL on ${tf.getBackend()}: ${what} needs ${
        (4 * elements / 2 ** 20).toFixed(0)
      } MiB in one tensor, the device binds at most ${
        (limit / 2 ** 20).toFixed(0)
      } MiB (maxStorageBufferBindingSize)`,
    );
  }
}

/** Options of {@linkcode QwenVLModel}. */
export interface QwenVLModelOptions {
  /** Refuse configs above this many parameters before allocating anything. @default 8e9 */
  maxParameters?: number;
}

/**
 * A Qwen2-VL / Qwen2.5-VL model. Build it with `loadQwenVL` (from a checkpoint folder) or from a
 * config and weights.
 */
export class QwenVLModel {
  readonly weights: Map<string, tf.Variable>;
  /** LoRA adapters by module name (`model.layers.0.self_attn.q_proj`). */
  readonly lora = new Map<string, LoraAdapter>();
  readonly hfShapes: Map<string, number[]>;
  readonly prefix: string;

  constructor(
    readonly config: QwenVLConfig,
    weights: Map<string, tf.Variable>,
    options: QwenVLModelOptions = {},
  ) {
    const { maxParameters = 8e9 } = options;
    const n = qwenParameterCount(config);
    if (n > maxParameters) {
      throw new RangeError(
        `Cannot build Qwen2-VL model: ${n} parameters exceed maxParameters ${maxParameters}`,
      );
    }
    this.hfShapes = qwenWeightShapes(config);
    for (const [name, shape] of this.hfShapes) {
      const w = weights.get(name);
      if (!w) throw new RangeError(`Cannot build Qwen2-VL model: weight '${name}' is missing`);
      const size = shape.reduce((a, b) => a * b, 1);
      if (w.size !== size) {
        throw new RangeError(
          `Cannot build Qwen2-VL model: weight '${name}' has ${w.size} values, the config needs ${
            JSON.stringify(shape)
          }`,
        );
      }
    }
    for (const name of weights.keys()) {
      if (!this.hfShapes.has(name)) {
        throw new RangeError(`Cannot build Qwen2-VL model: unexpected weight '${name}'`);
      }
    }
    for (const [name, w] of weights) checkTensorBytes(`weight '${name}'`, w.size);
    this.weights = weights;
    this.prefix = `qwen${++instances}/`;
  }

  /** Make tf.Variables from f32 tensors in our layout (keyed by checkpoint name). */
  static variables(
    tensors: Map<string, { shape: number[]; data: Float32Array }>,
    prefix = `qwenw${++instances}/`,
  ): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, t] of tensors) {
      const init = tf.tensor(t.data, t.shape, "float32");
      out.set(name, tf.variable(init, true, prefix + name));
      init.dispose();
    }
    return out;
  }

  #w(name: string): tf.Variable {
    const v = this.weights.get(name);
    if (!v) throw new RangeError(`Qwen2-VL weight '${name}' is missing`);
    return v;
  }

  /** x [..., in] through linear module `p` (its `.weight`, `.bias` if any, LoRA if any). */
  #linear(x: tf.Tensor, p: string): tf.Tensor {
    const w = this.#w(`${p}.weight`);
    const shape = x.shape;
    const k = shape[shape.length - 1]!;
    const x2 = tf.reshape(x, [-1, k]);
    let y = tf.matMul(x2, w);
    const b = this.weights.get(`${p}.bias`);
    if (b) y = tf.add(y, b);
    const lora = this.lora.get(p);
    if (lora) y = tf.add(y, tf.mul(tf.matMul(tf.matMul(x2, lora.a), lora.b), lora.scale));
    return tf.reshape(y, [...shape.slice(0, -1), w.shape[1]!]);
  }

  /** x · tokᵀ or through lm_head: [B·T, D] → [B·T, V]. */
  #head(x: tf.Tensor2D): tf.Tensor2D {
    if (this.config.tieWordEmbeddings) {
      return tf.matMul(x, this.#w("model.embed_tokens.weight"), false, true);
    }
    return this.#linear(x, "lm_head") as tf.Tensor2D;
  }

  static act(x: tf.Tensor, act: Activation): tf.Tensor {
    switch (act) {
      case "silu":
        return tf.mul(x, tf.sigmoid(x));
      case "quick_gelu":
        return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
      case "gelu":
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
      case "gelu_pytorch_tanh": {
        const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
      }
    }
  }

  static rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(w, tf.mul(x, tf.rsqrt(tf.add(variance, eps))));
  }

  static layerNorm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), w), b);
  }

  /** x·cos + rotate_half(x)·sin over the last axis (rotate_half: [x1, x2] → [-x2, x1]). */
  static rope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
    const d = x.shape[x.shape.length - 1]!;
    const [x1, x2] = tf.split(x, [d / 2, d / 2], -1);
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2!), x1!], -1), sin));
  }

  #visionNorm(x: tf.Tensor, p: string): tf.Tensor {
    if (this.config.vision.kind === "rms") {
      return QwenVLModel.rmsNorm(x, this.#w(`${p}.weight`), 1e-6);
    }
    return QwenVLModel.layerNorm(x, this.#w(`${p}.weight`), this.#w(`${p}.bias`), 1e-6);
  }

  /** Bidirectional attention of one vision block within segments [cu[i], cu[i+1]). x [N, D]. */
  #visionAttention(
    x: tf.Tensor,
    p: string,
    cos: tf.Tensor,
    sin: tf.Tensor,
    cu: number[],
  ): tf.Tensor {
    const { dim: D, heads: H } = this.config.vision;
    const hd = D / H;
    const N = x.shape[0]!;
    const qkv = tf.reshape(this.#linear(x, `${p}.qkv`), [N, 3, H, hd]);
    const [q0, k0, v0] = tf.split(qkv, 3, 1).map((t) => tf.reshape(t, [N, H, hd]));
    const q = tf.transpose(QwenVLModel.rope(q0!, cos, sin), [1, 0, 2]); // [H, N, hd]
    const k = tf.transpose(QwenVLModel.rope(k0!, cos, sin), [1, 0, 2]);
    const v = tf.transpose(v0!, [1, 0, 2]);
    const sizes = cu.slice(1).map((e, i) => e - cu[i]!);
    const qs = sizes.length > 1 ? tf.split(q, sizes, 1) : [q];
    const ks = sizes.length > 1 ? tf.split(k, sizes, 1) : [k];
    const vs = sizes.length > 1 ? tf.split(v, sizes, 1) : [v];
    const outs = qs.map((qi, i) => {
      const att = tf.softmax(tf.mul(tf.matMul(qi, ks[i]!, false, true), 1 / Math.sqrt(hd)));
      return tf.matMul(att, vs[i]!); // [H, n, hd]
    });
    const y = tf.reshape(tf.transpose(outs.length > 1 ? tf.concat(outs, 1) : outs[0]!, [1, 0, 2]), [
      N,
      D,
    ]);
    return this.#linear(y, `${p}.proj`);
  }

  #visionMlp(x: tf.Tensor, p: string): tf.Tensor {
    const act = this.config.vision.act;
    if (this.config.vision.kind === "layer") {
      return this.#linear(QwenVLModel.act(this.#linear(x, `${p}.fc1`), act), `${p}.fc2`);
    }
    const gated = tf.mul(
      QwenVLModel.act(this.#linear(x, `${p}.gate_proj`), act),
      this.#linear(x, `${p}.up_proj`),
    );
    return this.#linear(gated, `${p}.down_proj`);
  }

  /** pixel_values must hold exactly the grids' patches; returns the patch count. */
  #checkPixels(pixelValues: tf.Tensor2D, grids: readonly GridThw[]): number {
    const v = this.config.vision;
    const P = grids.reduce((a, g) => a + gridPatches(g, v.mergeSize), 0);
    const cols = v.inChannels * v.temporalPatchSize * v.patchSize ** 2;
    if (pixelValues.shape[0] !== P || pixelValues.shape[1] !== cols) {
      throw new RangeError(
        `Cannot encode images: pixel_values is ${JSON.stringify(pixelValues.shape)}, the grids ${
          JSON.stringify(grids)
        } need [${P}, ${cols}]`,
      );
    }
    return P;
  }

  /**
   * pixel_values [P, C·tps·ps·ps] + grids → image features [P / merge², decoder hidden], images in
   * order (transformers' `get_image_features`, concatenated).
   */
  encodeImages(pixelValues: tf.Tensor2D, grids: readonly GridThw[]): tf.Tensor2D {
    const v = this.config.vision;
    const unit = v.mergeSize * v.mergeSize;
    const P = this.#checkPixels(pixelValues, grids);
    const hd = v.dim / v.heads;
    const rope = visionRope(visionPositionIds(grids, v.mergeSize), hd, v.ropeTheta);
    const full = frameSegments(grids);
    let order: Int32Array | null = null;
    let windows = full;
    if (v.windowSize !== null) {
      const w = windowIndex(grids, v.mergeSize, v.windowSize, v.patchSize);
      order = w.index;
      windows = w.segments;
    }
    // Qwen2.5-VL: patches regrouped by merge unit so that each window is contiguous
    const reorder = (x: tf.Tensor, width: number) =>
      order
        ? tf.reshape(tf.gather(tf.reshape(x, [P / unit, unit * width]), Array.from(order)), [
          P,
          width,
        ])
        : x;
    const cos = tf.reshape(reorder(tf.tensor2d(rope.cos, [P, hd]), hd), [P, 1, hd]);
    const sin = tf.reshape(reorder(tf.tensor2d(rope.sin, [P, hd]), hd), [P, 1, hd]);
    let x = reorder(this.#linear(pixelValues, "visual.patch_embed.proj"), v.dim); // [P, D]
    for (let i = 0; i < v.depth; i++) {
      const p = `visual.blocks.${i}`;
      const cu = order && !v.fullAttBlocks.includes(i) ? windows : full;
      x = tf.add(
        x,
        this.#visionAttention(this.#visionNorm(x, `${p}.norm1`), `${p}.attn`, cos, sin, cu),
      );
      x = tf.add(x, this.#visionMlp(this.#visionNorm(x, `${p}.norm2`), `${p}.mlp`));
    }
    const merged = tf.reshape(this.#visionNorm(x, "visual.merger.ln_q"), [P / unit, unit * v.dim]);
    let y = this.#linear(
      QwenVLModel.act(this.#linear(merged, "visual.merger.mlp.0"), "gelu"),
      "visual.merger.mlp.2",
    );
    if (order) y = tf.gather(y, Array.from(inversePermutation(order)));
    return y as tf.Tensor2D;
  }

  /** Images [B, H, W, 3] in [0, 1] (sides multiples of 28) → this model's visual input. */
  visionInputFromPixels(pixels: tf.Tensor4D): QwenVisionInput {
    const [B, H, W, C] = pixels.shape;
    const all = pixels.dataSync() as Float32Array;
    const n = H * W * C;
    const images = Array.from(
      { length: B },
      (_, b) => ({ data: all.subarray(b * n, (b + 1) * n), height: H, width: W }),
    );
    const v = this.config.vision;
    const pv = imagesToPixelValues(images, v);
    return { pixelValues: tf.tensor2d(pv.data, [pv.rows, pv.cols]), gridThw: pv.grids };
  }

  /** Image-token count of an input: what a sequence must hold per image. */
  imageTokens(grid: GridThw): number {
    return gridTokens(grid, this.config.vision.mergeSize);
  }

  #attention(
    x: tf.Tensor,
    p: string,
    cos: tf.Tensor,
    sin: tf.Tensor,
    B: number,
    T: number,
  ): tf.Tensor {
    const { heads: H, kvHeads: KV, headDim: hd, hidden } = this.config.text;
    const rep = H / KV;
    const split = (t: tf.Tensor, h: number) =>
      tf.transpose(tf.reshape(t, [B, T, h, hd]), [0, 2, 1, 3]);
    const q = QwenVLModel.rope(split(this.#linear(x, `${p}.q_proj`), H), cos, sin); // [B, H, T, hd]
    const k = QwenVLModel.rope(split(this.#linear(x, `${p}.k_proj`), KV), cos, sin); // [B, KV, T, hd]
    const v = split(this.#linear(x, `${p}.v_proj`), KV);
    // grouped-query attention without repeating k, v: the rep query heads of a kv head as rows
    const qg = tf.reshape(q, [B, KV, rep * T, hd]);
    let att = tf.mul(tf.matMul(qg, k, false, true), 1 / Math.sqrt(hd)); // [B, KV, rep·T, T]
    att = tf.add(att, causalMask(T, rep));
    const y = tf.reshape(tf.matMul(tf.softmax(att), v), [B, H, T, hd]);
    return this.#linear(tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, hidden]), `${p}.o_proj`);
  }

  /**
   * Logits [B, T, V] for a batch: `inputIds` [B, T] int32 with one `<|image_pad|>` per visual
   * token (t·h·w / merge² per image, images in `vision.gridThw` order row by row). `vision` may
   * also be images [B, H, W, 3] in [0, 1], one per row, patchified here.
   */
  apply(vision: QwenVisionInput | tf.Tensor4D, inputIds: tf.Tensor2D): tf.Tensor3D {
    const input = vision instanceof tf.Tensor ? this.visionInputFromPixels(vision) : vision;
    const created = vision instanceof tf.Tensor ? input.pixelValues : null;
    try {
      return this.#forward(input, inputIds);
    } finally {
      created?.dispose();
    }
  }

  #forward(vision: QwenVisionInput, inputIds: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = inputIds.shape;
    const t = this.config.text;
    checkTensorBytes(`the logits [${B}, ${T}, ${t.vocabSize}]`, B * T * t.vocabSize);
    if (vision.gridThw.length > 0) this.#checkPixels(vision.pixelValues, vision.gridThw);
    const ids = inputIds.dataSync() as Int32Array;
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i]! >= 0 && ids[i]! < t.vocabSize)) {
        throw new RangeError(
          `Cannot apply model: input id ${ids[i]} at ${i} is outside [0, ${t.vocabSize})`,
        );
      }
    }
    const positions = ropeIndex(
      ids,
      B,
      T,
      vision.gridThw,
      this.config.vision.mergeSize,
      this.config,
    );
    const rope = mropeCosSin(positions, B, T, t.headDim, t.ropeTheta, t.mropeSection);
    const cos = tf.tensor4d(rope.cos, [B, 1, T, t.headDim]);
    const sin = tf.tensor4d(rope.sin, [B, 1, T, t.headDim]);
    const tok = this.#w("model.embed_tokens.weight");
    let x: tf.Tensor = tf.gather(tok, tf.reshape(inputIds, [B * T])); // [B·T, D]
    if (vision.gridThw.length > 0) {
      const img = this.encodeImages(vision.pixelValues, vision.gridThw); // [Ni, D]
      // every image token takes the next image feature row (transformers' masked_scatter)
      const index = new Int32Array(B * T);
      let k = 0;
      for (let i = 0; i < B * T; i++) {
        index[i] = ids[i] === this.config.imageTokenId ? B * T + k++ : i;
      }
      if (k !== img.shape[0]) {
        throw new RangeError(
          `Cannot apply model: ${k} image tokens in the input, ${img.shape[0]} image features`,
        );
      }
      x = tf.gather(tf.concat([x, img], 0), tf.tensor1d(index, "int32"));
    }
    x = tf.reshape(x, [B, T, t.hidden]);
    for (let i = 0; i < t.layers; i++) {
      const p = `model.layers.${i}`;
      const h = QwenVLModel.rmsNorm(x, this.#w(`${p}.input_layernorm.weight`), t.rmsEps);
      x = tf.add(x, this.#attention(h, `${p}.self_attn`, cos, sin, B, T));
      const h2 = QwenVLModel.rmsNorm(x, this.#w(`${p}.post_attention_layernorm.weight`), t.rmsEps);
      const gated = tf.mul(
        QwenVLModel.act(this.#linear(h2, `${p}.mlp.gate_proj`), t.act),
        this.#linear(h2, `${p}.mlp.up_proj`),
      );
      x = tf.add(x, this.#linear(gated, `${p}.mlp.down_proj`));
    }
    x = QwenVLModel.rmsNorm(x, this.#w("model.norm.weight"), t.rmsEps);
    return tf.reshape(this.#head(tf.reshape(x, [B * T, t.hidden]) as tf.Tensor2D), [
      B,
      T,
      t.vocabSize,
    ]) as tf.Tensor3D;
  }

  /** Parameter count (base weights, adapters excluded). */
  get parameterCount(): number {
    let n = 0;
    for (const w of this.weights.values()) n += w.size;
    return n;
  }

  dispose(): void {
    for (const w of this.weights.values()) w.dispose();
    for (const l of this.lora.values()) {
      l.a.dispose();
      l.b.dispose();
    }
  }
}

/** Additive causal masks [rep·T, T] (query rows grouped rep times), cached per backend and size. */
const masks = new Map<string, tf.Tensor>();
function causalMask(T: number, rep: number): tf.Tensor {
  const key = `${tf.getBackend()}:${T}:${rep}`;
  let m = masks.get(key);
  if (!m || m.isDisposed) {
    const v = new Float32Array(rep * T * T);
    for (let r = 0; r < rep; r++) {
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) v[(r * T + i) * T + j] = -1e9;
    }
    m = tf.keep(tf.tensor2d(v, [rep * T, T]));
    masks.set(key, m);
  }
  return m;
}
