import { assert, assertEquals, assertRejects } from "@std/assert";
import { join } from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import { detectSuiteLayout, readSuiteFile, SuiteFileError } from "./suite_file.ts";
import { sha256Hex } from "../util/hash.ts";

/** A real PNG of one colour. */
function png(w: number, h: number, color: string): Uint8Array {
  const c = createCanvas(w, h);
  const ctx = c.getContext("2d");
  ctx.fillStyle = color;
  ctx.fillRect(0, 0, w, h);
  return new Uint8Array(c.toBuffer("image/png"));
}
const RED = png(20, 10, "#f00"), BLUE = png(8, 8, "#00f");

import { bin, imageStruct, int, list, str, writeParquet } from "../../tests/_parquet.ts";

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-suite-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TEN = ["two", "2", "2", "two", "3", "2", "two", "2", "2", "3"];

Deno.test("suite file: TextVQA parquet (lmms-lab layout, image struct, 10 answers)", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "textvqa_val.parquet");
    await writeParquet(path, {
      image_id: [str("image_id"), ["a1", "b2", "c3"]],
      question_id: [int("question_id"), [34602n, 34603n, 34604n]],
      question: [str("question"), ["what is the number?", "what brand?", "who?"]],
      image: [imageStruct("image"), [
        { bytes: RED, path: null },
        { bytes: BLUE, path: "b.png" },
        { bytes: RED, path: null },
      ]],
      answers: [list("answers"), [TEN, Array(10).fill("nokia"), Array(10).fill("x")]],
      ocr_tokens: [list("ocr_tokens"), [["2"], ["nokia"], []]],
    });
    const s = await readSuiteFile(path);
    assertEquals([s.format, s.layout, s.rows, s.items.length], ["parquet", "textvqa", 3, 3]);
    assertEquals(s.sha256, await sha256Hex(await Deno.readFile(path)));
    assertEquals(s.id, `textvqa_val@${s.sha256.slice(0, 12)}`);
    assertEquals(s.items[0], {
      id: "34602",
      image: RED,
      question: "what is the number?",
      answers: TEN,
      metric: "vqa",
    });
    assertEquals(s.items[1]!.image, BLUE);
    const two = await readSuiteFile(path, { limit: 2 });
    assertEquals([two.rows, two.items.map((i) => i.id)], [3, ["34602", "34603"]]);
  });
});

Deno.test("suite file: DocVQA and ChartQA parquet, InfoVQA JSONL with image paths", async () => {
  await withDir(async (dir) => {
    await writeParquet(join(dir, "docvqa.parquet"), {
      questionId: [int("questionId"), [49153n]],
      question: [str("question"), ["What is the ‘actual’ value per 1000?"]],
      question_types: [list("question_types"), [["figure/diagram"]]],
      image: [imageStruct("image"), [{ bytes: RED, path: null }]],
      docId: [int("docId"), [14465n]],
      answers: [list("answers"), [["0.28", "$0.28"]]],
    });
    const doc = await readSuiteFile(join(dir, "docvqa.parquet"));
    assertEquals(doc.layout, "docvqa");
    assertEquals(doc.items[0]!.answers, ["0.28", "$0.28"]);
    assertEquals([doc.items[0]!.metric, doc.items[0]!.id], ["anls", "49153"]);

    // lmms-lab/ChartQA: one answer string and a split type
    await writeParquet(join(dir, "chartqa.parquet"), {
      type: [str("type"), ["human_test", "augmented_test"]],
      question: [str("question"), ["How many?", "Which year?"]],
      answer: [str("answer"), ["14", "2019"]],
      image: [imageStruct("image"), [{ bytes: BLUE, path: null }, { bytes: RED, path: null }]],
    });
    const chart = await readSuiteFile(join(dir, "chartqa.parquet"));
    assertEquals(chart.layout, "chartqa");
    assertEquals(chart.items.map((i) => [i.id, i.answers, i.metric]), [
      ["0", ["14"], "relaxed"],
      ["1", ["2019"], "relaxed"],
    ]);
    // HuggingFaceM4/ChartQA: query + label list, image as raw bytes
    await writeParquet(join(dir, "chartqa_m4.parquet"), {
      image: [bin("image"), [RED]],
      query: [str("query"), ["Is the value of Favorable 38 in 2015?"]],
      label: [list("label"), [["Yes"]]],
    });
    const m4 = await readSuiteFile(join(dir, "chartqa_m4.parquet"));
    assertEquals([m4.layout, m4.items[0]!.question, m4.items[0]!.answers], [
      "chartqa",
      "Is the value of Favorable 38 in 2015?",
      ["Yes"],
    ]);

    await Deno.mkdir(join(dir, "images"));
    await Deno.writeFile(join(dir, "images", "10002.png"), BLUE);
    await Deno.writeTextFile(
      join(dir, "infovqa_val.jsonl"),
      jsonl([{
        questionId: 98313,
        question: "Which social platform has heavy female audience?",
        answers: ["pinterest"],
        answer_type: ["single span"],
        image: { bytes: null, path: "images/10002.png" },
        image_url: "https://example.invalid/10002.jpeg",
      }, {
        questionId: 98314,
        question: "What percentage?",
        answers: ["52%", "52"],
        answer_type: ["single span"],
        image: "images/10002.png",
        image_url: "x",
      }]),
    );
    const info = await readSuiteFile(join(dir, "infovqa_val.jsonl"));
    assertEquals([info.format, info.layout], ["jsonl", "infovqa"]);
    assertEquals(info.items.map((i) => [i.id, i.image, i.metric]), [
      ["98313", BLUE, "anls"],
      ["98314", BLUE, "anls"],
    ]);
  });
});

Deno.test("suite file: OCRBench (HME rows get their own rule) and the generic form", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, "ocrbench.jsonl"),
      jsonl([
        {
          dataset: "IIIT5K",
          question: "what is written in the image?",
          question_type: "Regular Text Recognition",
          answer: ["CHINA"],
          image: { bytes: b64(RED), path: null },
        },
        {
          dataset: "HME100k",
          question:
            "Please write out the expression of the formula in the image using LaTeX format.",
          question_type: "Handwritten Mathematical Expression Recognition",
          answer: "x ^ { 2 }",
          image: `data:image/png;base64,${b64(BLUE)}`,
        },
      ]),
    );
    const ocr = await readSuiteFile(join(dir, "ocrbench.jsonl"));
    assertEquals(ocr.layout, "ocrbench");
    assertEquals(ocr.items.map((i) => [i.answers, i.metric, i.image.length]), [
      [["CHINA"], "ocrbench", RED.length],
      [["x ^ { 2 }"], "ocrbench_hme", BLUE.length],
    ]);

    await Deno.writeFile(join(dir, "a.png"), RED);
    await Deno.writeTextFile(
      join(dir, "mine.jsonl"),
      jsonl([
        { id: "q1", image: "a.png", question: "Total?", answers: "12.50", metric: "relaxed" },
        { id: "q2", image: "a.png", question: "Name?", answers: ["Ann", "ann b"], metric: "em" },
      ]),
    );
    const g = await readSuiteFile(join(dir, "mine.jsonl"));
    assertEquals(g.items.map((i) => [i.id, i.answers, i.metric]), [
      ["q1", ["12.50"], "relaxed"],
      ["q2", ["Ann", "ann b"], "em"],
    ]);
    // one metric for all rows, instead of the rows' own
    const forced = await readSuiteFile(join(dir, "mine.jsonl"), { metric: "anls" });
    assert(forced.items.every((i) => i.metric === "anls"));
    // generic parquet with raw image bytes
    await writeParquet(join(dir, "mine.parquet"), {
      image: [bin("image"), [BLUE]],
      question: [str("question"), ["q"]],
      answers: [list("answers"), [["a", "b"]]],
      metric: [str("metric"), ["ocrbench"]],
    });
    const gp = await readSuiteFile(join(dir, "mine.parquet"));
    assertEquals([gp.layout, gp.items[0]!.answers, gp.items[0]!.metric], [
      "generic",
      ["a", "b"],
      "ocrbench",
    ]);
  });
});

/** The read fails with this code, and the message contains every fragment. */
async function assertSuiteError(
  f: () => Promise<unknown>,
  code: string,
  fragments: string[],
  row?: number,
): Promise<void> {
  const e = await assertRejects(f, SuiteFileError);
  assertEquals(e.code, code, e.message);
  for (const x of fragments) assert(e.message.includes(x), `'${x}' not in: ${e.message}`);
  assertEquals(e.row, row, e.message);
}

Deno.test("suite file: bad files fail with a clear error naming the row", async () => {
  await withDir(async (dir) => {
    const file = async (name: string, rows: object[]) => {
      const p = join(dir, name);
      await Deno.writeTextFile(p, jsonl(rows));
      return p;
    };
    const ok = { image: { bytes: b64(RED) }, question: "q", answers: ["a"], metric: "em" };
    // a missing column (the layout named; DocVQA needs answers)
    const noAnswers = await file("doc.jsonl", [{ image: "x.png", question: "q", questionId: 1 }]);
    await assertSuiteError(
      () => readSuiteFile(noAnswers, { layout: "docvqa" }),
      "missing_column",
      ["no answer column", "'answers'", "[image, question, questionId]"],
    );
    await assertSuiteError(() => readSuiteFile(noAnswers), "unknown_layout", [
      "match no known layout",
    ]);
    // an unknown metric in row 1
    const bleu = await file("m.jsonl", [ok, { ...ok, id: "x7", metric: "bleu" }]);
    await assertSuiteError(
      () => readSuiteFile(bleu),
      "unknown_metric",
      ['row 1 (id "x7")', "'metric'", 'unknown metric "bleu"'],
      1,
    );
    // images that do not decode: not an image, a truncated PNG, a path out of the folder
    const garbage = await file("g.jsonl", [ok, ok, {
      ...ok,
      image: { bytes: b64(new TextEncoder().encode("hello")) },
    }]);
    await assertSuiteError(() => readSuiteFile(garbage), "bad_image", [
      "row 2",
      "'image'",
      "not a supported image",
    ], 2);
    const cut = await file("t.jsonl", [{
      ...ok,
      image: { bytes: b64(RED.subarray(0, RED.length - 20)) },
    }]);
    await assertSuiteError(
      () => readSuiteFile(cut),
      "bad_image",
      ["row 0", "truncated or corrupt"],
      0,
    );
    const escape = await file("e.jsonl", [{ ...ok, image: "../../etc/passwd" }]);
    await assertSuiteError(() => readSuiteFile(escape), "bad_image", [
      "leaves the suite file's folder",
    ], 0);
    const absent = await file("n.jsonl", [{ ...ok, image: "missing.png" }]);
    await assertSuiteError(() => readSuiteFile(absent), "bad_image", [
      '"missing.png" cannot be read',
    ], 0);
    // bad values
    const num = await file("v.jsonl", [ok, { ...ok, answers: [3] }]);
    await assertSuiteError(() => readSuiteFile(num), "bad_value", ["row 1", "'answers'", "[3]"], 1);
    const empty = await file("w.jsonl", [{ ...ok, answers: [] }]);
    await assertSuiteError(() => readSuiteFile(empty), "bad_value", ["non-empty list"], 0);
    // bounds, checked before the rows are read
    const many = await file("many.jsonl", [ok, ok, ok]);
    await assertSuiteError(() => readSuiteFile(many, { maxRows: 2 }), "too_many_rows", ["3 rows"]);
    assertEquals((await readSuiteFile(many, { maxRows: 2, limit: 2 })).items.length, 2);
    await assertSuiteError(
      () => readSuiteFile(many, { maxImageBytes: 10 }),
      "bad_image",
      [`${RED.length} bytes is over the limit of 10`],
      0,
    );
    await assertSuiteError(() => readSuiteFile(many, { maxFileBytes: 10 }), "file_too_large", [
      "over the limit",
    ]);
    // not JSON / not parquet
    const broken = join(dir, "b.jsonl");
    await Deno.writeTextFile(broken, JSON.stringify(ok) + "\n{oops\n");
    await assertSuiteError(
      () => readSuiteFile(broken),
      "unreadable_file",
      ["line 2 is not JSON"],
      1,
    );
    const fake = join(dir, "f.parquet");
    await Deno.writeTextFile(fake, "PAR1 not really");
    await assertSuiteError(() => readSuiteFile(fake), "unreadable_file", ["as parquet"]);
    await assertSuiteError(() => readSuiteFile(join(dir, "none.jsonl")), "unreadable_file", [
      "none.jsonl",
    ]);
  });
});

Deno.test("suite file: layout detection from columns", () => {
  assertEquals(detectSuiteLayout(["image", "question", "answers", "ocr_tokens"]), "textvqa");
  assertEquals(
    detectSuiteLayout(["image", "question", "answers", "questionId", "docId"]),
    "docvqa",
  );
  assertEquals(detectSuiteLayout(["image", "question", "answers", "answer_type"]), "infovqa");
  assertEquals(detectSuiteLayout(["image", "query", "label"]), "chartqa");
  assertEquals(detectSuiteLayout(["image", "question", "answer", "question_type"]), "ocrbench");
  assertEquals(detectSuiteLayout(["image", "question", "answers", "metric"]), "generic");
  assertEquals(detectSuiteLayout(["question", "answers", "metric"]), null);
});

Deno.test("suite file: a TextVQA parquet written by pyarrow as Hugging Face datasets does", async () => {
  const dir = new URL("../../tests/fixtures/suite_file/", import.meta.url);
  const expected = JSON.parse(await Deno.readTextFile(new URL("textvqa_pyarrow.json", dir))) as {
    items: { id: string; question: string; answers: string[]; image_bytes: number }[];
  };
  const s = await readSuiteFile(new URL("textvqa_pyarrow.parquet", dir).pathname);
  assertEquals([s.format, s.layout, s.rows], ["parquet", "textvqa", 2]);
  assertEquals(
    s.items.map((i) => ({
      id: i.id,
      question: i.question,
      answers: i.answers,
      image_bytes: i.image.length,
    })),
    expected.items,
  );
  assert(s.items.every((i) => i.metric === "vqa"));
});
