import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError, ExitCode, usageError } from "../client";
import { type Command, requiredOption, stringOption } from "../command";

// From the CLI's own file (bin/ or dist/) to the controller in the same checkout or install tree.
const CHECKOUT_CONTROLLER = fileURLToPath(new URL("../../controller", import.meta.url));

/**
 * The copy itself is the controller's (`apps/controller/src/db/copy.ts`, run as the controller's
 * `db copy` command): it needs the native SQLite driver, the PostgreSQL driver and both sets of
 * migrations, none of which the CLI's single-file bundle carries (it runs on laptops and CI
 * runners without a compiler). So this command checks what it is given, then runs the
 * controller's command in its directory (execFile, no shell) and reports what it printed.
 */
export const dbCopy: Command = {
  name: "db copy",
  summary: "Move an installation from its SQLite file to an empty PostgreSQL database (on the controller's machine).",
  usage: "--from sqlite:PATH --to postgres://USER:PASSWORD@HOST:PORT/DB [--controller-dir DIR]",
  options: {
    from: { type: "string", value: "sqlite:PATH", description: "the controller's SQLite database (DEPLOYBOT_DB)" },
    to: { type: "string", value: "postgres://...", description: "an empty PostgreSQL database (it is migrated first); PGPASSWORD works too" },
    "controller-dir": {
      type: "string",
      value: "DIR",
      description: "the controller's directory with its node_modules (default: DEPLOYBOT_CONTROLLER_DIR, else apps/controller next to this CLI)",
    },
  },
  notes: [
    "Stop the controller first: rows it writes during the copy are not copied.",
    "Every row of every table is copied in one PostgreSQL transaction with its ids (all or nothing);",
    "a target that already holds agents or jobs is refused, so a second run cannot mix two installations.",
    "Keep the controller's secret key (DEPLOYBOT_SECRET_KEY or secret.key in its data dir): the copied",
    "secrets open only with it, so every controller on PostgreSQL needs DEPLOYBOT_SECRET_KEY set to it.",
    "Needs no login: it talks to the two databases, not to a controller.",
  ],
  examples: [
    "deploybot db copy --from sqlite:/var/lib/deploybot/deploybot.db --to postgres://deploybot@db.internal:5432/deploybot",
    "docker run --rm -v deploybot-data:/data deploybot-controller node --import tsx src/main.ts db copy --from sqlite:/data/deploybot.db --to postgres://...",
  ],
  async run(ctx, values) {
    const from = requiredOption(this, values, "from");
    const to = requiredOption(this, values, "to");
    if (!from.startsWith("sqlite:")) throw usageError(`--from must be sqlite:PATH (the controller's SQLite file), got '${from}'`);
    const path = resolve(from.slice("sqlite:".length));
    if (!URL.canParse(to) || !/^postgres(ql)?:$/.test(new URL(to).protocol)) {
      throw usageError("--to must be a postgres://USER:PASSWORD@HOST:PORT/DB URL");
    }
    // The controller would create an empty database at a mistyped path and copy nothing.
    if (!existsSync(path) || !statSync(path).isFile()) throw new CliError(ExitCode.notFound, `no SQLite database at ${path}`);

    const dir = resolve(stringOption(values, "controller-dir") ?? ctx.env.DEPLOYBOT_CONTROLLER_DIR ?? CHECKOUT_CONTROLLER);
    if (!existsSync(join(dir, "src/main.ts")) || !existsSync(join(dir, "node_modules/tsx"))) {
      throw new CliError(
        ExitCode.failed,
        `no installed controller at ${dir} (src/main.ts and node_modules/tsx): give --controller-dir, or run the copy in the controller's image (see --help)`,
      );
    }
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(
        process.execPath,
        ["--import", "tsx", "src/main.ts", "db", "copy", "--from", `sqlite:${path}`, "--to", to],
        { cwd: dir, env: ctx.env as NodeJS.ProcessEnv, signal: ctx.signal, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
      );
    });
    if (ctx.signal.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
    if (out.code !== 0) {
      // the controller's own reason (a non-empty target, a refused login), without its prefix
      const reason = out.stderr.trim().split("\n").at(-1)?.replace(/^deploybot db copy: /, "") || `the copy exited with ${out.code}`;
      throw new CliError(ExitCode.failed, `${reason}\nnothing was copied (the copy is one transaction)`);
    }
    const rows = Object.fromEntries(
      out.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [table, n] = line.split("\t");
          return [table!, Number(n)];
        }),
    );
    if (ctx.out.json) {
      ctx.out.printJson({ from: path, tables: rows });
      return 0;
    }
    ctx.out.table(
      ["TABLE", "ROWS"],
      Object.entries(rows).map(([t, n]) => [t, String(n)]),
    );
    ctx.out.note(`copied from ${path}; start the controllers with DEPLOYBOT_DATABASE_URL and the same DEPLOYBOT_SECRET_KEY`);
    return 0;
  },
};
