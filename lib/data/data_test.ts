import { assert, assertEquals, assertGreater, assertRejects } from "@std/assert";
import { join } from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import {
  ChatLineSchema,
  exportDataset,
  generateDataset,
  generateSample,
  importChat,
  itemLabelSet,
  readDataset,
  SUITES,
} from "./mod.ts";
import { GeometrySpecSchema } from "../geometry/mod.ts";
import { getTokenizer } from "../tokenizer/mod.ts";
import { sequenceTokenizerFor } from "../layout/mod.ts";
import { HELD_OUT_FONTS, TRAIN_FONTS } from "../render/fonts.ts";
import { createOcrEngine } from "../ocr/mod.ts";
import { sha256Hex } from "../util/hash.ts";

const png = (g: Awaited<ReturnType<typeof generateSample>>) =>
  new Uint8Array(g.canvas.toBuffer("image/png"));

Deno.test("generator: same (suite, index) → identical bytes, words and questions", async () => {
  for (const suite of Object.keys(SUITES)) {
    const a = await generateSample(suite, 5, 224), b = await generateSample(suite, 5, 224);
    assertEquals(await sha256Hex(png(a)), await sha256Hex(png(b)), suite);
    assertEquals([a.words, a.qa], [b.words, b.qa]);
  }
});

Deno.test("generator: an item does not depend on what the process generated before (1 500 other items)", async () => {
  // generator v3 shuffled with sort(() => rng.next() - 0.5): after ~1 000 samples the engine's
  // sort ordered such lists differently, and the forms and tables of a suite changed mid-process
  const fingerprint = async () => {
    const out: unknown[] = [];
    for (const suite of ["doc-kv", "table-lookup", "charts"]) {
      for (let k = 0; k < 6; k++) out.push((await generateSample(suite, k, 56)).qa);
    }
    return out;
  };
  const before = await fingerprint();
  for (let k = 0; k < 1500; k++) await generateSample("doc-kv", 10_000 + k, 56);
  assertEquals(await fingerprint(), before);
});

Deno.test("generator: boxes stay inside the image after augmentation; every answer is in the image", async () => {
  for (const suite of Object.keys(SUITES)) {
    for (let k = 0; k < 12; k++) {
      const g = await generateSample(suite, k, 448);
      for (const w of g.words) {
        const [x0, y0, x1, y1] = w.box;
        assert(
          x0 >= 0 && y0 >= 0 && x1 <= 448 && y1 <= 448 && x1 > x0 && y1 > y0,
          `${suite}#${k} ${w.text} ${w.box}`,
        );
      }
      const present = new Set(g.words.map((w) => w.text));
      for (const q of g.qa) {
        if (q.kind === "count") assert(Number(q.answer) >= 1);
        else {for (const t of q.answer.split(" ")) {
            assert(present.has(t), `${suite}#${k}: '${t}' of '${q.answer}' not in the image`);
          }}
      }
    }
  }
});

Deno.test("generator: held-out fonts never appear in training data; the held-out suite uses only them", async () => {
  const trainFonts = new Set<string>(), heldFonts = new Set<string>();
  for (let k = 0; k < 150; k++) trainFonts.add((await generateSample("train", k, 112)).font);
  for (let k = 0; k < 40; k++) heldFonts.add((await generateSample("heldout-fonts", k, 112)).font);
  for (const f of trainFonts) {
    assert(
      (TRAIN_FONTS as readonly string[]).includes(f) &&
        !(HELD_OUT_FONTS as readonly string[]).includes(f),
      f,
    );
  }
  for (const f of heldFonts) assert((HELD_OUT_FONTS as readonly string[]).includes(f), f);
  assertGreater(trainFonts.size, 3);
});

Deno.test("generator: boxes match pixels — OCR of each sampled box's crop reads its word", async () => {
  const ocr = await createOcrEngine("auto", { concurrency: 2 });
  let agree = 0, total = 0;
  try {
    for (let k = 0; k < 6; k++) {
      const g = await generateSample("text-reading", k, 448);
      for (const w of g.words.slice(0, 3)) {
        const [x0, y0, x1, y1] = w.box;
        const pad = 6, sc = 2;
        const crop = createCanvas(
          Math.ceil((x1 - x0 + 2 * pad) * sc),
          Math.ceil((y1 - y0 + 2 * pad) * sc),
        );
        const ctx = crop.getContext("2d");
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, crop.width, crop.height);
        ctx.drawImage(
          g.canvas,
          x0 - pad,
          y0 - pad,
          x1 - x0 + 2 * pad,
          y1 - y0 + 2 * pad,
          0,
          0,
          crop.width,
          crop.height,
        );
        const read = (await ocr.recognize(new Uint8Array(crop.toBuffer("image/png")))).map((x) =>
          x.text
        ).join(" ");
        total++;
        if (read.replace(/[^A-Za-z0-9.-]/g, "") === w.text) agree++;
      }
    }
  } finally {
    await ocr.close();
  }
  assertGreater(agree / total, 0.8, `${agree}/${total} crops read as their word`);
});

Deno.test("datasets: shards, resume after a kill, N processes = 1 process; words, not labels, on disk", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-ds-" });
  try {
    const cfg = { suite: "doc-kv", n: 25, shardSize: 10, size: 112 };
    const whole = await generateDataset(cfg, { out: join(dir, "one") });
    assertEquals([whole.complete, whole.shards.length, whole.shards.map((s) => s.count)], [
      true,
      3,
      [10, 10, 5],
    ]);
    // three "processes" on one folder
    for (const i of [0, 1, 2]) {
      await generateDataset(cfg, { out: join(dir, "three"), shard: { i, n: 3 } });
    }
    const a = await readDataset(join(dir, "one")), b = await readDataset(join(dir, "three"));
    assertEquals(a.manifest.shards, b.manifest.shards);
    // an item is its image, its words with boxes and its questions
    const g = await generateSample("doc-kv", 0, 112);
    assertEquals(a.items[0]!.words, g.words);
    assertEquals(a.items[0]!.qa, g.qa);
    assertEquals([a.items[0]!.width, a.items[0]!.source.kind], [112, "render"]);
    // a killed run: one shard half-written (temp folder), one complete shard corrupted
    await Deno.mkdir(join(dir, "one", ".tmp-shard-00001-dead"));
    await Deno.writeTextFile(join(dir, "one", "shard-00002", "records.jsonl"), "{}\n");
    let made = 0;
    const again = await generateDataset(cfg, { out: join(dir, "one"), onSample: () => made++ });
    assertEquals(made, 5); // only the bad shard is redone
    assertEquals(again.shards, whole.shards);
    // a later stretch of the suite: items start … start + n − 1
    const later = await generateDataset({ ...cfg, n: 2, start: 7 }, { out: join(dir, "later") });
    assertEquals(later.config.start, 7);
    const l = await readDataset(join(dir, "later"));
    assertEquals(l.items.map((it) => it.id), ["doc-kv:7", "doc-kv:8"]);
    assertEquals(l.items[1]!.qa, a.items[8]!.qa);
    assertEquals(l.items[1]!.words, a.items[8]!.words);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("datasets: export derives vision labels for a named geometry after the trainer's pixel limits; one schema for every geometry", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-ex-" });
  try {
    await generateDataset({ suite: "doc-kv", n: 3, size: 448 }, { out: join(dir, "ds") });
    const qwen = await getTokenizer("qwen2");
    const out = join(dir, "exports", "deep", "q.jsonl"); // the folder does not exist yet
    const r = await exportDataset(join(dir, "ds"), out, {
      geometry: GeometrySpecSchema.parse({ name: "qwen2-vl" }),
      tokenizer: qwen,
    });
    assertEquals(r.lines, 3);
    const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) =>
      ChatLineSchema.parse(JSON.parse(l))
    );
    // relative image paths by default, that resolve from the file's folder
    assert(!lines[0]!.images[0]!.startsWith("/"), lines[0]!.images[0]);
    await Deno.stat(join(dir, "exports", "deep", lines[0]!.images[0]!));
    // 448² → 16 × 16 tokens; the labels equal a label set built from the same words
    const { items } = await readDataset(join(dir, "ds"));
    const ls = itemLabelSet(items[0]!, "", GeometrySpecSchema.parse({ name: "qwen2-vl" }), qwen);
    assertEquals(lines[0]!.vision_labels[0]!.labels, ls.tokens.label);
    assertEquals(ls.tokens.label.length, 256);
    // LLaMA-Factory's image_max_pixels shrinks the image first: 448² → 224² → 8 × 8 tokens
    const small = join(dir, "exports", "small.jsonl");
    await exportDataset(join(dir, "ds"), small, {
      geometry: GeometrySpecSchema.parse({ name: "qwen2-vl" }),
      tokenizer: qwen,
      imageMaxPixels: 224 * 224,
    });
    const s0 = ChatLineSchema.parse(JSON.parse((await Deno.readTextFile(small)).split("\n")[0]!));
    assertEquals([s0.vision_labels[0]!.image_width, s0.vision_labels[0]!.labels.length], [224, 64]);
    assertEquals(s0.vision_labels[0]!.image_max_pixels, 224 * 224);
    // another geometry: the same keys and value types on every line
    const llava = join(dir, "exports", "llava.jsonl");
    await exportDataset(join(dir, "ds"), llava, {
      geometry: GeometrySpecSchema.parse({ name: "llava-1.5" }),
      tokenizer: qwen,
    });
    const shape = (v: unknown): unknown =>
      Array.isArray(v)
        ? ["array", v.length ? shape(v[0]) : null]
        : v && typeof v === "object"
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]))
        : typeof v;
    const l0 = JSON.parse((await Deno.readTextFile(llava)).split("\n")[0]!);
    assertEquals(shape(l0), shape(JSON.parse((await Deno.readTextFile(out)).split("\n")[0]!)));
    assertEquals(l0.vision_labels[0].labels.length, 576);
    // dataset_info.json names both files
    const info = JSON.parse(await Deno.readTextFile(join(dir, "exports", "dataset_info.json")));
    assertEquals(Object.keys(info).sort(), ["llava", "small"]);
    assertEquals(info.llava.formatting, "sharegpt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("datasets: import of a LLaMA-Factory mllm_demo file round-trips through export with the messages unchanged; bad lines are named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-im-" });
  try {
    await Deno.mkdir(join(dir, "mllm_demo_data"));
    const images = [];
    for (const k of [0, 1]) {
      const g = await generateSample("text-reading", k, 224);
      await Deno.writeFile(join(dir, "mllm_demo_data", `${k}.png`), png(g));
      await Deno.writeTextFile(
        join(dir, "mllm_demo_data", `${k}.boxes.json`),
        JSON.stringify(g.words),
      );
      images.push(g);
    }
    const demo = [
      {
        messages: [
          { content: "<image>Who are they?", role: "user" },
          { content: "They're a reading test.", role: "assistant" },
          { content: "What is the first word?", role: "user" },
          { content: images[0]!.words[0]!.text, role: "assistant" },
        ],
        images: ["mllm_demo_data/0.png"],
      },
      {
        messages: [{ content: "<image>Read it.", role: "user" }, {
          content: "ok",
          role: "assistant",
        }],
        images: ["mllm_demo_data/1.png"],
      },
      {
        messages: [{ content: "no image here", role: "user" }, {
          content: "fine",
          role: "assistant",
        }],
      },
    ];
    const file = join(dir, "mllm_demo.json");
    await Deno.writeTextFile(file, JSON.stringify(demo, null, 2));
    const m = await importChat(file, join(dir, "ds"), { words: "boxes" });
    assertEquals(m.shards[0]!.count, 2); // the text-only line has nothing to label
    const { items } = await readDataset(join(dir, "ds"));
    assertEquals(items[0]!.words, images[0]!.words);
    assertEquals(items[0]!.qa.map((q) => q.question), ["Who are they?", "What is the first word?"]);
    const out = join(dir, "out.jsonl");
    await exportDataset(join(dir, "ds"), out, {
      geometry: GeometrySpecSchema.parse({ name: "qwen2-vl" }),
      tokenizer: await getTokenizer("qwen2"),
    });
    const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.map((l) => l.messages), demo.slice(0, 2).map((d) => d.messages));
    assert(lines[0].vision_labels[0].labels.some((x: number) => x >= 0));

    // bad input: a clear error naming the line, and nothing written
    const bad = async (name: string, text: string, pattern: RegExp) => {
      const f = join(dir, name);
      await Deno.writeTextFile(f, text);
      const e = await assertRejects(() =>
        importChat(f, join(dir, `out-${name}`), { words: "none" })
      );
      assert(pattern.test((e as Error).message), (e as Error).message);
      assertEquals(await Deno.stat(join(dir, `out-${name}`)).catch(() => null), null);
    };
    const line = (img: string) => JSON.stringify({ messages: demo[1]!.messages, images: [img] });
    await bad(
      "missing.jsonl",
      `${line("mllm_demo_data/0.png")}\n${line("mllm_demo_data/nope.png")}\n`,
      /line 2: image 'mllm_demo_data\/nope.png' does not exist/,
    );
    await bad(
      "broken.jsonl",
      `${line("mllm_demo_data/0.png")}\n{"messages": [\n`,
      /line 2 is not valid JSON/,
    );
    await Deno.writeFile(join(dir, "..", "dvsft-outside.png"), png(images[0]!));
    try {
      await bad(
        "outside.jsonl",
        line("../dvsft-outside.png") + "\n",
        /line 1: image '..\/dvsft-outside.png' lies outside the data root/,
      );
    } finally {
      await Deno.remove(join(dir, "..", "dvsft-outside.png"));
    }
    await bad(
      "notimage.jsonl",
      line("mllm_demo_data/0.boxes.json") + "\n",
      /line 1: Cannot read image/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("datasets: export with layout sequence writes the model's input_ids and labels (Qwen2-VL placeholders)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-seq-" });
  try {
    await generateDataset({ suite: "doc-kv", n: 1, size: 224 }, { out: join(dir, "ds") });
    const geometry = GeometrySpecSchema.parse({ name: "qwen2-vl" });
    const tokenizer = await getTokenizer("qwen2", {
      extraSpecialTokens: sequenceTokenizerFor("qwen2-vl").extraSpecialTokens,
    });
    const out = join(dir, "seq.jsonl");
    await exportDataset(join(dir, "ds"), out, { geometry, tokenizer, layout: "sequence" });
    const l = ChatLineSchema.parse(JSON.parse((await Deno.readTextFile(out)).split("\n")[0]!));
    const ids = l.input_ids!, labels = l.labels!;
    assertEquals(ids.length, labels.length);
    const pad = tokenizer.tokenToId("<|image_pad|>")!;
    const visual = ids.flatMap((id, p) => (id === pad ? [p] : []));
    assertEquals(visual.length, 64); // 224² → 8 × 8 merged tokens
    // the vision labels sit at the visual positions, in order
    assertEquals(visual.map((p) => labels[p]), l.vision_labels[0]!.labels);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
