/**
 * A header read timeout in front of `Deno.serve`, which has none (a client that sends its
 * request headers a byte at a time, or nothing at all, would hold its connection forever).
 * The public port is a plain TCP listener; each connection is piped to the HTTP server on a
 * Unix socket, and closed with a 408 when the headers of a request (from the connection's
 * start, or from the first byte after a response) do not end within `headerTimeoutMs`.
 * Body read timeouts are a middleware (functions/shared/http.ts), where requests are known.
 */
import { join } from "node:path";

export interface FrontOptions {
  port: number;
  hostname: string;
  /** Longest a request's headers may take to arrive, ms. */
  headerTimeoutMs: number;
  signal?: AbortSignal;
  onListen?: (addr: { hostname: string; port: number }) => void;
}

const TIMEOUT_RESPONSE = new TextEncoder().encode(
  "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: application/json\r\n" +
    'content-length: 86\r\n\r\n{"error":{"code":"header_timeout","message":"Request headers took too long to arrive"}}',
);

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await c.write(b.subarray(off));
}

/** Where "\r\n\r\n" ends in `tail + chunk` (tail: the last 3 bytes seen), or -1. */
function headerEnd(tail: number[], chunk: Uint8Array): number {
  for (let i = 0; i < chunk.length; i++) {
    tail.push(chunk[i]!);
    if (tail.length > 4) tail.shift();
    if (tail.length === 4 && tail[0] === 13 && tail[1] === 10 && tail[2] === 13 && tail[3] === 10) {
      return i;
    }
  }
  return -1;
}

/** One client connection piped to the inner server, with the header deadline. */
async function pipeConnection(client: Deno.Conn, socket: string, timeoutMs: number) {
  let inner: Deno.UnixConn;
  try {
    inner = await Deno.connect({ transport: "unix", path: socket });
  } catch {
    client.close();
    return;
  }
  let closed = false;
  const closeBoth = () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    for (const c of [client, inner]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let awaiting = true; // headers of a request not complete yet
  let responded = false; // the server has written since the last request's headers
  const tail: number[] = [];
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await writeAll(client, TIMEOUT_RESPONSE).catch(() => {});
      closeBoth();
    }, timeoutMs);
  };
  arm();
  const up = (async () => {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await client.read(buf);
      if (n === null) break;
      const chunk = buf.subarray(0, n);
      if (responded) {
        // a new request on a kept-alive connection: its headers get their own deadline
        responded = false;
        awaiting = true;
        tail.length = 0;
        arm();
      }
      if (awaiting && headerEnd(tail, chunk) >= 0) {
        awaiting = false;
        clearTimeout(timer);
      }
      await writeAll(inner, chunk);
    }
    await inner.closeWrite();
  })();
  const down = (async () => {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await inner.read(buf);
      if (n === null) break;
      if (!awaiting) responded = true;
      await writeAll(client, buf.subarray(0, n));
    }
  })();
  // the server's side ends the connection (a client that half-closes still gets its answer)
  await down.catch(() => {});
  closeBoth();
  await up.catch(() => {});
}

/** `Deno.serve(handler)` behind the header timeout; resolves `finished` when `signal` aborts. */
export async function serveWithHeaderTimeout(
  options: FrontOptions,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<{ finished: Promise<void>; addr: Deno.NetAddr }> {
  const dir = await Deno.makeTempDir({ prefix: "dvsft-http-" });
  const socket = join(dir, "http.sock");
  const inner = Deno.serve({ path: socket, onListen: () => {} }, handler);
  const listener = Deno.listen({ port: options.port, hostname: options.hostname });
  const addr = listener.addr as Deno.NetAddr;
  options.onListen?.({ hostname: addr.hostname, port: addr.port });
  const conns = new Set<Promise<void>>();
  const accepting = (async () => {
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await listener.accept();
      } catch {
        return; // closed
      }
      const p = pipeConnection(c, socket, options.headerTimeoutMs).catch(() => {});
      conns.add(p);
      p.finally(() => conns.delete(p));
    }
  })();
  const finished = (async () => {
    await new Promise<void>((resolve) => {
      if (options.signal?.aborted) return resolve();
      options.signal?.addEventListener("abort", () => resolve(), { once: true });
    });
    listener.close();
    await accepting;
    // in-flight requests finish; kept-alive idle connections are closed by the inner server
    await inner.shutdown();
    await Promise.race([
      Promise.allSettled([...conns]),
      new Promise((r) => setTimeout(r, 1000)),
    ]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  })();
  return { finished, addr };
}
