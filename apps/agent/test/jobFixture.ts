import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { AgentJobSpec, ClaimedJob } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { JobContext, LogStream } from "../src/executors/types";

export interface TestContext extends JobContext {
  lines: { stream: LogStream; line: string }[];
  text(): string;
  controller: AbortController;
  cleanup(): Promise<void>;
}

/**
 * A JobContext over real temp dirs. `cacheRoot` may be shared between jobs (a redeploy must
 * find the git mirror of the first deploy), so it is a parameter.
 */
export async function makeContext(docker: Dockerode, options: { cacheRoot?: string; registries?: JobContext["registries"] } = {}): Promise<TestContext> {
  const base = await mkdtemp(path.join(os.tmpdir(), "deploybot-agent-"));
  const lines: TestContext["lines"] = [];
  const controller = new AbortController();
  const started = Date.now();
  return {
    docker,
    workRoot: path.join(base, "work"),
    cacheRoot: options.cacheRoot ?? path.join(base, "cache"),
    registries: options.registries,
    signal: controller.signal,
    controller,
    lines,
    log: (stream, line) => {
      lines.push({ stream, line });
      if (process.env.DEPLOYBOT_TEST_VERBOSE) console.log(`+${Date.now() - started}ms [${stream}] ${line}`);
    },
    text: () => lines.map((l) => l.line).join("\n"),
    cleanup: () => rm(base, { recursive: true, force: true }),
  };
}

export function makeJob(spec: Omit<AgentJobSpec, "kind"> & { kind: ClaimedJob["kind"] }, overrides: Partial<ClaimedJob> = {}): ClaimedJob {
  return {
    id: `job-${randomUUID().slice(0, 8)}`,
    kind: spec.kind,
    app: spec.app,
    leaseId: randomUUID(),
    spec,
    timeoutSeconds: 600,
    attempt: 1,
    logOffset: 0,
    ...overrides,
  };
}
