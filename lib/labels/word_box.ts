/**
 * A word with its box: what every word source (render, OCR, PDF text layer, boxes files)
 * produces. A leaf module, so the sources depend on it and not on the labeling code above them.
 */
import { z } from "zod";

export const BoxSchema = z.tuple([
  z.number().finite(),
  z.number().finite(),
  z.number().finite(),
  z.number().finite(),
])
  .refine((b) => b[2] > b[0] && b[3] > b[1], {
    message: "box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0",
  });

/** A word with its box in original-image pixels, as every word source returns it. */
export const WordBoxSchema = z.strictObject({
  text: z.string().min(1).max(200),
  box: BoxSchema,
  /** 0–100; exact sources (render, pdf) use 100. */
  confidence: z.number().min(0).max(100).default(100),
});
export type WordBox = z.infer<typeof WordBoxSchema>;
