/**
 * The few Python `str` behaviours the reference metrics depend on, so that scores match theirs
 * character for character: Python's whitespace set (`str.split()`, `str.strip()`), lengths in code
 * points (`len`), `\d` as any Unicode decimal digit, `\b` over Python's word characters, and
 * `float(str)` parsing. Case mapping (`lower`/`upper`) is the full Unicode mapping in both
 * languages, so `toLowerCase`/`toUpperCase` are used as they are.
 */

/** Characters for which Python's `str.isspace()` is true (includes \x1c–\x1f and \x85, excludes U+FEFF). */
const PY_WS =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_WS_RUN = new RegExp(`[${PY_WS}]+`, "u");
const PY_WS_LEAD = new RegExp(`^[${PY_WS}]+`, "u");
const PY_WS_TRAIL = new RegExp(`[${PY_WS}]+$`, "u");

/** Python's `s.split()`: split on runs of whitespace, no empty fields. */
export function pySplit(s: string): string[] {
  return s.split(PY_WS_RUN).filter((w) => w !== "");
}

/** Python's `s.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(PY_WS_LEAD, "").replace(PY_WS_TRAIL, "");
}

/** Python's `len(s)`: code points, so a character outside the BMP counts once. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** The code points of s, for edit distances that count characters as Python does. */
export function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const c of s) out.push(c.codePointAt(0)!);
  return out;
}

/** Python's `\w` for `str` patterns: `isalnum()` (letters and all numerics) or `_`. */
export const PY_WORD_CLASS = "[\\p{L}\\p{N}_]";

const ND = /^\p{Nd}$/u;
const ASCII_FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const ASCII_INF_NAN = /^([+-]?)(inf|infinity|nan)$/i;

/** The value of a Unicode decimal digit: Nd digits come in runs that start at a zero. */
function decimalValue(cp: number): number {
  let start = cp;
  while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

/**
 * Python's `float(s)` for a `str`, or null where Python raises ValueError. As CPython does: each
 * non-ASCII whitespace becomes a space and each Unicode decimal digit its ASCII digit (any other
 * non-ASCII character, and DEL, makes the string invalid); underscores are allowed only between
 * digits; surrounding ASCII whitespace (space, \t\n\v\f\r) is stripped; then decimal syntax or
 * inf/infinity/nan in any case, with an optional sign.
 */
export function pyFloat(s: string): number | null {
  let t = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 127) t += ch;
    else if (PY_WS_RUN.test(ch)) t += " ";
    else if (ND.test(ch)) t += String(decimalValue(cp));
    else return null;
  }
  if (t.includes("_")) {
    let out = "";
    let prev = "";
    for (const c of t) {
      if (c === "_") {
        if (!(prev >= "0" && prev <= "9")) return null;
      } else {
        if (prev === "_" && !(c >= "0" && c <= "9")) return null;
        out += c;
      }
      prev = c;
    }
    if (prev === "_") return null;
    t = out;
  }
  t = t.replace(/^[ \t\n\v\f\r]+/, "").replace(/[ \t\n\v\f\r]+$/, "");
  if (ASCII_FLOAT.test(t)) return Number(t);
  const m = ASCII_INF_NAN.exec(t);
  if (m) {
    if (m[2]!.toLowerCase() === "nan") return NaN;
    return m[1] === "-" ? -Infinity : Infinity;
  }
  return null;
}
