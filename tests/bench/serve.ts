/**
 * `deno task bench:serve`: load on the real server over loopback (autocannon).
 * Phase 1: 50 clients for 60 s POSTing /v1/label with a mix of image sizes (source "boxes":
 * the labeling path without OCR). Phase 2: 4 clients for 20 s with OCR. Reports requests/s,
 * p50/p99 latency, errors and non-2xx, and the server's memory (RSS) over time.
 *
 *   --clients 50 --seconds 60 --ocr-clients 4 --ocr-seconds 20
 */
import autocannon from "autocannon";
import { parseArgs } from "node:util";
import { renderPage } from "../../lib/render/mod.ts";
import { encodeBase64 } from "../../lib/util/base64.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string" },
    seconds: { type: "string" },
    "ocr-clients": { type: "string" },
    "ocr-seconds": { type: "string" },
  },
});
const clients = Number(values.clients ?? 50), seconds = Number(values.seconds ?? 60);
const ocrClients = Number(values["ocr-clients"] ?? 4),
  ocrSeconds = Number(values["ocr-seconds"] ?? 20);

const root = new URL("../..", import.meta.url).pathname;
const dataDir = await Deno.makeTempDir();
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", "main.ts", "serve"],
  cwd: root,
  env: { PORT: "0", DVSFT_DATA_DIR: dataDir },
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
let log = "";
let base = "";
while (!base) {
  const { value, done } = await reader.read();
  if (done) throw new Error(`server did not start: ${log}`);
  log += value;
  base = log.match(/listening on (http:\/\/[\d.]+:\d+)/)?.[1] ?? "";
}
const rss = () => {
  const m = Deno.readTextFileSync(`/proc/${child.pid}/status`).match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
};
const samples: Array<{ t: number; mb: number }> = [];
const t0 = performance.now();
const sampler = setInterval(
  () => samples.push({ t: (performance.now() - t0) / 1000, mb: rss() }),
  1000,
);

const sizes = [[320, 120, 18], [800, 600, 22], [1600, 1200, 28]] as const;
const bodies = sizes.map(([w, h, fontSize], k) => {
  const p = renderPage({ width: w, height: h, fontSize, seed: k });
  return {
    boxes: JSON.stringify({ image: encodeBase64(p.png), source: "boxes", words: p.words }),
    ocr: JSON.stringify({ image: encodeBase64(p.png), source: "ocr" }),
  };
});
const run = (kind: "boxes" | "ocr", connections: number, duration: number) =>
  autocannon({
    url: `${base}/v1/label`,
    connections,
    duration,
    timeout: 60,
    requests: bodies.map((b) => ({
      method: "POST",
      headers: { "content-type": "application/json" },
      body: b[kind],
    })),
  });
const report = (name: string, r: Awaited<ReturnType<typeof autocannon>>) =>
  console.log(
    `${name}: ${r.requests.total} requests, ${
      r.requests.average.toFixed(1)
    } req/s, latency p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, ` +
      `errors ${r.errors}, timeouts ${r.timeouts}, non-2xx ${r.non2xx} (2xx ${r["2xx"]})`,
  );
try {
  console.log(
    `server ${base}, RSS at start ${rss().toFixed(0)} MB; image mix ${
      sizes.map(([w, h]) => `${w}x${h}`).join(", ")
    }`,
  );
  report(
    `labels from boxes, ${clients} clients × ${seconds} s`,
    await run("boxes", clients, seconds),
  );
  report(
    `labels from OCR, ${ocrClients} clients × ${ocrSeconds} s`,
    await run("ocr", ocrClients, ocrSeconds),
  );
} finally {
  clearInterval(sampler);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  child.kill("SIGTERM");
  await child.status;
  await Deno.remove(dataDir, { recursive: true });
  const warm = samples.filter((s) => s.t >= 10 && s.t <= seconds);
  const peak = Math.max(...samples.map((s) => s.mb));
  console.log(
    `server RSS: peak ${peak.toFixed(0)} MB; after warm-up (10 s) ${
      warm[0]?.mb.toFixed(0)
    } MB → end of phase 1 ${warm.at(-1)?.mb.toFixed(0)} MB`,
  );
  // a soak (`--seconds 300`) shows a leak as steady growth after the warm-up
  const first = warm[0], last = warm.at(-1);
  if (first && last && last.t > first.t) {
    const growth = last.mb - first.mb;
    console.log(
      `server RSS growth over the soak: ${growth >= 0 ? "+" : ""}${growth.toFixed(0)} MB in ${
        (last.t - first.t).toFixed(0)
      } s (${(growth / ((last.t - first.t) / 60)).toFixed(1)} MB/min)`,
    );
  }
  console.log(
    metrics.split("\n").filter((l) => /^dvsft_http_requests_total\{method="POST"/.test(l)).join(
      "\n",
    ),
  );
}
