/**
 * The controller under load, in its own process so the load generator never shares its event
 * loop. Configured only through DEPLOYBOT_* env like the real `main.ts`; it listens on
 * DEPLOYBOT_PORT=0 and tells the parent the port it got over IPC (no free-port race).
 */
import { join } from "node:path";
import type { loadConfig as LoadConfig } from "../apps/controller/src/config";
import type { startController as StartController } from "../apps/controller/src/server";

async function start(): Promise<{ port: number; stop(): Promise<void> }> {
  // the stack alone, serving the same protocol (floorServer.ts; controller.bench.ts BENCH_FLOOR=1)
  if (process.env.BENCH_SERVE_FLOOR === "1") return (await import("./floorServer")).startFloor(process.env);
  // BENCH_CONTROLLER_SRC: another version's sources (a baseline measured in the same run)
  const src = process.env.BENCH_CONTROLLER_SRC ?? join(import.meta.dirname, "../apps/controller/src");
  const { loadConfig } = (await import(join(src, "config.ts"))) as { loadConfig: typeof LoadConfig };
  const { startController } = (await import(join(src, "server.ts"))) as { startController: typeof StartController };
  return startController(loadConfig(process.env));
}

const controller = await start();
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
