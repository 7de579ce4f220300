/** Content for rendered pages: a plain English word list and seeded value generators. */
import type { Rng } from "../util/rng.ts";

export const WORDS: readonly string[] = (
  "the of and to in is for on that with as by this be are from at or an it was have not which " +
  "invoice total amount date number customer account payment order item price quantity tax " +
  "balance due street city country phone email address name company service product report " +
  "table figure page section chapter summary result method data model image text word line " +
  "value field label form receipt bank card credit debit transfer reference code status " +
  "shipping delivery weight height width length volume sample test train evaluation score " +
  "north south east west river mountain garden window market station bridge harbor village " +
  "morning evening winter summer autumn spring yellow orange purple silver golden green " +
  "quickly slowly always never often simple complex bright quiet gentle strong careful " +
  "analysis network vision language token patch sequence attention encoder decoder layer " +
  "contract agreement signature witness employer employee salary bonus pension insurance " +
  "medicine patient doctor hospital clinic pharmacy dosage tablet morning schedule meeting " +
  "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April " +
  "London Paris Berlin Madrid Rome Vienna Prague Lisbon Dublin Oslo Helsinki Warsaw Athens"
).split(/\s+/).filter(Boolean);

/** A word, a number, a date or a code, the mix a document page has. */
export function randomToken(rng: Rng): string {
  const r = rng.next();
  if (r < 0.78) {
    const w = rng.pick(WORDS);
    return rng.next() < 0.12 ? w[0]!.toUpperCase() + w.slice(1) : w;
  }
  if (r < 0.88) return String(rng.int(1, 9999));
  if (r < 0.93) return `${rng.int(1, 999)}.${String(rng.int(0, 99)).padStart(2, "0")}`;
  if (r < 0.97) {
    return `${rng.int(2000, 2030)}-${String(rng.int(1, 12)).padStart(2, "0")}-${
      String(rng.int(1, 28)).padStart(2, "0")
    }`;
  }
  return `${String.fromCharCode(65 + rng.int(0, 25))}${String.fromCharCode(65 + rng.int(0, 25))}-${
    rng.int(100, 999)
  }`;
}
