import type { JobStatus } from "@deploybot/protocol";
import type { Env } from "./config";

export interface Streams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

type Paint = (text: string) => string;
const sgr =
  (open: number, close: number): Paint =>
  (text) =>
    `\x1b[${open}m${text}\x1b[${close}m`;
const plain: Paint = (text) => text;

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/**
 * Everything the CLI prints goes through here: tables and colour for people, one JSON document
 * for scripts. Colour and the progress line only when stdout is a terminal and NO_COLOR is unset,
 * so a pipe or a CI log gets plain, stable text.
 */
export class Output {
  readonly json: boolean;
  readonly interactive: boolean;
  readonly paint: { bold: Paint; dim: Paint; red: Paint; green: Paint; yellow: Paint; cyan: Paint };
  private progressShown = false;
  private frame = 0;

  constructor(
    private readonly streams: Streams,
    env: Env,
    opts: { json: boolean },
  ) {
    this.json = opts.json;
    this.interactive = Boolean(streams.stdout.isTTY) && env.NO_COLOR === undefined && !opts.json;
    const on = this.interactive;
    this.paint = {
      bold: on ? sgr(1, 22) : plain,
      dim: on ? sgr(2, 22) : plain,
      red: on ? sgr(31, 39) : plain,
      green: on ? sgr(32, 39) : plain,
      yellow: on ? sgr(33, 39) : plain,
      cyan: on ? sgr(36, 39) : plain,
    };
  }

  /** A line for people on stdout; in --json mode stdout belongs to the document, so stderr. */
  line(text = ""): void {
    this.clearProgress();
    (this.json ? this.streams.stderr : this.streams.stdout).write(`${text}\n`);
  }

  /** Notes and hints that are never part of the answer. */
  note(text: string): void {
    this.clearProgress();
    this.streams.stderr.write(`${text}\n`);
  }

  printJson(value: unknown): void {
    this.clearProgress();
    this.streams.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One compact JSON object on its own line (a never-ending --json follow prints these). */
  jsonLine(value: unknown): void {
    this.clearProgress();
    this.streams.stdout.write(`${JSON.stringify(value)}\n`);
  }

  table(headers: string[], rows: string[][]): void {
    if (rows.length === 0) return;
    const widths = headers.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ""))));
    const render = (cells: string[]) =>
      cells
        .map((cell, i) => (i === cells.length - 1 ? cell : cell + " ".repeat(widths[i]! - visibleLength(cell))))
        .join("  ")
        .trimEnd();
    this.line(this.paint.bold(render(headers)));
    for (const row of rows) this.line(render(row));
  }

  /** Key/value block for one object (status, a created token). */
  fields(pairs: [string, string][]): void {
    const width = Math.max(...pairs.map(([k]) => k.length));
    for (const [key, value] of pairs) this.line(`${this.paint.dim(`${key}:`.padEnd(width + 1))} ${value}`);
  }

  status(status: JobStatus | string): string {
    switch (status) {
      case "succeeded":
        return this.paint.green(status);
      case "failed":
      case "lost":
      case "timed_out":
        return this.paint.red(status);
      case "cancelled":
        return this.paint.yellow(status);
      case "running":
      case "assigned":
        return this.paint.cyan(status);
      default:
        return status;
    }
  }

  /** One self-overwriting line on a terminal; nothing at all otherwise. */
  progress(text: string): void {
    if (!this.interactive) return;
    const frame = FRAMES[this.frame++ % FRAMES.length];
    this.streams.stdout.write(`\r\x1b[2K${this.paint.cyan(frame!)} ${text}`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (!this.progressShown) return;
    this.streams.stdout.write("\r\x1b[2K");
    this.progressShown = false;
  }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping our own SGR sequences
const ANSI = /\x1b\[[0-9;]*m/g;
const visibleLength = (text: string) => text.replace(ANSI, "").length;

/** "3s", "4m", "2h", "5d": how long ago, for tables. */
export function age(iso: string | null, now = Date.now()): string {
  if (!iso) return "-";
  return `${span(now - Date.parse(iso))} ago`;
}

export function duration(fromIso: string | null, toIso: string | null, now = Date.now()): string {
  if (!fromIso) return "-";
  return span((toIso ? Date.parse(toIso) : now) - Date.parse(fromIso));
}

function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86_400)}d`;
}
