import { loadConfig } from "./config";
import { copySqliteToPostgres } from "./db/copy";
import { startController } from "./server";

const args = process.argv.slice(2);
if (args[0] === "db" && args[1] === "copy") {
  // db copy --from sqlite:PATH --to postgres://...: move an installation to PostgreSQL
  const flag = (name: string) => args[args.indexOf(name) + 1];
  const from = args.includes("--from") ? flag("--from") : undefined;
  const to = args.includes("--to") ? flag("--to") : undefined;
  if (!from?.startsWith("sqlite:") || !to || !/^postgres(ql)?:\/\//.test(to)) {
    console.error("usage: db copy --from sqlite:PATH --to postgres://user:password@host:port/db");
    process.exit(2);
  }
  try {
    const counts = await copySqliteToPostgres(from.slice("sqlite:".length), to);
    for (const [table, n] of Object.entries(counts)) console.log(`${table}\t${n}`);
    process.exit(0);
  } catch (err) {
    console.error(`deploybot db copy: ${(err as Error).message}`);
    process.exit(1);
  }
}

try {
  // --init: create a new empty database even where the data dir shows an earlier installation
  const controller = await startController(loadConfig(), { init: process.argv.includes("--init") });
  let stopping = false;
  const shutdown = async (signal: string) => {
    // once: a signal sent to a process group and passed on by its leader arrives twice
    if (stopping) return;
    stopping = true;
    controller.logger.info({ signal }, "shutting down");
    await controller.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
} catch (err) {
  // A bad apps.yaml or environment stops start-up with the file, the path and the reason.
  console.error(`deploybot controller: ${(err as Error).message}`);
  process.exit(1);
}
