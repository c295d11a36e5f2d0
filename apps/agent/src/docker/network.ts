import type Dockerode from "dockerode";
import { LABELS } from "./managedContainers";

/**
 * The user-defined bridge network routed apps sit on. The host proxy runs on the host and
 * reaches containers by their IP on it (Linux routes the host to bridge networks), so routed
 * apps publish no host port. Created once, never removed by the agent.
 */
export async function ensureNetwork(docker: Dockerode, name: string): Promise<void> {
  const existing = await docker
    .getNetwork(name)
    .inspect()
    .catch((err: { statusCode?: number }) => {
      if (err.statusCode === 404) return null;
      throw err;
    });
  if (existing) return;
  await docker
    .createNetwork({ Name: name, Driver: "bridge", CheckDuplicate: true, Labels: { [LABELS.managed]: "true" } })
    .catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 409) throw err; // created meanwhile by another agent on this engine
    });
}
