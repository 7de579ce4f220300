/**
 * Images → Qwen2-VL `pixel_values`, the flattened-patch layout of transformers'
 * `Qwen2VLImageProcessor` (after its resize): rescaled to [0, 1], normalised with the CLIP mean
 * and std, the frame repeated to fill the temporal patch, and cut into patches ordered
 * (merge-block row, merge-block column, row in block, column in block), each patch's values
 * ordered (channel, frame, y, x). One row per patch: [t·h·w, C·tps·ps·ps].
 */
import type { GridThw } from "./positions.ts";

/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, what the Qwen2-VL processors use. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** The geometry pixel_values depend on. */
export interface PatchGeometry {
  patchSize: number;
  mergeSize: number;
  temporalPatchSize: number;
  inChannels: number;
}

/** One image already resized (sides multiples of patch × merge), [H, W, C] in [0, 1]. */
export interface ImageHWC {
  data: Float32Array;
  height: number;
  width: number;
}

/** Options of {@linkcode imagesToPixelValues}. */
export interface PixelValuesOptions {
  /** @default CLIP_MEAN */
  mean?: readonly number[];
  /** @default CLIP_STD */
  std?: readonly number[];
}

/**
 * Patchify images the way the Qwen2-VL image processor does.
 *
 * @example
 * ```ts
 * const { data, rows, cols, grids } = imagesToPixelValues([{ data, height: 56, width: 84 }], geometry);
 * // grids = [[1, 4, 6]], rows = 24, cols = 3·2·14·14 = 1176
 * ```
 */
export function imagesToPixelValues(
  images: readonly ImageHWC[],
  g: PatchGeometry,
  options: PixelValuesOptions = {},
): { data: Float32Array; rows: number; cols: number; grids: GridThw[] } {
  const { mean = CLIP_MEAN, std = CLIP_STD } = options;
  const { patchSize: ps, mergeSize: m, temporalPatchSize: tps, inChannels: C } = g;
  if (mean.length !== C || std.length !== C) {
    throw new RangeError(`Cannot make pixel_values: mean/std need ${C} channels`);
  }
  const unit = ps * m;
  const grids: GridThw[] = [];
  let rows = 0;
  for (const [i, im] of images.entries()) {
    if (im.height % unit || im.width % unit || im.height < unit || im.width < unit) {
      throw new RangeError(
        `Cannot make pixel_values: image ${i} is ${im.width}×${im.height}, sides must be positive multiples of ${unit}`,
      );
    }
    if (im.data.length !== im.height * im.width * C) {
      throw new RangeError(
        `Cannot make pixel_values: image ${i} has ${im.data.length} values, expected ${im.height}×${im.width}×${C}`,
      );
    }
    grids.push([1, im.height / ps, im.width / ps]);
    rows += (im.height / ps) * (im.width / ps);
  }
  const cols = C * tps * ps * ps;
  const out = new Float32Array(rows * cols);
  let r = 0;
  for (const im of images) {
    const gh = im.height / ps, gw = im.width / ps;
    for (let bh = 0; bh < gh / m; bh++) {
      for (let bw = 0; bw < gw / m; bw++) {
        for (let mh = 0; mh < m; mh++) {
          for (let mw = 0; mw < m; mw++) {
            const y0 = (bh * m + mh) * ps, x0 = (bw * m + mw) * ps;
            let k = r * cols;
            for (let c = 0; c < C; c++) {
              const mu = mean[c]!, sd = std[c]!;
              for (let f = 0; f < tps; f++) {
                for (let y = 0; y < ps; y++) {
                  for (let x = 0; x < ps; x++) {
                    const v = im.data[((y0 + y) * im.width + x0 + x) * C + c]!;
                    out[k++] = (v - mu) / sd;
                  }
                }
              }
            }
            r++;
          }
        }
      }
    }
  }
  return { data: out, rows, cols, grids };
}
