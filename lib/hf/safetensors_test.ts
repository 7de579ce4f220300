import { assert, assertEquals, assertRejects } from "@std/assert";
import { join } from "node:path";
import {
  decodeTensorBytes,
  encodeTensorBytes,
  floatToBf16,
  floatToHalf,
  SafetensorsError,
  SafetensorsFile,
  writeSafetensors,
} from "./safetensors.ts";
import { Checkpoint, INDEX_FILE, SINGLE_FILE, writeCheckpointWeights } from "./checkpoint.ts";

const FIX = new URL("../../tests/fixtures/qwen2vl/", import.meta.url).pathname;
/** The values numpy / torch hold for the f16 and bf16 fixtures (non-finite ones as strings). */
const values = (JSON.parse(await Deno.readTextFile(FIX + "expected.json")) as {
  dtype_values: Record<string, Array<number | string>>;
}).dtype_values;
const want = (name: string) =>
  values[name]!.map((v) => v === "inf" ? Infinity : v === "-inf" ? -Infinity : Number(v));

Deno.test("reads every dtype of a file written by Python's safetensors (numpy), with metadata", async () => {
  const f = await SafetensorsFile.open(FIX + "dtypes.safetensors");
  try {
    assertEquals(f.metadata, { made_by: "make_fixtures.py" });
    const f16 = await f.read("f16");
    assertEquals(f16.shape, [11, 1]);
    assertEquals(Array.from(f16.data), want("f16"));
    assert(Object.is(f16.data[1], -0), "negative zero survives");
    assertEquals(Array.from((await f.read("f64")).data), [
      1.5,
      Math.fround(-1e-30),
      Math.fround(1e30),
      Math.fround(Math.PI),
    ]);
    assertEquals(Array.from((await f.read("i64")).data), [-(2 ** 31), 2 ** 31 - 1, 0, 7]);
    assertEquals(Array.from((await f.read("i32")).data), [-5, 5]);
    assertEquals(Array.from((await f.read("i16")).data), [-300, 300]);
    assertEquals(Array.from((await f.read("i8")).data), [-128, 127]);
    assertEquals(Array.from((await f.read("u8")).data), [0, 255]);
    assertEquals(Array.from((await f.read("bool")).data), [1, 0, 1]);
    const empty = await f.read("empty");
    assertEquals([empty.shape, empty.data.length], [[0, 3], 0]);
    const scalar = await f.read("scalar");
    assertEquals([scalar.shape, Array.from(scalar.data)], [[], [2.5]]);
  } finally {
    f.close();
  }
});

Deno.test("reads bf16 written by torch; our f16/bf16 encoders give the bytes numpy/torch wrote", async () => {
  const f = await SafetensorsFile.open(FIX + "bf16.safetensors");
  const g = await SafetensorsFile.open(FIX + "dtypes.safetensors");
  try {
    const bf = await f.read("bf16");
    assertEquals(Array.from(bf.data), want("bf16"));
    // re-encoding the decoded values must reproduce the file's bits exactly
    const raw = async (file: SafetensorsFile, name: string) => {
      const info = file.tensors.get(name)!;
      const h = await Deno.open(file.path);
      try {
        await h.seek(info.offset, Deno.SeekMode.Start);
        const buf = new Uint8Array(info.byteLength);
        let got = 0;
        while (got < buf.length) got += (await h.read(buf.subarray(got)))!;
        return buf;
      } finally {
        h.close();
      }
    };
    assertEquals(encodeTensorBytes(bf.data as Float32Array, "BF16"), await raw(f, "bf16"));
    const half = await g.read("f16");
    assertEquals(encodeTensorBytes(half.data as Float32Array, "F16"), await raw(g, "f16"));
  } finally {
    f.close();
    g.close();
  }
});

Deno.test("f32 → f16 / bf16 rounding: nearest even, overflow to infinity, subnormals, NaN", () => {
  assertEquals(floatToHalf(1), 0x3c00);
  assertEquals(floatToHalf(65504), 0x7bff);
  assertEquals(floatToHalf(65520), 0x7c00); // rounds up past the largest half
  assertEquals(floatToHalf(-Infinity), 0xfc00);
  assertEquals(floatToHalf(2 ** -24), 0x0001); // smallest subnormal
  assertEquals(floatToHalf(2 ** -26), 0x0000); // below half of it: zero
  assertEquals(floatToHalf(1 + 2 ** -11), 0x3c00); // tie → even
  assertEquals(floatToHalf(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assert((floatToHalf(NaN) & 0x7c00) === 0x7c00 && (floatToHalf(NaN) & 0x3ff) !== 0);
  assertEquals(floatToBf16(1), 0x3f80);
  assertEquals(floatToBf16(1 + 2 ** -8), 0x3f80); // tie → even
  assertEquals(floatToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert((floatToBf16(NaN) & 0x7f80) === 0x7f80 && (floatToBf16(NaN) & 0x7f) !== 0);
  // every half decodes and re-encodes to itself (NaNs aside)
  const all = new Uint8Array(65536 * 2);
  for (let h = 0; h < 65536; h++) all[2 * h] = h & 0xff, all[2 * h + 1] = h >> 8;
  const decoded = decodeTensorBytes(all, "F16", 65536) as Float32Array;
  for (let h = 0; h < 65536; h++) {
    if (Number.isNaN(decoded[h])) continue;
    assertEquals(floatToHalf(decoded[h]!), h, `half 0x${h.toString(16)}`);
  }
});

Deno.test("the sharded bf16 checkpoint transformers wrote equals the f32 one rounded to bf16", async () => {
  const f32 = await Checkpoint.open(FIX + "qwen2_vl");
  const bf = await Checkpoint.open(FIX + "qwen2_vl_bf16_sharded");
  try {
    assertEquals(bf.shardCount, 2);
    assertEquals(bf.names(), f32.names());
    for (const name of f32.names()) {
      const a = await f32.read(name);
      const b = await bf.read(name);
      assertEquals(b.dtype, "BF16");
      assertEquals(b.shape, a.shape);
      const rounded = decodeTensorBytes(
        encodeTensorBytes(a.data as Float32Array, "BF16"),
        "BF16",
        a.data.length,
      );
      assertEquals(b.data, rounded, name);
    }
  } finally {
    f32.close();
    bf.close();
  }
});

Deno.test("writer: one file or shards + index, every dtype, read back tensor by tensor", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-st-" });
  try {
    const a = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10);
    const tensors = [
      { name: "a", shape: [10, 100], data: a },
      { name: "b.half", shape: [1000], data: a, dtype: "F16" as const },
      { name: "c.bf16", shape: [2, 500], data: a, dtype: "BF16" as const },
    ];
    const one = await writeCheckpointWeights(dir, tensors);
    assertEquals(one.files, [SINGLE_FILE]);
    let ck = await Checkpoint.open(dir);
    assertEquals(ck.shardCount, 1);
    assertEquals((await ck.read("a")).data, a);
    ck.close();
    const many = await writeCheckpointWeights(dir, tensors, { maxShardBytes: 4000 });
    assertEquals(many.files, [
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      INDEX_FILE,
    ]);
    ck = await Checkpoint.open(dir); // the single file was removed: the index is used
    try {
      assertEquals(ck.shardCount, 2);
      assertEquals(ck.names(), ["a", "b.half", "c.bf16"]);
      assertEquals((await ck.read("a")).data, a);
      const half = (await ck.read("b.half")).data;
      for (let i = 0; i < a.length; i++) {
        assert(Math.abs(half[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -11 + 1e-7);
      }
      const bf = (await ck.read("c.bf16")).data;
      for (let i = 0; i < a.length; i++) {
        assert(Math.abs(bf[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -8);
      }
    } finally {
      ck.close();
    }
    const index = JSON.parse(await Deno.readTextFile(join(dir, INDEX_FILE)));
    assertEquals(index.metadata.total_size, 4000 + 2000 + 2000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corrupt files are refused with the file and the fault named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-st-bad-" });
  try {
    const put = async (name: string, header: unknown, dataBytes: number, rawLen?: bigint) => {
      const json = new TextEncoder().encode(JSON.stringify(header));
      const buf = new Uint8Array(8 + json.length + dataBytes);
      new DataView(buf.buffer).setBigUint64(0, rawLen ?? BigInt(json.length), true);
      buf.set(json, 8);
      await Deno.writeFile(join(dir, name), buf);
      return join(dir, name);
    };
    const cases: Array<[string, Promise<string>, RegExp]> = [
      ["huge header", put("h.st", {}, 0, 1n << 40n), /header length/],
      [
        "offsets",
        put("o.st", { w: { dtype: "F32", shape: [4], data_offsets: [0, 12] } }, 16),
        /expected 16 bytes/,
      ],
      [
        "past the end",
        put("e.st", { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8),
        /inside 8/,
      ],
      [
        "overlap",
        put("v.st", {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        }, 12),
        /overlap/,
      ],
      [
        "dtype",
        put("d.st", { w: { dtype: "C64", shape: [1], data_offsets: [0, 8] } }, 8),
        /bad header entry/,
      ],
      ["metadata", put("m.st", { __metadata__: { a: 1 } }, 0), /__metadata__/],
    ];
    for (const [what, path, msg] of cases) {
      const file = await path;
      const e = await assertRejects(
        async () => (await SafetensorsFile.open(file)).close(),
        SafetensorsError,
      ) as Error;
      assert(msg.test(e.message) && e.message.includes(file), `${what}: ${e.message}`);
    }
    await Deno.writeFile(join(dir, "short.st"), new Uint8Array(3));
    await assertRejects(
      () => SafetensorsFile.open(join(dir, "short.st")),
      SafetensorsError,
      "too short",
    );
    await assertRejects(() => Checkpoint.open(dir), SafetensorsError, "neither");
    await Deno.writeTextFile(
      join(dir, INDEX_FILE),
      JSON.stringify({ weight_map: { w: "../x.safetensors" } }),
    );
    await assertRejects(
      () => Checkpoint.open(dir),
      SafetensorsError,
      "bad model.safetensors.index.json",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSafetensors refuses a shape that does not match its data, and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-st-w-" });
  try {
    await assertRejects(
      () =>
        writeSafetensors(join(dir, "x.safetensors"), [{
          name: "w",
          shape: [3],
          data: new Float32Array(2),
        }]),
      RangeError,
      "shape [3] holds 3 values, data has 2",
    );
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
