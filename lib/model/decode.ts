/**
 * Greedy decoding with a key/value cache for {@linkcode SmallVLM}: each image is encoded once,
 * the prompts are run once (prefill), then each step runs the LM on one new token per sequence
 * against the cached keys and values of every earlier position.
 *
 * It gives the same token ids as the full-recompute decoder (`greedyDecode` in
 * lib/eval/evaluate.ts): same stop rules (EOS, a full sequence, `maxNewTokens`), same batching
 * with prompts of different lengths (each sequence keeps its own absolute positions), and the
 * same weights applied in the same order as `SmallVLM.apply`.
 */
import { attention, gelu, layerNorm, linear, tf } from "../backend/mod.ts";
import { EOS_ID, PAD_ID } from "../tokenizer/small.ts";
import { numVisualTokens, sequenceLength } from "./config.ts";
import type { SmallVLM } from "./model.ts";

/** What decoding reads from a sample: its image, its ids and where the prompt ends. */
export interface DecodeInput {
  /** [S·S·3] in [0, 1], row-major RGB. */
  pixels: Float32Array;
  /** [≥ promptEnd] the sequence; only the prompt (ids before promptEnd) is read. */
  inputIds: Int32Array;
  /** Position of the first generated token (the prompt includes the visual block). */
  promptEnd: number;
}

export interface GreedyDecodeOptions {
  /**
   * Token that ends a sequence (not returned).
   * @default EOS_ID of the dvsft-small tokenizer
   */
  eosId?: number;
}

/** Additive mask value for positions a query may not see (the one `apply`'s causal mask uses). */
const MASKED = -1e9;

/**
 * Greedy decoding from each sample's prompt with a KV cache; returns the generated ids (EOS
 * excluded). A sequence stops at EOS, when it fills the model's sequence length, or after
 * `maxNewTokens`.
 *
 * @example
 * ```ts
 * const ids = await greedyDecodeCached(model, samples, 16);
 * const texts = ids.map((x) => tokenizer.decode(x));
 * ```
 */
export async function greedyDecodeCached(
  model: SmallVLM,
  samples: readonly DecodeInput[],
  maxNewTokens: number,
  { eosId = EOS_ID }: GreedyDecodeOptions = {},
): Promise<number[][]> {
  const c = model.config;
  const B = samples.length, T = sequenceLength(c), S = c.imageSize, N = numVisualTokens(c);
  const { dim: D, heads: H } = c;
  const hd = D / H;
  if (B === 0) return [];
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new RangeError(
      `Cannot decode: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`,
    );
  }
  samples.forEach((s, b) => {
    if (s.pixels.length !== S * S * 3) {
      throw new RangeError(
        `Cannot decode sample ${b}: ${s.pixels.length} pixel values, expected ${S * S * 3}`,
      );
    }
    if (
      !Number.isInteger(s.promptEnd) || s.promptEnd < N + 2 || s.promptEnd > T ||
      s.inputIds.length < s.promptEnd
    ) {
      throw new RangeError(
        `Cannot decode sample ${b}: promptEnd ${s.promptEnd} must be in [${
          N + 2
        }, ${T}] and within its ${s.inputIds.length} ids`,
      );
    }
  });
  const out: number[][] = samples.map(() => []);
  if (maxNewTokens === 0) return out;
  const w = (name: string): tf.Variable => {
    const v = model.weights.get(name);
    if (!v) throw new RangeError(`Model weight '${name}' is missing`);
    return v;
  };
  const pos = samples.map((s) => s.promptEnd);
  const done = samples.map(() => false);
  const P = Math.max(...pos);

  // ---- prefill: positions [0, P) of every sequence, PAD after a shorter prompt (as `apply`
  // sees it); causal attention keeps a prompt's positions independent of those pads
  const ids = new Int32Array(B * P).fill(PAD_ID);
  samples.forEach((s, b) => ids.set(s.inputIds.subarray(0, s.promptEnd), b * P));
  const px = new Float32Array(B * S * S * 3);
  samples.forEach((s, b) => px.set(s.pixels, b * S * S * 3));

  /** Per layer: keys and values [B, H, T, hd]; positions ≥ P hold zeros until written. */
  let cache: { k: tf.Tensor4D; v: tf.Tensor4D }[] = [];
  const splitHeads = (x: tf.Tensor, L: number) =>
    tf.transpose(tf.reshape(x, [B, L, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, H, L, hd]
  const mlp = (h: tf.Tensor, p: string) =>
    linear(
      gelu(
        linear(
          layerNorm(h, w(`${p}.ln2.g`), w(`${p}.ln2.b`)),
          w(`${p}.mlp.fc.w`),
          w(`${p}.mlp.fc.b`),
        ),
      ),
      w(`${p}.mlp.proj.w`),
      w(`${p}.mlp.proj.b`),
    );
  const head = (x: tf.Tensor2D) =>
    // [B, D] → next ids [B]
    tf.argMax(
      tf.matMul(layerNorm(x, w("lm.ln.g"), w("lm.ln.b")) as tf.Tensor2D, w("lm.tok"), false, true),
      -1,
    );

  let next = tf.tidy(() => {
    const tok = w("lm.tok");
    const emb = tf.reshape(tf.gather(tok, tf.tensor1d(ids, "int32")), [B, P, D]);
    const vis = model.encodeImage(tf.tensor4d(px, [B, S, S, 3]));
    let x: tf.Tensor = tf.concat([
      tf.slice(emb, [0, 0, 0], [B, 1, D]),
      vis,
      tf.slice(emb, [0, N + 1, 0], [B, P - N - 1, D]),
    ], 1);
    x = tf.add(x, tf.slice(w("lm.pos"), [0, 0], [P, D]));
    const kept: { k: tf.Tensor4D; v: tf.Tensor4D }[] = [];
    for (let i = 0; i < c.layers; i++) {
      const p = `lm.block${i}`;
      const hN = layerNorm(x, w(`${p}.ln1.g`), w(`${p}.ln1.b`));
      const project = (h: string) => linear(hN, w(`${p}.attn.${h}.w`), w(`${p}.attn.${h}.b`));
      const q = project("q"), k = project("k"), v = project("v");
      const y = attention(q, k, v, H, true); // the model's own causal attention
      x = tf.add(x, linear(y, w(`${p}.attn.o.w`), w(`${p}.attn.o.b`)));
      x = tf.add(x, mlp(x, p));
      const pad = (t: tf.Tensor) =>
        tf.keep(tf.pad(splitHeads(t, P), [[0, 0], [0, 0], [0, T - P], [0, 0]]) as tf.Tensor4D);
      kept.push({ k: pad(k), v: pad(v) });
    }
    cache = kept;
    // each sequence's last prompt position predicts its first new token
    const last = tf.gather(
      tf.reshape(x, [B * P, D]),
      tf.tensor1d(pos.map((p, b) => b * P + p - 1), "int32"),
    );
    return head(last as tf.Tensor2D);
  });

  try {
    for (let t = 0; t < maxNewTokens; t++) {
      const tok = Array.from(await next.data());
      next.dispose();
      // the new token of each running sequence and where it goes
      const stepIds = new Int32Array(B).fill(PAD_ID), stepPos = new Int32Array(B);
      tok.forEach((id, b) => {
        stepPos[b] = Math.min(pos[b]!, T) - 1; // finished sequences: any valid position, ignored
        if (done[b]) return;
        if (id === eosId || pos[b]! >= T) {
          done[b] = true;
          return;
        }
        out[b]!.push(id);
        stepIds[b] = id;
        stepPos[b] = pos[b]!;
        pos[b]!++;
      });
      if (t + 1 >= maxNewTokens || done.every((d) => d)) break;
      const previous = cache;
      const r = tf.tidy(() => decodeStep(stepIds, stepPos, previous));
      next = r.next;
      cache = r.cache;
      for (const l of previous) tf.dispose([l.k, l.v]);
    }
  } finally {
    if (!next.isDisposed) next.dispose();
    for (const l of cache) tf.dispose([l.k, l.v]);
  }
  return out;

  /** One token per sequence at its own position: logits → next ids, and the updated cache. */
  function decodeStep(
    stepIds: Int32Array,
    stepPos: Int32Array,
    previous: { k: tf.Tensor4D; v: tf.Tensor4D }[],
  ): { next: tf.Tensor; cache: { k: tf.Tensor4D; v: tf.Tensor4D }[] } {
    const at = new Float32Array(B * T), visible = new Float32Array(B * T);
    for (let b = 0; b < B; b++) {
      at[b * T + stepPos[b]!] = 1;
      for (let j = stepPos[b]! + 1; j < T; j++) visible[b * T + j] = MASKED;
    }
    const write = tf.tensor4d(at, [B, 1, T, 1]); // 1 at the new token's position
    const keep = tf.sub(1, write);
    const mask = tf.tensor4d(visible, [B, 1, 1, T]); // causal: positions after the token hidden
    let x: tf.Tensor = tf.add(
      tf.gather(w("lm.tok"), tf.tensor1d(stepIds, "int32")),
      tf.gather(w("lm.pos"), tf.tensor1d(stepPos, "int32")),
    ); // [B, D]
    x = tf.reshape(x, [B, 1, D]);
    const updated: { k: tf.Tensor4D; v: tf.Tensor4D }[] = [];
    for (let i = 0; i < c.layers; i++) {
      const p = `lm.block${i}`;
      const hN = layerNorm(x, w(`${p}.ln1.g`), w(`${p}.ln1.b`));
      const project = (h: string) =>
        splitHeads(linear(hN, w(`${p}.attn.${h}.w`), w(`${p}.attn.${h}.b`)), 1);
      const q = project("q"); // [B, H, 1, hd]
      // the old entry × 0 + new × 1 is exactly the new value, elsewhere exactly the old one
      const k = tf.keep(
        tf.add(tf.mul(previous[i]!.k, keep), tf.mul(project("k"), write)) as tf.Tensor4D,
      );
      const v = tf.keep(
        tf.add(tf.mul(previous[i]!.v, keep), tf.mul(project("v"), write)) as tf.Tensor4D,
      );
      updated.push({ k, v });
      const att = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)), mask); // [B, H, 1, T]
      const y = tf.reshape(tf.transpose(tf.matMul(tf.softmax(att), v), [0, 2, 1, 3]), [B, 1, D]);
      x = tf.add(x, linear(y, w(`${p}.attn.o.w`), w(`${p}.attn.o.b`)));
      x = tf.add(x, mlp(x, p));
    }
    return { next: head(tf.reshape(x, [B, D]) as tf.Tensor2D), cache: updated };
  }
}
