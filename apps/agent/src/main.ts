import { join } from "node:path";
import Dockerode from "dockerode";
import pino from "pino";
import { loadAgentConfig } from "./config";
import { AgentDaemon } from "./daemon";
import { instrumentDocker, serveAgentMetrics } from "./metrics";
import { Redactor } from "./redact";
import { lockStateDir } from "./stateLock";
import { RUNS_FROM_BUNDLE } from "./version";

let config: ReturnType<typeof loadAgentConfig>;
try {
  config = loadAgentConfig();
} catch (err) {
  console.error(`deploybot agent: ${(err as Error).message}`);
  process.exit(1);
}
// A self-update's trial run shares the running agent's state dir on purpose (it only registers).
if (!config.updateTrial) {
  try {
    lockStateDir(config.stateDir);
  } catch (err) {
    console.error(`deploybot agent: ${(err as Error).message}`);
    process.exit(1);
  }
}
// The agent's own log is one more way out: every line passes the redactor that masks the job
// secrets, the registry password and the join token, as the uploaded job logs do.
const redactor = new Redactor(config.joinToken, ...config.registries.map((r) => r.password));
const logger = pino(
  { level: config.logLevel, base: { service: "agent", hostname: config.hostname } },
  { write: (line: string) => process.stdout.write(redactor.redact(line)) },
);
for (const name of config.unknownSettings) logger.warn({ name }, "unknown DEPLOYBOT_* setting ignored (misspelt?)");
if (!RUNS_FROM_BUNDLE) logger.info("running from a checkout, not the installed bundle: self-update is off (update the checkout to move this agent)");
// dockerode/docker-modem read DOCKER_HOST themselves; the default is the local socket.
const docker = instrumentDocker(new Dockerode());
const daemon = new AgentDaemon(config, docker, logger, redactor);
if (config.metricsPort !== undefined) {
  await serveAgentMetrics(config.metricsPort, docker, join(config.stateDir, "spool"));
  logger.info({ port: config.metricsPort }, "metrics on 127.0.0.1");
}

process.on("SIGTERM", () => void daemon.drain());
process.on("SIGINT", () => void daemon.drain());

if (config.updateTrial) {
  // A self-update's trial run of this version: it must reach the controller and register (with
  // the host's identity), then it exits 0 and the running agent switches to it.
  await daemon.register();
  logger.info("update trial: registered");
  process.exit(0);
}

daemon.run().then(
  () => process.exit(daemon.exitCode),
  (err) => {
    logger.fatal({ err: (err as Error).message }, "agent stopped");
    process.exit(1);
  },
);
