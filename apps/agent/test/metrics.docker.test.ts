import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Dockerode from "dockerode";
import { expect, it } from "vitest";
import { describeDocker, freePort, uniqueName } from "../../../test/support/docker";
import { scopeToHost } from "../src/docker/managedContainers";
import { instrumentDocker, jobsRun, reconcileActions, serveAgentMetrics } from "../src/metrics";
import { promtoolCheck } from "../../../test/support/promtool";

describeDocker("agent metrics (DEPLOYBOT_AGENT_METRICS_PORT)", () => {
  it("serves promtool-clean metrics on loopback: Docker call latency, spool bytes, containers by state, jobs and reconcile actions", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "deploybot-agent-metrics-"));
    const spool = path.join(dir, "spool");
    mkdirSync(spool);
    writeFileSync(path.join(spool, "job_x.ndjson"), "x".repeat(1234));
    const docker = instrumentDocker(new Dockerode());
    const port = await freePort();
    const server = await serveAgentMetrics(port, docker, spool);
    try {
      await docker.listContainers({ limit: 1 });
      jobsRun.inc({ kind: "deploy" });
      reconcileActions.inc({ action: "restarted" });
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      const check = await promtoolCheck(text);
      expect(check.output).toBe("");
      expect(check.ok).toBe(true);
      expect(text).toMatch(/^deploybot_agent_docker_call_duration_seconds_count\{method="GET",resource="containers"\} [1-9]/m);
      expect(text).toMatch(/^deploybot_agent_spool_bytes 1234$/m);
      expect(text).toMatch(/^deploybot_agent_jobs_total\{kind="deploy"\} 1$/m);
      expect(text).toMatch(/^deploybot_agent_reconcile_actions_total\{action="restarted"\} 1$/m);
      expect(text).toContain("# TYPE deploybot_agent_containers gauge");
      // a host with no managed container: every state is there, at 0
      scopeToHost(uniqueName("nothing-here"));
      const empty = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(empty).toMatch(/^deploybot_agent_containers\{state="running"\} 0$/m);
      expect(empty).toMatch(/^deploybot_agent_containers\{state="exited"\} 0$/m);
      expect((server.address() as { address: string }).address).toBe("127.0.0.1");
    } finally {
      scopeToHost(null);
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
