/**
 * The controller under load, in its own process so the load generator never shares its event
 * loop. Configured only through DEPLOYBOT_* env like the real `main.ts`; it listens on
 * DEPLOYBOT_PORT=0 and tells the parent the port it got over IPC (no free-port race).
 */
import { loadConfig } from "../apps/controller/src/config";
import { startController } from "../apps/controller/src/server";

const controller = await startController(loadConfig(process.env));
process.send?.({ port: controller.port });

let stopping = false;
// A clean exit (not a kill) so `--cpu-prof` gets to write its profile.
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await controller.stop();
  process.exit(0);
};
process.on("message", (m) => {
  if (m === "stop") void stop();
});
// The parent died without saying so: never linger as an orphan holding a port.
process.on("disconnect", () => void stop());
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
