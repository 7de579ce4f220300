/**
 * Host-side index arithmetic of Qwen2-VL / Qwen2.5-VL (no tensors): the vision tower's 2-D
 * RoPE positions, per-image attention segments, Qwen2.5-VL's window order, and the decoder's
 * M-RoPE (t, h, w) positions — each as transformers computes it (`get_vision_position_ids`,
 * `get_vision_cu_seqlens`, `get_vision_window_index`, `get_rope_index`).
 */

/** One image's patch grid: temporal, height and width in patches (before the 2×2 merge). */
export type GridThw = readonly [number, number, number];

/** Checks a grid against the merge size; returns its patch count. */
export function gridPatches(g: GridThw, mergeSize: number): number {
  const [t, h, w] = g;
  for (const n of g) {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(
        `Cannot use image grid ${JSON.stringify(g)}: sizes must be positive integers`,
      );
    }
  }
  if (h % mergeSize || w % mergeSize) {
    throw new RangeError(
      `Cannot use image grid ${
        JSON.stringify(g)
      }: h and w must be multiples of the merge size ${mergeSize}`,
    );
  }
  return t * h * w;
}

/** Visual tokens an image becomes in the decoder: t·h·w / merge². */
export function gridTokens(g: GridThw, mergeSize: number): number {
  return gridPatches(g, mergeSize) / (mergeSize * mergeSize);
}

/**
 * (h, w) of every patch in pixel_values order: merge blocks in raster order, the m×m patches of
 * a block contiguous, the whole pattern repeated per frame. [N, 2] flattened.
 */
export function visionPositionIds(grids: readonly GridThw[], mergeSize: number): Int32Array {
  const total = grids.reduce((a, g) => a + gridPatches(g, mergeSize), 0);
  const out = new Int32Array(2 * total);
  let k = 0;
  for (const [t, h, w] of grids) {
    for (let f = 0; f < t; f++) {
      for (let bh = 0; bh < h / mergeSize; bh++) {
        for (let bw = 0; bw < w / mergeSize; bw++) {
          for (let mh = 0; mh < mergeSize; mh++) {
            for (let mw = 0; mw < mergeSize; mw++) {
              out[k++] = bh * mergeSize + mh;
              out[k++] = bw * mergeSize + mw;
            }
          }
        }
      }
    }
  }
  return out;
}

/** float32 inverse frequencies 1 / base^(2i/dim), i < dim/2, rounded as torch's f32 math does. */
export function inverseFrequencies(base: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    out[i] = Math.fround(1 / Math.fround(Math.pow(base, Math.fround((2 * i) / dim))));
  }
  return out;
}

/**
 * cos and sin of the vision tower's 2-D RoPE, [N, headDim] each: the first quarter of the head
 * rotates by the row, the second by the column, and the second half repeats the first.
 */
export function visionRope(
  positions: Int32Array,
  headDim: number,
  theta: number,
): { cos: Float32Array; sin: Float32Array } {
  const n = positions.length / 2;
  const inv = inverseFrequencies(theta, headDim / 2); // headDim/4 frequencies
  const q = inv.length;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let p = 0; p < n; p++) {
    for (let axis = 0; axis < 2; axis++) {
      const pos = positions[2 * p + axis]!;
      for (let i = 0; i < q; i++) {
        const a = Math.fround(pos * inv[i]!);
        const c = Math.cos(a), s = Math.sin(a);
        for (const off of [axis * q + i, 2 * q + axis * q + i]) {
          cos[p * headDim + off] = c;
          sin[p * headDim + off] = s;
        }
      }
    }
  }
  return { cos, sin };
}

/** Attention segment boundaries of the vision tower: one per frame of each image. */
export function frameSegments(grids: readonly GridThw[]): number[] {
  const cu = [0];
  for (const [t, h, w] of grids) for (let f = 0; f < t; f++) cu.push(cu[cu.length - 1]! + h * w);
  return cu;
}

/**
 * Qwen2.5-VL window attention: the order of merge units (groups of merge² patches) that makes
 * each window contiguous, and the window boundaries in patches (empty windows dropped).
 */
export function windowIndex(
  grids: readonly GridThw[],
  mergeSize: number,
  windowSize: number,
  patchSize: number,
): { index: Int32Array; segments: number[] } {
  const win = Math.floor(windowSize / mergeSize / patchSize); // merge units per window side
  const unit = mergeSize * mergeSize;
  const index: number[] = [];
  const segments = [0];
  let base = 0;
  for (const [t, h, w] of grids) {
    const lh = h / mergeSize, lw = w / mergeSize;
    // HF pads by a whole window even when the side divides evenly; the extra windows are empty
    const nwh = Math.floor((lh + win - (lh % win)) / win);
    const nww = Math.floor((lw + win - (lw % win)) / win);
    for (let f = 0; f < t; f++) {
      for (let wh = 0; wh < nwh; wh++) {
        for (let ww = 0; ww < nww; ww++) {
          let count = 0;
          for (let y = wh * win; y < Math.min((wh + 1) * win, lh); y++) {
            for (let x = ww * win; x < Math.min((ww + 1) * win, lw); x++) {
              index.push(base + f * lh * lw + y * lw + x);
              count++;
            }
          }
          const end = segments[segments.length - 1]! + count * unit;
          if (count > 0) segments.push(end);
        }
      }
    }
    base += t * lh * lw;
  }
  return { index: Int32Array.from(index), segments };
}

/** The inverse permutation (argsort of a permutation). */
export function inversePermutation(p: Int32Array): Int32Array {
  const out = new Int32Array(p.length);
  for (let i = 0; i < p.length; i++) out[p[i]!] = i;
  return out;
}

/** Token ids the decoder's position rule needs. */
export interface RopeIndexIds {
  imageTokenId: number;
  videoTokenId: number;
}

/**
 * M-RoPE position ids [3, B, T] (t, h, w rows), as transformers' `get_rope_index` builds them
 * for images: text runs count up by one on all three rows; an image's tokens take
 * (start + frame, start + row, start + column) of the merged grid, and the text after it resumes
 * at start + max(rows, columns). Each run of image tokens is one image, taken from `grids` in
 * order across the batch. No padding mask: every position is real.
 */
export function ropeIndex(
  inputIds: Int32Array,
  batch: number,
  length: number,
  grids: readonly GridThw[],
  mergeSize: number,
  ids: RopeIndexIds,
): Int32Array {
  if (inputIds.length !== batch * length) {
    throw new RangeError(
      `Cannot compute positions: ${inputIds.length} ids for [${batch}, ${length}]`,
    );
  }
  const pos = new Int32Array(3 * batch * length);
  let image = 0;
  for (let b = 0; b < batch; b++) {
    let cur = 0;
    let p = 0;
    const row = b * length;
    const set = (axis: number, i: number, v: number) => {
      pos[axis * batch * length + row + i] = v;
    };
    while (p < length) {
      const id = inputIds[row + p]!;
      if (id === ids.videoTokenId) {
        throw new RangeError(
          `Cannot compute positions: video token ${id} at [${b}, ${p}] (videos are not supported)`,
        );
      }
      if (id !== ids.imageTokenId) {
        for (let a = 0; a < 3; a++) set(a, p, cur);
        cur++;
        p++;
        continue;
      }
      let run = 0;
      while (p + run < length && inputIds[row + p + run] === ids.imageTokenId) run++;
      let left = run;
      // a run may hold several images back to back: consume grids until it is covered
      while (left > 0) {
        const g = grids[image];
        if (!g) {
          throw new RangeError(
            `Cannot compute positions: row ${b} has more image tokens than the ${grids.length} image grid(s) cover`,
          );
        }
        const n = gridTokens(g, mergeSize);
        if (n > left) {
          throw new RangeError(
            `Cannot compute positions: image ${image} (grid ${
              JSON.stringify(g)
            }) needs ${n} tokens, row ${b} has ${left} left in its run at ${p}`,
          );
        }
        const [t, h, w] = [g[0], g[1] / mergeSize, g[2] / mergeSize];
        let k = 0;
        for (let f = 0; f < t; f++) {
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++) {
              set(0, p + k, cur + f);
              set(1, p + k, cur + y);
              set(2, p + k, cur + x);
              k++;
            }
          }
        }
        cur += Math.max(h, w);
        p += n;
        left -= n;
        image++;
      }
    }
  }
  if (image !== grids.length) {
    throw new RangeError(
      `Cannot compute positions: ${grids.length} image grid(s) given, the input ids hold ${image} image(s)`,
    );
  }
  return pos;
}

/**
 * cos and sin of the decoder's M-RoPE, [B, T, headDim] each: frequency pair i follows the t, h
 * or w row by `section` (pairs [0, s0) → t, [s0, s0+s1) → h, the rest → w), both halves alike.
 */
export function mropeCosSin(
  positions: Int32Array,
  batch: number,
  length: number,
  headDim: number,
  theta: number,
  section: readonly [number, number, number],
): { cos: Float32Array; sin: Float32Array } {
  const inv = inverseFrequencies(theta, headDim);
  const half = headDim / 2;
  const axisOf = new Int32Array(half);
  for (let i = 0; i < half; i++) {
    axisOf[i] = i < section[0] ? 0 : i < section[0] + section[1] ? 1 : 2;
  }
  const n = batch * length;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(positions[axisOf[i]! * n + j]! * inv[i]!);
      const c = Math.cos(a), s = Math.sin(a);
      cos[j * headDim + i] = cos[j * headDim + half + i] = c;
      sin[j * headDim + i] = sin[j * headDim + half + i] = s;
    }
  }
  return { cos, sin };
}
