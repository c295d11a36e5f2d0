import { loadConfig } from "./config";
import { startController } from "./server";

try {
  // --init: create a new empty database even where the data dir shows an earlier installation
  const controller = await startController(loadConfig(), { init: process.argv.includes("--init") });
  const shutdown = async (signal: string) => {
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
