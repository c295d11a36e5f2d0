/**
 * The controller process on PostgreSQL (DEPLOYBOT_DATABASE_URL), end to end over HTTP: it migrates
 * a fresh database, answers /readyz, and an agent (protocol level, test/support/protocolAgent.ts)
 * registers, long-polls heartbeats, is handed the queued jobs, reports them running, uploads their
 * log lines and reports them succeeded. A push webhook creates a deployment whose job is queued
 * in the deployment's own transaction (the job's foreign key needs that row) and runs to its end
 * the same way. SIGTERM stops the process cleanly (pool, LISTEN and lock connections closed).
 */
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type ControllerProcess, controllerProcess, JOIN, waitFor } from "../../../../test/harness/processes";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { type Handed, ProtocolAgent } from "../../../../test/support/protocolAgent";

const LINES = 6;
const WEBHOOK_SECRET = "boot-webhook-secret";

describePostgres("a controller process on PostgreSQL", () => {
  const suffix = randomBytes(3).toString("hex");
  const app = `pb${suffix}`;
  const host = `${app}-agent`;
  let ctl: ControllerProcess;
  let drop: (() => Promise<void>) | undefined;
  const handed: Handed[] = [];
  let agent: ProtocolAgent;
  let running: Promise<void> | undefined;

  beforeAll(async () => {
    const fresh = await freshDatabase("deploybot_boot");
    drop = fresh.drop;
    const appsYaml = `apps:
  - name: ${app}
    repo: acme/${app}
    url: https://git.example.test/acme/${app}.git
    branch: main
    deploy_on_push: true
    hosts: [${host}]
    build: { dockerfile: Dockerfile, context: . }
    run: {}
`;
    ctl = await controllerProcess(appsYaml, {
      DEPLOYBOT_DATABASE_URL: fresh.url,
      DEPLOYBOT_SECRET_KEY: randomBytes(32).toString("base64url"),
      DEPLOYBOT_WEBHOOK_SECRET: WEBHOOK_SECRET,
      DEPLOYBOT_LOG_LEVEL: "info",
    });
    agent = new ProtocolAgent(ctl.url, host, { joinToken: JOIN, linesPerJob: LINES, handed });
  }, 180_000);

  afterAll(async () => {
    if (agent) agent.stopped = true;
    await running?.catch(() => {});
    await ctl?.stop("SIGKILL");
    await drop?.();
  }, 120_000);

  test("ready; register, heartbeat, claim, running, logs, succeeded for each queued job", async () => {
    const ready = await fetch(`${ctl.url}/readyz`);
    expect(ready.status).toBe(200);
    await agent.register();
    running = agent.run();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await ctl.api("POST", "/v1/jobs", { spec: { kind: "build", app, source: { type: "image", image: `img-${suffix}-${i}` } }, target: { host } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      ids.push(r.body.job.id);
    }
    await waitFor("the three jobs to be run", async () => (ids.every((id) => handed.some((h) => h.jobId === id && h.finished)) ? true : undefined), 120_000, 100);
    for (const id of ids) {
      expect(handed.filter((h) => h.jobId === id)).toHaveLength(1);
      const { body } = await ctl.api("GET", `/v1/jobs/${id}`);
      expect(body.job).toMatchObject({ id, status: "succeeded", attempts: 1 });
      const logs = await ctl.api("GET", `/v1/jobs/${id}/logs?limit=100`);
      expect((logs.body.entries as { line: string }[]).map((l) => l.line)).toEqual(Array.from({ length: LINES }, (_, i) => `${id} line ${i}`));
    }
    // the heartbeats' liveness is flushed and the host shows online (host.online from the reaper's pass)
    const online = await waitFor(
      "the host to show online",
      async () => {
        const { body } = await ctl.api("GET", "/v1/hosts");
        const found = (body.hosts as { hostname: string; online: boolean }[]).find((h) => h.hostname === host);
        return found?.online ? found : undefined;
      },
      60_000,
      200,
    );
    expect(online.hostname).toBe(host);
  }, 180_000);

  test("a push deploys: the deployment and its job commit together, the job runs, the deployment succeeds", async () => {
    const sha = randomBytes(20).toString("hex");
    const raw = JSON.stringify({ ref: "refs/heads/main", after: sha, deleted: false, repository: { full_name: `acme/${app}` }, head_commit: { id: sha, message: "boot" } });
    const res = await fetch(`${ctl.url}/v1/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": `boot-${suffix}`,
        "x-hub-signature-256": `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(raw).digest("hex")}`,
      },
      body: raw,
    });
    expect(res.status, await res.clone().text()).toBeLessThan(300);
    const { body } = await ctl.api("GET", `/v1/deployments?app=${app}&limit=10`);
    const deployment = (body.deployments as { id: string; sha: string | null }[]).find((d) => d.sha === sha);
    expect(deployment).toBeDefined();
    // its job was queued in the deployment's transaction; the agent runs it, and the drainer
    // (singleton work on PostgreSQL) applies its end to the deployment
    const done = await waitFor(
      "the deployment to succeed",
      async () => {
        const { body: d } = await ctl.api("GET", `/v1/deployments/${deployment!.id}`);
        return d.deployment.status === "succeeded" ? d.deployment : undefined;
      },
      120_000,
      200,
    );
    expect(done.sha).toBe(sha);
    const ours: { kind: string; status: string }[] = [];
    for (const h of handed) {
      const { body: j } = await ctl.api("GET", `/v1/jobs/${h.jobId}`);
      if (j.job.deploymentId === deployment!.id) ours.push({ kind: j.job.kind, status: j.job.status });
    }
    expect(ours).toEqual([{ kind: "deploy", status: "succeeded" }]);
  }, 180_000);

  test("SIGTERM stops it cleanly", async () => {
    agent.stopped = true;
    await running;
    expect(await ctl.stop("SIGTERM")).toBe(0);
    expect(readFileSync(ctl.logFile, "utf8")).not.toMatch(/"level":(50|60)/);
  }, 120_000);
});
