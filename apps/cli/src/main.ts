import { readFileSync } from "node:fs";
import { ApiClient, CliError, ExitCode } from "./client";
import { type Command, type Context, commandHelp, parseCommandArgs } from "./command";
import { type Env, resolveCredentials } from "./config";
import { Output } from "./output";
import { agentsInstallCommand, agentsJoinToken, agentsRemove, agentsRevoke } from "./commands/agents";
import { agentsCloudInit, hostsCreate, hostsDestroy } from "./commands/cloudHosts";
import { ps, remove, restart, scale, start, stop } from "./commands/appOps";
import { apps, releases } from "./commands/apps";
import { dbBackup } from "./commands/db";
import { dbCopy } from "./commands/dbCopy";
import { deploy } from "./commands/deploy";
import { deployments, rollback } from "./commands/deployments";
import { hosts } from "./commands/hosts";
import { build, images } from "./commands/images";
import { cancel, jobs, status } from "./commands/jobs";
import { login } from "./commands/login";
import { logs } from "./commands/logs";
import { notifications } from "./commands/notifications";
import { routes } from "./commands/routes";
import { result, run, runs, scheduleResume, schedulePause, scheduleTrigger, schedules } from "./commands/runs";
import { secretsList, secretsRemove, secretsSet } from "./commands/secrets";
import { tokensCreate, tokensList, tokensRevoke } from "./commands/tokens";
import { volumes } from "./commands/volumes";

const commands: Command[] = [
  login,
  deploy,
  deployments,
  rollback,
  apps,
  ps,
  stop,
  start,
  restart,
  scale,
  remove,
  releases,
  routes,
  volumes,
  images,
  build,
  status,
  logs,
  jobs,
  cancel,
  hosts,
  notifications,
  run,
  runs,
  result,
  schedules,
  scheduleTrigger,
  schedulePause,
  scheduleResume,
  secretsSet,
  secretsList,
  secretsRemove,
  tokensCreate,
  tokensList,
  tokensRevoke,
  agentsInstallCommand,
  agentsCloudInit,
  hostsCreate,
  hostsDestroy,
  agentsJoinToken,
  agentsRevoke,
  agentsRemove,
  dbBackup,
  dbCopy,
];
const groups = new Set(commands.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]!));

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "deploybot — deploy apps to your Docker hosts through a deploybot controller.",
    "",
    "usage: deploybot COMMAND [options]      deploybot COMMAND --help",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Every command takes --json (the raw API answer, one JSON document) and --help.",
    "Login: deploybot login, or DEPLOYBOT_URL and DEPLOYBOT_TOKEN (these win over the saved login).",
    "Several controllers: a comma-separated URL list; a call moves to the next one when a controller is down.",
    "Exit codes: 0 ok, 1 job/operation failed, 2 usage, 3 not logged in or token refused,",
    "            4 not found, 5 controller unreachable, 6 other API error, 130 interrupted.",
    "",
    "examples:",
    "  deploybot login --url http://127.0.0.1:8080 --token \"$DEPLOYBOT_ADMIN_TOKEN\"",
    "  deploybot deploy web --ref main",
    "  deploybot logs --host web-1 --app web -f",
    "  deploybot jobs --status failed --limit 10",
    "",
  ].join("\n");
}

function groupHelp(group: string): string {
  const members = commands.filter((c) => c.name.startsWith(`${group} `));
  const width = Math.max(...members.map((c) => c.name.length));
  return [
    `usage: deploybot ${group} SUBCOMMAND [options]`,
    "",
    "subcommands:",
    ...members.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "examples:",
    ...members.map((c) => `  ${c.examples[0]}`),
    "",
  ].join("\n");
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Picks the command (one or two words), parses its flags, runs it; returns the exit code. */
export async function main(argv: string[], env: Env, streams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [first, second] = argv;
  if (first === undefined) {
    streams.stderr.write(topHelp());
    return ExitCode.usage;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    streams.stdout.write(topHelp());
    return ExitCode.ok;
  }
  if (first === "--version" || first === "-V") {
    streams.stdout.write(`${version()}\n`);
    return ExitCode.ok;
  }

  let cmd: Command | undefined;
  let rest: string[];
  // `hosts` is a command and a group (`hosts create`): the group only when a subcommand is named.
  const alsoCommand = commands.some((c) => c.name === first);
  if (groups.has(first) && (!alsoCommand || commands.some((c) => c.name === `${first} ${second}`))) {
    if (second === undefined || second === "--help" || second === "-h") {
      (second === undefined ? streams.stderr : streams.stdout).write(groupHelp(first));
      return second === undefined ? ExitCode.usage : ExitCode.ok;
    }
    cmd = commands.find((c) => c.name === `${first} ${second}`);
    rest = argv.slice(2);
    if (!cmd) {
      streams.stderr.write(`deploybot: unknown command '${first} ${second}'\n\n${groupHelp(first)}`);
      return ExitCode.usage;
    }
  } else {
    cmd = commands.find((c) => c.name === first);
    rest = argv.slice(1);
    if (!cmd) {
      streams.stderr.write(`deploybot: unknown command '${first}' (see deploybot --help)\n`);
      return ExitCode.usage;
    }
  }

  const interrupt = new AbortController();
  const onSigint = () => {
    if (interrupt.signal.aborted) process.exit(ExitCode.interrupted);
    interrupt.abort();
  };
  process.on("SIGINT", onSigint);
  let out = new Output(streams, env, { json: rest.includes("--json") });
  try {
    const parsed = parseCommandArgs(cmd, rest);
    if (parsed.help) {
      streams.stdout.write(commandHelp(cmd));
      return ExitCode.ok;
    }
    out = new Output(streams, env, { json: parsed.values.json === true });
    let client: ApiClient | undefined;
    const ctx: Context = {
      env,
      out,
      signal: interrupt.signal,
      client: () => {
        if (!client) {
          const { url, token } = resolveCredentials(env);
          // once per switch, on stderr (stdout stays the command's answer, --json included)
          client = new ApiClient(url, token, interrupt.signal, ({ from, to, reason }) =>
            streams.stderr.write(`deploybot: controller ${from} failed (${reason}); using ${to}\n`),
          );
        }
        return client;
      },
    };
    return await cmd.run(ctx, parsed.values, parsed.positionals);
  } catch (err) {
    out.clearProgress();
    if (err instanceof CliError) {
      if (err.exitCode === ExitCode.interrupted) {
        streams.stderr.write("deploybot: stopped following; the job or deployment goes on (deploybot cancel JOB stops a job)\n");
      } else {
        streams.stderr.write(`deploybot ${cmd.name}: ${err.message}\n`);
      }
      return err.exitCode;
    }
    streams.stderr.write(`deploybot ${cmd.name}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return ExitCode.api;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

// `deploybot jobs | head`: once the reader is gone, stop quietly, as cat and git do, instead of
// crashing on the next write with an unhandled EPIPE and a stack trace
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(ExitCode.ok);
  throw err;
});
process.exitCode = await main(process.argv.slice(2), process.env);
