import { renderPage } from "./lib/render/mod.ts";
import { createOcrEngine } from "./lib/ocr/mod.ts";
const page = renderPage({ seed: 1, fontSize: 24 });
for (const n of ["native", "tesseract.js"] as const) {
  const e = await createOcrEngine(n, { concurrency: 2 });
  const t0 = performance.now();
  const w = await e.recognize(page.png);
  console.log(e.name, performance.now() - t0, w.length, page.words.length, w.slice(0, 3), page.words.slice(0,3));
  await e.close();
}
