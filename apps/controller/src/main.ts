import { loadConfig } from "./config";
import { startController } from "./server";

try {
  const controller = await startController(loadConfig());
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
