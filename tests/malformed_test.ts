/**
 * The malformed-input corpus (tests/fixtures/bad/, made by make_bad.py) against every endpoint
 * that takes input: a 4xx JSON error (or a 200 for unusual but valid images), never a 5xx,
 * and the server answers /healthz after each.
 */
import { assert, assertEquals } from "@std/assert";
import { createServerApp } from "../functions/server.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

const dir = new URL("./fixtures/bad/", import.meta.url).pathname;
const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();

/** What each image should get from POST /v1/label (multipart and JSON alike). */
const IMAGE_EXPECT: Record<string, number> = {
  "truncated.png": 422,
  "truncated.jpg": 422,
  "truncated.webp": 422,
  "truncated.gif": 422,
  "truncated.tiff": 415,
  "tiff-image.tiff": 415,
  "bmp-image.bmp": 415,
  "corrupt-crc.png": 422,
  // structurally complete, 64 bytes of scan data zeroed: skia's decoder refuses it
  "corrupt-data.jpg": 422,
  "zero-bytes.png": 400,
  "text-named.png": 415,
  "html-named.jpg": 415,
  "bomb-50000x50000.png": 413,
  "bomb-1x30000000.png": 413,
  "bomb-65535.gif": 413,
  "aspect-300x1.png": 422,
  // unusual but valid: labeled
  "png-16bit.png": 200,
  "png-palette.png": 200,
  "png-gray-alpha.png": 200,
  "jpeg-cmyk.jpg": 200,
  "jpeg-exif-rotated.jpg": 200,
  "animated.gif": 200,
  "animated.webp": 200,
  "animated.png": 200,
  "tiny-1x1.png": 200,
};

Deno.test("malformed corpus: at least 30 inputs, each answered with a JSON status < 500; the server keeps serving", async () => {
  assert(files.length >= 30, `${files.length} fixtures`);
  const dataRoot = await Deno.makeTempDir();
  const { app, close } = createServerApp({
    dataRoot,
    ocrConcurrency: 1,
    maxBodyBytes: 4 * 1024 * 1024,
  });
  const seen: string[] = [];
  try {
    const check = async (what: string, res: Response, expect?: number) => {
      const text = await res.text();
      let body: { error?: { code: string; message: string } } = {};
      try {
        body = JSON.parse(text);
      } catch {
        throw new Error(`${what}: not JSON: ${text.slice(0, 200)}`);
      }
      assert(res.status < 500, `${what}: ${res.status} ${text.slice(0, 300)}`);
      if (expect !== undefined) assertEquals(res.status, expect, `${what}: ${text.slice(0, 300)}`);
      if (res.status >= 400) {
        assert(body.error && body.error.message.length > 5, `${what}: no error message`);
      }
      const h = await app.request("/healthz");
      assertEquals(h.status, 200, `healthz after ${what}`);
      await h.body?.cancel();
      seen.push(`${what} → ${res.status}${body.error ? ` ${body.error.code}` : ""}`);
    };
    for (const name of files) {
      const bytes = await Deno.readFile(dir + name);
      if (name in IMAGE_EXPECT) {
        const fd = new FormData();
        fd.append("image", new File([bytes], name));
        fd.append("options", JSON.stringify({ source: "ocr" }));
        await check(
          `${name} multipart`,
          await app.request("/v1/label", { method: "POST", body: fd }),
          IMAGE_EXPECT[name],
        );
        const js = {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ image: encodeBase64(bytes), source: "ocr" }),
        };
        await check(`${name} json`, await app.request("/v1/label", js), IMAGE_EXPECT[name]);
      } else if (name.endsWith(".json")) {
        for (const route of ["/v1/label", "/v1/train/jobs", "/v1/eval/jobs"]) {
          const res = await app.request(route, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: bytes,
          });
          await check(`${name} ${route}`, res);
          assert(res.status >= 400, `${name} ${route} was accepted`);
        }
      } else if (name.startsWith("multipart-")) {
        const res = await app.request("/v1/label", {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=XyZ" },
          body: bytes,
        });
        await check(`${name}`, res);
        assert(res.status >= 400, `${name} was accepted`);
      } else {
        throw new Error(`fixture ${name} has no expectation`);
      }
    }
    // path traversal through the artifacts route
    const res = await app.request("/v1/train/jobs/train-abc-0123abcd/artifacts/..%2F..%2Fjobs.kv");
    await check("artifacts traversal", res);
    assertEquals(res.status, 404);
  } finally {
    await close();
    await Deno.remove(dataRoot, { recursive: true });
    console.log(seen.join("\n"));
  }
});
