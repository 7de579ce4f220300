/** A progress bar on stderr (cli-progress); plain periodic lines when stderr is not a terminal. */
// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import process from "node:process";

export interface Progress {
  tick(fields?: Record<string, string | number>): void;
  /** A line printed above the bar (the bar redraws under it). */
  log(line: string): void;
  stop(): void;
}

/** Start a bar of `total` steps named `label`; extra fields show after the counts. */
export function startProgress(label: string, total: number, fieldNames: string[] = []): Progress {
  const extra = fieldNames.map((f) => `${f} {${f}}`).join(" | ");
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} {percentage}% | ETA {eta_formatted}${
      extra ? " | " + extra : ""
    }`,
    stream: process.stderr,
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000,
    hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, Object.fromEntries(fieldNames.map((f) => [f, "-"])));
  return {
    tick: (fields) => bar.increment(1, fields),
    log: (line) => {
      if (process.stderr.isTTY) process.stderr.write("\r\x1b[2K");
      console.log(line);
      if (process.stderr.isTTY) bar.render();
    },
    stop: () => bar.stop(),
  };
}
