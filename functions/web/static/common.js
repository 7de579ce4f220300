// Shared by every page: the navigation bar, API calls (with the optional API key), SSE over fetch.

const PAGES = [["/", "Home"], ["/label", "Label viewer"], ["/runs", "Runs"], [
  "/compare",
  "Compare",
], ["/docs", "API docs"]];

/** Put the navigation bar at the top of the page. */
export function nav() {
  const h = document.createElement("header");
  h.className = "top";
  h.innerHTML = `<span class="brand">dvsft</span>`;
  for (const [href, name] of PAGES) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = name;
    if (location.pathname === href) a.className = "here";
    h.append(a);
  }
  document.body.prepend(h);
}

/** Headers for /v1 calls: a bearer key when one is saved (servers started with DVSFT_API_KEYS). */
export function authHeaders() {
  const key = localStorage.getItem("dvsft.apiKey");
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** Call the API; throws an Error carrying the server's message on a non-2xx answer. */
export async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { ...authHeaders(), ...(init.headers ?? {}) },
  });
  const type = res.headers.get("content-type") ?? "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const e = body?.error;
    const details = e?.details ? "\n" + JSON.stringify(e.details, null, 1) : "";
    throw new Error(
      e ? `${res.status} ${e.code}: ${e.message}${details}` : `${res.status}: ${body}`,
    );
  }
  return body;
}

/** POST JSON. */
export const postJson = (path, body) =>
  api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

/**
 * Server-sent events read with fetch (EventSource cannot send the API key): calls onEvent(name,
 * data) per event until the stream ends or the returned stop() is called.
 */
export function subscribe(path, onEvent, onEnd = () => {}) {
  const ac = new AbortController();
  (async () => {
    const res = await fetch(path, { headers: authHeaders(), signal: ac.signal });
    if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(event, JSON.parse(data.join("\n")));
      }
    }
  })().catch((e) => {
    if (e.name !== "AbortError") console.warn(e);
  }).finally(onEnd);
  return () => ac.abort();
}

/** An element from a tag, attributes and children (strings become text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

/** Format a number for a table cell. */
export const fmt = (x, d = 3) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "—");
