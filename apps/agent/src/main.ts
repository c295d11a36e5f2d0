import Dockerode from "dockerode";
import pino from "pino";
import { loadAgentConfig } from "./config";
import { AgentDaemon } from "./daemon";

let config: ReturnType<typeof loadAgentConfig>;
try {
  config = loadAgentConfig();
} catch (err) {
  console.error(`deploybot agent: ${(err as Error).message}`);
  process.exit(1);
}
const logger = pino({ level: config.logLevel, base: { service: "agent", hostname: config.hostname } });
// dockerode/docker-modem read DOCKER_HOST themselves; the default is the local socket.
const daemon = new AgentDaemon(config, new Dockerode(), logger);

process.on("SIGTERM", () => void daemon.drain());
process.on("SIGINT", () => void daemon.drain());

daemon.run().then(
  () => process.exit(0),
  (err) => {
    logger.fatal({ err: (err as Error).message }, "agent stopped");
    process.exit(1);
  },
);
