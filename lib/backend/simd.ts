/**
 * SIMD kernels for the fused ops' elementwise and row work (layer norm, GELU, the attention
 * softmax and its backward, the vocabulary softmax, AdamW), as a WebAssembly module that imports
 * tfjs-backend-wasm's own memory: the kernels read and write tensors where they lie, by their
 * heap offsets.
 *
 * The module is generated in the WebAssembly text format from one table (`KERNELS`: name,
 * parameters, body), which also gives the TypeScript type of its exports, and assembled at
 * start-up by `wabt` (≈ 30 ms). Each elementwise body is written once, as a function of the lane type, and
 * emitted twice: four lanes at a time (f32x4, with relaxed SIMD's fused multiply-add) for the
 * bulk of a row, one lane for its tail, so any length works. exp follows Cephes' expf (range
 * reduction by ln 2, a degree-5 polynomial, 2ⁿ through the exponent bits; ≈ 1.2e-7 relative
 * error, inputs clamped to [−87, 88]).
 *
 * Why: the scalar JS loops these replace ran at ≈ 2–9 ns an element (layer norm, GELU through
 * wasm's Sigmoid, softmax backward); here layer norm is ≈ 1 ns and GELU ≈ 2.5 ns an element
 * (V8's 128-bit SIMD, measured on this machine's EPYC), and AdamW went from ≈ 30 ms to ≈ 4 ms a
 * `small` step — together a third of the step (`deno task bench:train`).
 */
import wabtInit from "wabt";
import { splitAcrossThreads } from "./simd_pool.ts";

/** The lane type a body is emitted for: four f32 lanes in a v128, or one f32. */
interface Lane {
  /** Four lanes (the bulk of a row) or one (its tail). */
  wide: boolean;
  get(name: string): string;
  set(name: string, value: string): string;
  k(x: number): string;
  dup(scalar: string): string;
  load(addr: string): string;
  store(addr: string, value: string): string;
  op(name: "add" | "sub" | "mul" | "div" | "max" | "pmax" | "sqrt", ...args: string[]): string;
  exp(x: string): string;
  /** a·b + c (fused where the machine has FMA: relaxed SIMD's madd) */
  fma(a: string, b: string, c: string): string;
}

const num = (x: number) => {
  const s = String(x);
  return s.includes(".") || s.includes("e") ? s : `${s}.0`;
};

/**
 * exp of four lanes, inline (as a function call it cost ≈ 1 ns an element more), after Cephes'
 * expf. n = round(x·log₂e) by the 1.5·2²³ trick (the sum's low mantissa bits are n, and shifted
 * left by 23 they are n's exponent field), r = x − n·ln 2 in two parts, eʳ by a degree-5
 * polynomial, times 2ⁿ. Locals $xe $ne $re $qe.
 */
function exp4(constant: (x: number) => string, x: string): string {
  const shifter = 12582912; // 1.5·2²³
  const fma = (a: string, b: string, c: string) => `(f32x4.relaxed_madd ${a} ${b} ${c})`;
  const get = (n: string) => `(local.get $${n})`;
  // eʳ ≈ 1 + r + r²·q(r) on [−ln2/2, ln2/2], q of degree 3 fitted to the relative error
  // (≤ 1.2e-7, float32's resolution; Cephes' degree 5 costs two more FMAs for nothing here)
  const poly = [4.189858213067055e-2, 1.666688621044159e-1, 4.9999141693115234e-1];
  return `(block (result v128)
    (local.set $xe (f32x4.pmax (f32x4.pmin ${x} ${constant(88)}) ${constant(-87)}))
    (local.set $ne ${fma(get("xe"), constant(1.44269504088896341), constant(shifter))})
    (local.set $re (f32x4.sub ${get("ne")} ${constant(shifter)}))
    (local.set $re ${
    fma(get("re"), constant(2.12194440e-4), fma(get("re"), constant(-0.693359375), get("xe")))
  })
    (local.set $qe ${constant(8.333838544785976e-3)})
    ${poly.map((c) => `(local.set $qe ${fma(get("qe"), get("re"), constant(c))})`).join("\n    ")}
    (local.set $qe ${
    fma(
      get("qe"),
      `(f32x4.mul ${get("re")} ${get("re")})`,
      `(f32x4.add ${get("re")} ${constant(1)})`,
    )
  })
    (f32x4.mul ${get("qe")}
      (i32x4.add (i32x4.shl ${get("ne")} (i32.const 23)) ${constant(bitsAsFloat(127 << 23))})))`;
}
/** The float32 whose bits are the integer i (for integer constants among the float globals). */
function bitsAsFloat(i: number): number {
  return new Float32Array(new Int32Array([i]).buffer)[0]!;
}

/** Lane-typed locals every function declares: $va…$vh (v128) and $sa…$sh (f32). */
const NAMES = ["a", "b", "c", "d", "e", "f", "g", "h"];
const LOCALS = `(local $i i32) (local $n4 i32) (local $r i32) (local $t f32) (local $u f32)
  (local $xe v128) (local $ne v128) (local $re v128) (local $qe v128)
  ${NAMES.map((n) => `(local $v${n} v128) (local $s${n} f32)`).join(" ")}`;

/**
 * One assembly of the module: the loop labels it has numbered and the vector constants it has
 * placed in globals (state that belongs to a single `source()` call, not to the process).
 */
class Gen {
  #label = 0;
  #constants = new Map<string, number>();

  /**
   * A vector constant, as an immutable global: V8 rebuilds a \`v128.const\` inside a loop on
   * every iteration (≈ 0.1 ns an element each), a global is one load.
   */
  constant = (x: number): string => {
    const key = num(x);
    if (!this.#constants.has(key)) this.#constants.set(key, this.#constants.size);
    return `(global.get $k${this.#constants.get(key)})`;
  };

  globals(): string {
    return [...this.#constants].map(([x, i]) =>
      `(global $k${i} v128 (v128.const f32x4 ${x} ${x} ${x} ${x}))`
    ).join("\n  ");
  }

  readonly vec: Lane = {
    wide: true,
    get: (n) => `(local.get $v${n})`,
    set: (n, v) => `(local.set $v${n} ${v})`,
    k: (x) => this.constant(x),
    dup: (s) => `(f32x4.splat ${s})`,
    load: (a) => `(v128.load ${a})`,
    store: (a, v) => `(v128.store ${a} ${v})`,
    op: (name, ...args) => `(f32x4.${name} ${args.join(" ")})`,
    exp: (x) => exp4(this.constant, x),
    fma: (a, b, c) => `(f32x4.relaxed_madd ${a} ${b} ${c})`,
  };

  readonly one: Lane = {
    wide: false,
    get: (n) => `(local.get $s${n})`,
    set: (n, v) => `(local.set $s${n} ${v})`,
    k: (x) => `(f32.const ${num(x)})`,
    dup: (s) => s,
    load: (a) => `(f32.load ${a})`,
    store: (a, v) => `(f32.store ${a} ${v})`,
    op: (name, ...args) => `(f32.${name} ${args.join(" ")})`,
    exp: (x) => `(f32x4.extract_lane 0 ${exp4(this.constant, `(f32x4.splat ${x})`)})`,
    fma: (a, b, c) => `(f32.add (f32.mul ${a} ${b}) ${c})`,
  };

  /**
   * `for i in [0, n)`: the body for four lanes while four remain, then for one. `at(p)` is the
   * address of element i of the array whose base (bytes) is in local `p`.
   */
  each(n: string, body: (L: Lane, at: (p: string) => string) => string): string {
    const id = this.#label++;
    const at = (p: string) => `(i32.add (local.get $${p}) (i32.shl (local.get $i) (i32.const 2)))`;
    return `
    (local.set $i (i32.const 0))
    (local.set $n4 (i32.and ${n} (i32.const -4)))
    (block $vb${id} (loop $vl${id}
      (br_if $vb${id} (i32.ge_u (local.get $i) (local.get $n4)))
      ${body(this.vec, at)}
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $vl${id})))
    (block $sb${id} (loop $sl${id}
      (br_if $sb${id} (i32.ge_u (local.get $i) ${n}))
      ${body(this.one, at)}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $sl${id})))`;
  }

  /** `for r in [0, rows)` */
  rows(count: string, body: string): string {
    const id = this.#label++;
    return `
    (local.set $r (i32.const 0))
    (block $rb${id} (loop $rl${id}
      (br_if $rb${id} (i32.ge_u (local.get $r) ${count}))
      ${body}
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl${id})))`;
  }
}

/** Sum (or max) of a vector accumulator's four lanes and a scalar one. */
const hsum = (v: string, s: string) =>
  `(f32.add (f32.add (f32.add (f32x4.extract_lane 0 ${v}) (f32x4.extract_lane 1 ${v}))
     (f32.add (f32x4.extract_lane 2 ${v}) (f32x4.extract_lane 3 ${v}))) ${s})`;
const hmax = (v: string, s: string) =>
  `(f32.max (f32.max (f32.max (f32x4.extract_lane 0 ${v}) (f32x4.extract_lane 1 ${v}))
     (f32.max (f32x4.extract_lane 2 ${v}) (f32x4.extract_lane 3 ${v}))) ${s})`;
/** Zero the vector and scalar forms of the named accumulators. */
const zero = (...names: string[]) =>
  names.map((n) => `(local.set $v${n} (v128.const i32x4 0 0 0 0)) (local.set $s${n} (f32.const 0))`)
    .join(" ");
/** Add a row's stride to pointer locals. */
const advance = (stride: string, ...ptrs: string[]) =>
  ptrs.map((p) => `(local.set $${p} (i32.add (local.get $${p}) ${stride}))`).join(" ");
const bytes = (n: string) => `(i32.shl ${n} (i32.const 2))`;
const p = (name: string) => `(local.get $${name})`;

export const LN_EPS = 1e-5;
export const GELU_C = Math.sqrt(2 / Math.PI);
export const GELU_A = 0.044715;

/** σ(2u), u = c·(a + A·a³): GPT-2's tanh GELU is a·σ(2u). */
const geluGate = (L: Lane, a: string) =>
  L.op(
    "div",
    L.k(1),
    L.op(
      "add",
      L.k(1),
      L.exp(L.op("mul", a, L.fma(L.op("mul", a, a), L.k(-2 * GELU_C * GELU_A), L.k(-2 * GELU_C)))),
    ),
  );

/** dx = dy·(σ + x·σ·(1−σ)·2u′) for x in $va, σ given. */
const geluBackwardBody = (L: Lane, at: (p: string) => string, gate: string) => `
  ${L.set("a", L.load(at("x")))}
  ${L.set("b", gate)}
  ${
  L.set("c", L.fma(L.op("mul", L.get("a"), L.get("a")), L.k(6 * GELU_C * GELU_A), L.k(2 * GELU_C)))
}
  ${L.set("d", L.op("mul", L.op("mul", L.get("a"), L.get("b")), L.op("sub", L.k(1), L.get("b"))))}
  ${L.store(at("dx"), L.op("mul", L.load(at("dy")), L.fma(L.get("d"), L.get("c"), L.get("b"))))}`;

/** Row statistics of the row at $x (C floats) into $sm (mean) and $ss (1/σ); uses $va/$sa. */
const rowStats = (g: Gen) => `
  ${zero("a")}
  ${g.each(p("C"), (L, at) => L.set("a", L.op("add", L.get("a"), L.load(at("x")))))}
  (local.set $sm (f32.div ${hsum(p("va"), p("sa"))} (f32.convert_i32_u ${p("C")})))
  (local.set $vm (f32x4.splat ${p("sm")}))
  ${zero("a")}
  ${
  g.each(p("C"), (L, at) => `
    ${L.set("b", L.op("sub", L.load(at("x")), mean(L)))}
    ${L.set("a", L.op("add", L.get("a"), L.op("mul", L.get("b"), L.get("b"))))}`)
}
  (local.set $ss (f32.div (f32.const 1) (f32.sqrt (f32.add
    (f32.div ${hsum(p("va"), p("sa"))} (f32.convert_i32_u ${p("C")})) (f32.const ${LN_EPS})))))
  (local.set $vs (f32x4.splat ${p("ss")}))`;

/** The mean/σ locals of a row as the lane type wants them. */
const mean = (L: Lane) => (L.wide ? p("vm") : p("sm"));
const rstd = (L: Lane) => (L.wide ? p("vs") : p("ss"));

/** A kernel's parameters (`name` is i32, `name:f32` a float), result and body. */
interface KernelDef<P extends readonly string[], R extends "f32" | "void"> {
  params: P;
  result: R;
  /** Locals beyond the shared ones. */
  locals?: string;
  body: (g: Gen) => string;
}

const kernel = <const P extends readonly string[], const R extends "f32" | "void" = "void">(
  params: P,
  body: (g: Gen) => string,
  o: { result?: R; locals?: string } = {},
): KernelDef<P, R> => ({ params, body, result: (o.result ?? "void") as R, locals: o.locals });

/**
 * Every kernel, once: the wasm text and the TypeScript type of the exports are both generated
 * from this table. Pointers are byte offsets into tfjs-backend-wasm's heap.
 */
const KERNELS = {
  /** y = x·σ(2u) */
  geluForward: kernel(["x", "y", "n"], (g) =>
    `    ${
      g.each(p("n"), (L, at) => `
      ${L.set("a", L.load(at("x")))}
      ${L.store(at("y"), L.op("mul", L.get("a"), geluGate(L, L.get("a"))))}`)
    }`),
  /** the same, keeping the gate σ(2u) for the backward */
  geluForwardKeep: kernel(["x", "y", "gate", "n"], (g) =>
    `    ${
      g.each(p("n"), (L, at) => `
      ${L.set("a", L.load(at("x")))}
      ${L.set("b", geluGate(L, L.get("a")))}
      ${L.store(at("gate"), L.get("b"))}
      ${L.store(at("y"), L.op("mul", L.get("a"), L.get("b")))}`)
    }`),
  /** dx = dy·(σ + x·σ·(1−σ)·2u′), σ recomputed */
  geluBackward: kernel(
    ["dy", "x", "dx", "n"],
    (g) => `    ${g.each(p("n"), (L, at) => geluBackwardBody(L, at, geluGate(L, L.get("a"))))}`,
  ),
  /** the same with σ kept by the forward */
  geluBackwardKept: kernel(
    ["dy", "x", "gate", "dx", "n"],
    (g) => `    ${g.each(p("n"), (L, at) => geluBackwardBody(L, at, L.load(at("gate"))))}`,
  ),
  /** y = (x − mean)·rstd·g + b per row of C */
  layerNormForward: kernel(["x", "g", "b", "y", "R", "C"], (g) =>
    `    ${
      g.rows(
        p("R"),
        `
      ${rowStats(g)}
      ${
          g.each(p("C"), (L, at) =>
            L.store(
              at("y"),
              L.op(
                "add",
                L.op(
                  "mul",
                  L.op("mul", L.op("sub", L.load(at("x")), mean(L)), rstd(L)),
                  L.load(at("g")),
                ),
                L.load(at("b")),
              ),
            ))
        }
      ${advance(bytes(p("C")), "x", "y")}`,
      )
    }`, { locals: "(local $sm f32) (local $ss f32) (local $vm v128) (local $vs v128)" }),
  /** dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)), dŷ = dy·g; dg = Σ dy·x̂; db = Σ dy */
  layerNormBackward: kernel(
    ["dy", "x", "g", "dx", "dg", "db", "R", "C"],
    (g) =>
      `    (memory.fill ${p("dg")} (i32.const 0) ${bytes(p("C"))})
    (memory.fill ${p("db")} (i32.const 0) ${bytes(p("C"))})
    ${
        g.rows(
          p("R"),
          `
      ${rowStats(g)}
      ${zero("c", "d")}
      ${
            g.each(p("C"), (L, at) => `
        ${L.set("a", L.load(at("dy")))}
        ${L.set("b", L.op("mul", L.op("sub", L.load(at("x")), mean(L)), rstd(L)))}
        ${L.set("e", L.op("mul", L.get("a"), L.load(at("g"))))}
        ${L.set("c", L.op("add", L.get("c"), L.get("e")))}
        ${L.set("d", L.op("add", L.get("d"), L.op("mul", L.get("e"), L.get("b"))))}
        ${L.store(at("dg"), L.op("add", L.load(at("dg")), L.op("mul", L.get("a"), L.get("b"))))}
        ${L.store(at("db"), L.op("add", L.load(at("db")), L.get("a")))}`)
          }
      (local.set $t (f32.div ${hsum(p("vc"), p("sc"))} (f32.convert_i32_u ${p("C")})))
      (local.set $u (f32.div ${hsum(p("vd"), p("sd"))} (f32.convert_i32_u ${p("C")})))
      (local.set $vf (f32x4.splat ${p("t")})) (local.set $sf ${p("t")})
      (local.set $vg (f32x4.splat ${p("u")})) (local.set $sg ${p("u")})
      ${
            g.each(p("C"), (L, at) => `
        ${L.set("b", L.op("mul", L.op("sub", L.load(at("x")), mean(L)), rstd(L)))}
        ${
              L.store(
                at("dx"),
                L.op(
                  "mul",
                  rstd(L),
                  L.op(
                    "sub",
                    L.op("sub", L.op("mul", L.load(at("dy")), L.load(at("g"))), L.get("f")),
                    L.op("mul", L.get("b"), L.get("g")),
                  ),
                ),
              )
            }`)
          }
      ${advance(bytes(p("C")), "dy", "x", "dx")}`,
        )
      }`,
    { locals: "(local $sm f32) (local $ss f32) (local $vm v128) (local $vs v128)" },
  ),
  /**
   * softmax over each row of T in place; causal: row i of each [T, T] block keeps j ≤ i, the rest
   * becomes 0, where the call's first row is row r0 of its block (a block's rows in parts)
   */
  softmaxRows: kernel(["s", "R", "T", "causal", "r0"], (g) =>
    `    ${
      g.rows(
        p("R"),
        `
      (local.set $len (select (i32.add (i32.rem_u (i32.add ${p("r")} ${p("r0")}) ${p("T")})
        (i32.const 1)) ${p("T")} ${p("causal")}))
      (local.set $va ${g.vec.k(-3.4e38)}) (local.set $sa (f32.const -3.4e38))
      ${
          // pmax: one maxps (f32x4.max's NaN/−0 rules cost V8 a sequence of instructions)
          g.each(
            p("len"),
            (L, at) => L.set("a", L.op(L.wide ? "pmax" : "max", L.get("a"), L.load(at("s")))),
          )}
      (local.set $t ${hmax(p("va"), p("sa"))})
      (local.set $vb (f32x4.splat ${p("t")})) (local.set $sb ${p("t")})
      ${zero("c")}
      ${
          g.each(p("len"), (L, at) => `
        ${L.set("d", L.exp(L.op("sub", L.load(at("s")), L.get("b"))))}
        ${L.store(at("s"), L.get("d"))}
        ${L.set("c", L.op("add", L.get("c"), L.get("d")))}`)
        }
      (local.set $t (f32.div (f32.const 1) ${hsum(p("vc"), p("sc"))}))
      (local.set $ve (f32x4.splat ${p("t")})) (local.set $se ${p("t")})
      ${g.each(p("len"), (L, at) => L.store(at("s"), L.op("mul", L.load(at("s")), L.get("e"))))}
      (memory.fill (i32.add ${p("s")} ${bytes(p("len"))}) (i32.const 0) ${
          bytes(`(i32.sub ${p("T")} ${p("len")})`)
        })
      ${advance(bytes(p("T")), "s")}`,
      )
    }`, { locals: "(local $len i32)" }),
  /** attention backward's row term: dot[i] = Σ_c dy[i·C + c]·y[i·C + c] over c < hd, i < T */
  rowDots: kernel(["dy", "y", "dot", "T", "C", "hd"], (g) =>
    `    ${
      g.rows(
        p("T"),
        `
      ${zero("a")}
      ${
          g.each(
            p("hd"),
            (L, at) =>
              L.set("a", L.op("add", L.get("a"), L.op("mul", L.load(at("dy")), L.load(at("y"))))),
          )
        }
      (f32.store ${p("dot")} ${hsum(p("va"), p("sa"))})
      ${advance(bytes(p("C")), "dy", "y")}
      ${advance("(i32.const 4)", "dot")}`,
      )
    }`),
  /** the softmax backward: ds = P ⊙ (ds − dot[row]) over R rows of T */
  softmaxBackwardRows: kernel(["P", "ds", "dot", "R", "T"], (g) =>
    `    ${
      g.rows(
        p("R"),
        `
      (local.set $sb (f32.load ${p("dot")})) (local.set $vb (f32x4.splat ${p("sb")}))
      ${
          g.each(
            p("T"),
            (L, at) =>
              L.store(
                at("ds"),
                L.op("mul", L.load(at("P")), L.op("sub", L.load(at("ds")), L.get("b"))),
              ),
          )
        }
      ${advance(bytes(p("T")), "P", "ds")}
      ${advance("(i32.const 4)", "dot")}`,
      )
    }`),
  /** dst[r, :] = scale[r]·src[r, :] over R rows of C (the cross-entropy backward) */
  scaleRows: kernel(["src", "dst", "scale", "R", "C"], (g) =>
    `    ${
      g.rows(
        p("R"),
        `
      (local.set $sb (f32.load ${p("scale")})) (local.set $vb (f32x4.splat ${p("sb")}))
      ${g.each(p("C"), (L, at) => L.store(at("dst"), L.op("mul", L.load(at("src")), L.get("b"))))}
      ${advance(bytes(p("C")), "src", "dst")}
      ${advance("(i32.const 4)", "scale")}`,
      )
    }`),
  /** y = a + b elementwise (tfjs's Add for same-shape float32 tensors: residuals, gradient sums) */
  add: kernel(
    ["a", "b", "y", "n"],
    (g) =>
      `    ${
        g.each(p("n"), (L, at) => L.store(at("y"), L.op("add", L.load(at("a")), L.load(at("b")))))
      }`,
  ),
  /** Σ g² (f32 lanes, per tensor) */
  sumSquares: kernel(["g", "n"], (g) =>
    `    ${zero("a")}
    ${
      g.each(p("n"), (L, at) =>
        `${L.set("b", L.load(at("g")))} ${
          L.set("a", L.op("add", L.get("a"), L.op("mul", L.get("b"), L.get("b"))))
        }`)
    }
    ${hsum(p("va"), p("sa"))}`, { result: "f32" }),
  /** AdamW in place: m, v ← moments of g·scale; w ← w − lr·(m/bc1 / (√(v/bc2) + eps) + decay·w) */
  adamw: kernel([
    "w",
    "m",
    "v",
    "g",
    "n",
    "scale:f32",
    "lr:f32",
    "b1:f32",
    "b2:f32",
    "bc1:f32",
    "bc2:f32",
    "eps:f32",
    "decay:f32",
  ], (g) =>
    `    ${
      g.each(p("n"), (L, at) => {
        const s = (name: string) => L.dup(p(name));
        return `
      ${L.set("a", L.op("mul", L.load(at("g")), s("scale")))}
      ${
          L.set(
            "b",
            L.op(
              "add",
              L.op("mul", s("b1"), L.load(at("m"))),
              L.op("mul", L.op("sub", L.k(1), s("b1")), L.get("a")),
            ),
          )
        }
      ${
          L.set(
            "c",
            L.op(
              "add",
              L.op("mul", s("b2"), L.load(at("v"))),
              L.op("mul", L.op("sub", L.k(1), s("b2")), L.op("mul", L.get("a"), L.get("a"))),
            ),
          )
        }
      ${L.store(at("m"), L.get("b"))}
      ${L.store(at("v"), L.get("c"))}
      ${L.set("d", L.load(at("w")))}
      ${
          L.store(
            at("w"),
            L.op(
              "sub",
              L.get("d"),
              L.op(
                "mul",
                s("lr"),
                L.op(
                  "add",
                  L.op(
                    "div",
                    L.op("div", L.get("b"), s("bc1")),
                    L.op("add", L.op("sqrt", L.op("div", L.get("c"), s("bc2"))), s("eps")),
                  ),
                  L.op("mul", s("decay"), L.get("d")),
                ),
              ),
            ),
          )
        }`;
      })
    }`),
};

type KernelFn<D> = D extends KernelDef<infer P, infer R>
  ? (...args: { [I in keyof P]: number }) => R extends "f32" ? number : void
  : never;

/** The kernels, called with byte offsets into tfjs-backend-wasm's heap. */
export type Simd = { [K in keyof typeof KERNELS]: KernelFn<(typeof KERNELS)[K]> };

/** Each kernel's parameter names, as the table declares them (for tests and tools). */
export const SIMD_KERNEL_PARAMS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(KERNELS).map(([n, k]) => [n, k.params]),
);

/**
 * The module's text, assembled from {@linkcode KERNELS} with its own labels and constants.
 * `shared`: the memory it imports is a shared one (tfjs's heap made shared, `shared_heap.ts`),
 * which an import must declare, with its maximum.
 */
export function simdSource(shared = false): string {
  const g = new Gen();
  const funcs = Object.entries(KERNELS).map(
    ([name, k]: [string, KernelDef<readonly string[], "f32" | "void">]) => {
      const params = k.params.map((q) => {
        const [n, t = "i32"] = q.split(":");
        return `(param $${n} ${t})`;
      }).join(" ");
      const result = k.result === "f32" ? " (result f32)" : "";
      return `(func (export "${name}") ${params}${result} ${LOCALS} ${k.locals ?? ""}
    ${k.body(g)})`;
    },
  ).join("\n\n  ");
  return `(module
  (import "env" "memory" (memory 1${shared ? " 65536 shared" : ""}))
  ${g.globals()}
  ${funcs}
)`;
}

let compiled: WebAssembly.Module | undefined;
let compiledShared: WebAssembly.Module | undefined;

/** Assemble the module (once per process), for a plain memory and for a shared one. */
export async function compileSimd(): Promise<WebAssembly.Module> {
  if (compiled) return compiled;
  const wabt = await wabtInit();
  const assemble = (shared: boolean) => {
    const parsed = wabt.parseWat("dvsft-simd.wat", simdSource(shared), {
      simd: true,
      bulk_memory: true,
      relaxed_simd: true,
      threads: shared,
    });
    try {
      parsed.resolveNames();
      // wabt's validator rejects shared memories whatever its features; V8 validates the binary
      if (!shared) parsed.validate();
      return new WebAssembly.Module(parsed.toBinary({}).buffer as Uint8Array<ArrayBuffer>);
    } finally {
      parsed.destroy();
    }
  };
  compiledShared = assemble(true);
  compiled = assemble(false);
  return compiled;
}

/** The compiled module for a memory of this kind (`compileSimd` must have run). */
export function simdModule(shared: boolean): WebAssembly.Module {
  const m = shared ? compiledShared : compiled;
  if (!m) throw new Error("simd: compileSimd() has not run");
  return m;
}

/** Is this memory shared between threads (its buffer a SharedArrayBuffer)? */
export function isShared(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
}

/** The kernels of one instance over `memory`, on this thread (what a pool's helpers run too). */
export function simdInstance(memory: WebAssembly.Memory): Simd {
  const instance = new WebAssembly.Instance(simdModule(isShared(memory)), { env: { memory } });
  return instance.exports as unknown as Simd;
}

const instances = new WeakMap<WebAssembly.Memory, Simd>();

/**
 * The kernels bound to a memory (tfjs-backend-wasm's); `compileSimd` must have run. Over a
 * shared memory the row and elementwise kernels split their work with helper threads
 * (`simd_pool.ts`); the split keeps every element's arithmetic, so results are the same.
 */
export function simdFor(memory: WebAssembly.Memory): Simd {
  let simd = instances.get(memory);
  if (!simd) {
    const local = simdInstance(memory);
    simd = isShared(memory) ? splitAcrossThreads(local, memory, SIMD_KERNEL_PARAMS) : local;
    instances.set(memory, simd);
  }
  return simd;
}

/** True once `compileSimd` has run in this process. */
export function simdCompiled(): boolean {
  return compiled !== undefined;
}
