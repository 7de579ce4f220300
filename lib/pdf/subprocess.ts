/**
 * Run a command with its output streamed and capped: stdout up to a byte limit (the child is
 * killed past it), stderr counted but only its first bytes kept. A tool that prints a million
 * warning lines costs a few kilobytes, not a gigabyte.
 */

export interface CappedOutput {
  code: number;
  success: boolean;
  stdout: Uint8Array;
  /** The first `maxStderr` bytes of stderr, decoded. */
  stderr: string;
  stderrBytes: number;
  stderrLines: number;
  /** True when stdout passed `maxStdout` and the child was killed. */
  stdoutOverflow: boolean;
}

export interface RunCappedOptions {
  /** @default 256 MiB */
  maxStdout?: number;
  /** @default 8 KiB */
  maxStderr?: number;
  /** Discard stdout instead of collecting it. */
  ignoreStdout?: boolean;
  env?: Record<string, string>;
}

/** Spawn `cmd args` and collect its output within the caps. Throws NotFound if `cmd` is missing. */
export async function runCapped(
  cmd: string,
  args: string[],
  options: RunCappedOptions = {},
): Promise<CappedOutput> {
  const { maxStdout = 256 << 20, maxStderr = 8 << 10, ignoreStdout = false, env } = options;
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: ignoreStdout ? "null" : "piped",
    stderr: "piped",
    env,
  }).spawn();
  let stdoutOverflow = false;
  const chunks: Uint8Array[] = [];
  let stdoutBytes = 0;
  const readStdout = async () => {
    if (ignoreStdout) return;
    for await (const chunk of child.stdout) {
      if (stdoutOverflow) continue; // drain so the child is not blocked on a full pipe
      stdoutBytes += chunk.byteLength;
      if (stdoutBytes > maxStdout) {
        stdoutOverflow = true;
        chunks.length = 0;
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        continue;
      }
      chunks.push(chunk);
    }
  };
  const head = new Uint8Array(maxStderr);
  let kept = 0;
  let stderrBytes = 0;
  let stderrLines = 0;
  const readStderr = async () => {
    for await (const chunk of child.stderr) {
      stderrBytes += chunk.byteLength;
      for (const b of chunk) if (b === 10) stderrLines++;
      if (kept < maxStderr) {
        const n = Math.min(maxStderr - kept, chunk.byteLength);
        head.set(chunk.subarray(0, n), kept);
        kept += n;
      }
    }
  };
  const [status] = await Promise.all([child.status, readStdout(), readStderr()]);
  const stdout = new Uint8Array(stdoutOverflow ? 0 : stdoutBytes);
  let at = 0;
  for (const c of chunks) {
    stdout.set(c, at);
    at += c.byteLength;
  }
  return {
    code: status.code,
    success: status.success && !stdoutOverflow,
    stdout,
    stderr: new TextDecoder().decode(head.subarray(0, kept)),
    stderrBytes,
    stderrLines,
    stdoutOverflow,
  };
}
