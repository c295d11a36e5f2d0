import { type ParseArgsConfig, parseArgs } from "node:util";
import { type ApiClient, CliError, ExitCode, usageError } from "./client";
import type { Env } from "./config";
import type { Output } from "./output";

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  /** shown in help as `--name VALUE` */
  value?: string;
  /** may be given more than once (`--host a --host b`); the value is then a string[] */
  multiple?: boolean;
  description: string;
}

export interface Context {
  env: Env;
  out: Output;
  /** the logged-in client; throws exit 3 when there is no login */
  client(): ApiClient;
  /** aborted on Ctrl-C, so long follows stop cleanly */
  signal: AbortSignal;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** as typed: "deploy", "tokens create" */
  name: string;
  summary: string;
  /** the arguments part of the synopsis */
  usage: string;
  options?: Record<string, OptionSpec>;
  /** names of positional arguments, and how many are required; `rest`: any number more (after `--`) */
  positionals?: { names: string[]; required: number; rest?: boolean };
  examples: string[];
  notes?: string[];
  run(ctx: Context, values: Values, positionals: string[]): Promise<number>;
}

const commonOptions: Record<string, OptionSpec> = {
  json: { type: "boolean", description: "print the raw API answer as one JSON document" },
  help: { type: "boolean", short: "h", description: "show this help" },
};

export function parseCommandArgs(cmd: Command, argv: string[]) {
  const specs = { ...cmd.options, ...commonOptions };
  const options: ParseArgsConfig["options"] = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    const message = (err as Error).message.split("\n")[0]!;
    // parseArgs refuses `--limit -5` as "ambiguous": say how to give a value that starts with '-'
    const ambiguous = /^Option '(-[^']*)' argument is ambiguous/.exec(message);
    const said = ambiguous ? `${ambiguous[1]} takes a value; one starting with '-' is written ${ambiguous[1]}=VALUE` : message;
    throw usageError(`${said}\n${hintHelp(cmd)}`);
  }
  if (parsed.values.help) return { ...parsed, help: true as const };
  const max = cmd.positionals?.names.length ?? 0;
  const required = cmd.positionals?.required ?? 0;
  if (parsed.positionals.length > max && !cmd.positionals?.rest) throw usageError(`unexpected argument '${parsed.positionals[max]}'\n${hintHelp(cmd)}`);
  if (parsed.positionals.length < required) {
    throw usageError(`missing ${cmd.positionals!.names[parsed.positionals.length]}\n${hintHelp(cmd)}`);
  }
  return { ...parsed, help: false as const };
}

const hintHelp = (cmd: Command) => `usage: deploybot ${cmd.name} ${cmd.usage}\nsee 'deploybot ${cmd.name} --help'`;

export function commandHelp(cmd: Command): string {
  const specs = { ...cmd.options, ...commonOptions };
  const flag = (name: string, s: OptionSpec) => `${s.short ? `-${s.short}, ` : "    "}--${name}${s.value ? ` ${s.value}` : ""}`;
  const rows = Object.entries(specs).map(([name, s]) => [flag(name, s), s.description] as const);
  const width = Math.max(...rows.map(([f]) => f.length));
  return [
    `${cmd.summary}`,
    "",
    `usage: deploybot ${cmd.name} ${cmd.usage}`.trimEnd(),
    "",
    "options:",
    ...rows.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`),
    ...(cmd.notes ? ["", ...cmd.notes] : []),
    "",
    "examples:",
    ...cmd.examples.map((e) => `  ${e}`),
    "",
  ].join("\n");
}

export function stringOption(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** Every value of an option given with `multiple` (or the one value of a plain string option). */
export function listOption(values: Values, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

export function requiredOption(cmd: Command, values: Values, name: string): string {
  const v = stringOption(values, name);
  if (v === undefined || v === "") throw usageError(`missing --${name}\n${hintHelp(cmd)}`);
  return v;
}

export function intOption(values: Values, name: string, min: number, max: number): number | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw usageError(`--${name} must be a whole number from ${min} to ${max}, got '${v}'`);
  return n;
}

/** Path segments come from the user; never let one change the route. */
export const seg = (value: string) => encodeURIComponent(value);

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(interrupted());
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(interrupted());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export const interrupted = () => new CliError(ExitCode.interrupted, "interrupted");
export { ExitCode };
