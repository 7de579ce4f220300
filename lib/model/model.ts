/**
 * A small multimodal LM in tfjs: ViT patch encoder (2-D position embeddings, bidirectional
 * attention) → 2×2 patch merger (Qwen2-VL style) → MLP projector → decoder-only LM
 * (pre-norm, causal attention over [vision; text]) with the LM head tied to the token
 * embedding.
 *
 * The trainer sees only {@linkcode VisionLanguageModel}: `apply(pixels, inputIds) → logits`.
 */
import { attentionQkv, gelu, layerNorm, linear, tf } from "../backend/mod.ts";
import { Rng } from "../util/rng.ts";
import { type ModelConfig, numVisualTokens, sequenceLength } from "./config.ts";

/** What the trainer needs from a model: a forward pass and its weights. */
export interface VisionLanguageModel {
  readonly config: ModelConfig;
  /** Trainable weights by name (stable order). */
  readonly weights: Map<string, tf.Variable>;
  /**
   * pixels [B, S, S, 3] in [0, 1]; inputIds [B, T] int32 with visual positions 1…N (their ids
   * are ignored) → logits [B, T, V].
   */
  apply(pixels: tf.Tensor4D, inputIds: tf.Tensor2D): tf.Tensor3D;
  dispose(): void;
}

function normal(rng: Rng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box–Muller: two normals per two uniforms
    const u = Math.max(rng.next(), 1e-12);
    const v = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

let instances = 0;

/** One weight of a config: its name, shape and initialisation (normal: with this std). */
interface WeightSpec {
  name: string;
  shape: number[];
  init: "normal" | "zeros" | "ones";
  std: number;
}

/** Every weight of a config, in the order `initWeights` draws them. */
function weightSpecs(config: ModelConfig): WeightSpec[] {
  const specs: WeightSpec[] = [];
  const add = (name: string, shape: number[], init: WeightSpec["init"], std = 0.02) =>
    specs.push({ name, shape, init, std });
  const block = (p: string, d: number, layers: number) => {
    const hidden = d * config.mlpRatio;
    const projStd = 0.02 / Math.sqrt(2 * layers); // GPT-2's scaled init of residual projections
    add(`${p}.ln1.g`, [d], "ones");
    add(`${p}.ln1.b`, [d], "zeros");
    // q, k, v as three weights: slicing a fused [B, T, 3C] output is a slow strided copy on wasm
    for (const h of ["q", "k", "v"]) {
      add(`${p}.attn.${h}.w`, [d, d], "normal");
      add(`${p}.attn.${h}.b`, [d], "zeros");
    }
    add(`${p}.attn.o.w`, [d, d], "normal", projStd);
    add(`${p}.attn.o.b`, [d], "zeros");
    add(`${p}.ln2.g`, [d], "ones");
    add(`${p}.ln2.b`, [d], "zeros");
    add(`${p}.mlp.fc.w`, [d, hidden], "normal");
    add(`${p}.mlp.fc.b`, [hidden], "zeros");
    add(`${p}.mlp.proj.w`, [hidden, d], "normal", projStd);
    add(`${p}.mlp.proj.b`, [d], "zeros");
  };
  const { patchSize: ps, visionDim: dv, dim: d } = config;
  const g = config.imageSize / ps;
  add("vision.patch.w", [ps * ps * 3, dv], "normal");
  add("vision.patch.b", [dv], "zeros");
  add("vision.pos.row", [g, dv], "normal");
  add("vision.pos.col", [g, dv], "normal");
  for (let i = 0; i < config.visionLayers; i++) block(`vision.block${i}`, dv, config.visionLayers);
  add("vision.ln.g", [dv], "ones");
  add("vision.ln.b", [dv], "zeros");
  add("merger.fc1.w", [4 * dv, d], "normal");
  add("merger.fc1.b", [d], "zeros");
  add("merger.fc2.w", [d, d], "normal");
  add("merger.fc2.b", [d], "zeros");
  add("lm.tok", [config.vocabSize, d], "normal");
  add("lm.pos", [sequenceLength(config), d], "normal", 0.01);
  for (let i = 0; i < config.layers; i++) block(`lm.block${i}`, d, config.layers);
  add("lm.ln.g", [d], "ones");
  add("lm.ln.b", [d], "zeros");
  return specs;
}

/** The parameters a config has, counted without building it (for bounds checked first). */
export function parameterCount(config: ModelConfig): number {
  return weightSpecs(config).reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Build the weights of a config, seeded: same seed → same weights on every backend.
 * Map keys are the weight names; the tf.Variable names get a per-model prefix (`m3/…`)
 * because tfjs variable names are global to the engine.
 */
export function initWeights(config: ModelConfig, seed: number): Map<string, tf.Variable> {
  const rng = new Rng(seed);
  const prefix = `m${++instances}/`;
  const w = new Map<string, tf.Variable>();
  for (const { name, shape, init, std } of weightSpecs(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = init === "normal"
      ? normal(rng, n, std)
      : new Float32Array(n).fill(init === "ones" ? 1 : 0);
    const initial = tf.tensor(values, shape, "float32");
    w.set(name, tf.variable(initial, true, prefix + name));
    initial.dispose(); // the variable holds its own reference to the buffer
  }
  return w;
}

/** The small MLLM. */
export class SmallVLM implements VisionLanguageModel {
  readonly weights: Map<string, tf.Variable>;

  constructor(readonly config: ModelConfig, weights?: Map<string, tf.Variable>, seed = 0) {
    this.weights = weights ?? initWeights(config, seed);
  }

  #w(name: string): tf.Variable {
    const v = this.weights.get(name);
    if (!v) throw new RangeError(`Model weight '${name}' is missing`);
    return v;
  }

  #attention(x: tf.Tensor, p: string, heads: number, causal: boolean): tf.Tensor {
    // q, k, v by one product against the three weights side by side (one wide sgemm instead of
    // three narrow ones, as PyTorch's fused qkv layer); the weights stay separate tensors
    const part = (kind: "w" | "b") => ["q", "k", "v"].map((h) => this.#w(`${p}.${h}.${kind}`));
    const qkv = linear(x, tf.concat(part("w"), 1), tf.concat(part("b"), 0));
    const y = attentionQkv(qkv, heads, causal);
    return linear(y, this.#w(`${p}.o.w`), this.#w(`${p}.o.b`));
  }

  #block(x: tf.Tensor, p: string, heads: number, causal: boolean): tf.Tensor {
    const h = tf.add(
      x,
      this.#attention(
        layerNorm(x, this.#w(`${p}.ln1.g`), this.#w(`${p}.ln1.b`)),
        `${p}.attn`,
        heads,
        causal,
      ),
    );
    const m = linear(
      gelu(
        linear(
          layerNorm(h, this.#w(`${p}.ln2.g`), this.#w(`${p}.ln2.b`)),
          this.#w(`${p}.mlp.fc.w`),
          this.#w(`${p}.mlp.fc.b`),
        ),
      ),
      this.#w(`${p}.mlp.proj.w`),
      this.#w(`${p}.mlp.proj.b`),
    );
    return tf.add(h, m);
  }

  /** pixels [B, S, S, 3] → visual tokens [B, N, D] in raster order of the merged grid. */
  encodeImage(pixels: tf.Tensor4D): tf.Tensor3D {
    const { patchSize: ps, visionDim: dv, imageSize: S } = this.config;
    const B = pixels.shape[0];
    const g = S / ps;
    // patchify with 4-D transposes only: [B·g, ps, g, ps·3] → [B·g, g, ps, ps·3] → [B, g·g, ps·ps·3]
    const x0 = tf.mul(tf.sub(pixels, 0.5), 2);
    const patches = tf.reshape(tf.transpose(tf.reshape(x0, [B * g, ps, g, ps * 3]), [0, 2, 1, 3]), [
      B,
      g * g,
      ps * ps * 3,
    ]);
    let x = linear(patches, this.#w("vision.patch.w"), this.#w("vision.patch.b")); // [B, g², Dv]
    // 2-D position: row embedding + column embedding
    const pos = tf.reshape(
      tf.add(
        tf.reshape(this.#w("vision.pos.row"), [g, 1, dv]),
        tf.reshape(this.#w("vision.pos.col"), [1, g, dv]),
      ),
      [1, g * g, dv],
    );
    x = tf.add(x, pos);
    for (let i = 0; i < this.config.visionLayers; i++) {
      x = this.#block(x, `vision.block${i}`, this.config.visionHeads, false);
    }
    x = layerNorm(x, this.#w("vision.ln.g"), this.#w("vision.ln.b"));
    // 2×2 merge: [B·g/2, 2, g/2, 2·Dv] → [B·g/2, g/2, 2, 2·Dv] → [B, (g/2)², 4·Dv]
    const h = g / 2;
    const merged = tf.reshape(tf.transpose(tf.reshape(x, [B * h, 2, h, 2 * dv]), [0, 2, 1, 3]), [
      B,
      h * h,
      4 * dv,
    ]);
    const y = linear(
      gelu(linear(merged, this.#w("merger.fc1.w"), this.#w("merger.fc1.b"))),
      this.#w("merger.fc2.w"),
      this.#w("merger.fc2.b"),
    );
    return y as tf.Tensor3D;
  }

  apply(pixels: tf.Tensor4D, inputIds: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = inputIds.shape;
    const N = numVisualTokens(this.config);
    const { dim: D, vocabSize: V } = this.config;
    if (T < N + 2 || T > sequenceLength(this.config)) {
      throw new RangeError(
        `Cannot apply model: sequence length ${T} must be in [${N + 2}, ${
          sequenceLength(this.config)
        }]`,
      );
    }
    const tok = this.#w("lm.tok");
    const emb = tf.reshape(tf.gather(tok, tf.reshape(inputIds, [B * T])), [B, T, D]);
    const vis = this.encodeImage(pixels);
    let x = tf.concat([
      tf.slice(emb, [0, 0, 0], [B, 1, D]),
      vis,
      tf.slice(emb, [0, N + 1, 0], [B, T - N - 1, D]),
    ], 1);
    x = tf.add(x, tf.slice(this.#w("lm.pos"), [0, 0], [T, D]));
    for (let i = 0; i < this.config.layers; i++) {
      x = this.#block(x, `lm.block${i}`, this.config.heads, true);
    }
    x = layerNorm(x, this.#w("lm.ln.g"), this.#w("lm.ln.b"));
    // tied head: logits = x · tokᵀ
    return tf.reshape(tf.matMul(tf.reshape(x, [B * T, D]), tok, false, true), [
      B,
      T,
      V,
    ]) as tf.Tensor3D;
  }

  /** Parameter count. */
  get parameterCount(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}
