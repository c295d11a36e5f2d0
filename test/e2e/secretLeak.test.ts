import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BASE_IMAGE, describeDocker, freePort, removeAppContainers, uniqueName } from "../support/docker";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitForHostOnline, waitForJob } from "../harness/processes";

/**
 * The leak the black-box attack found: a release whose container prints its environment (raw,
 * base64 and hex) and exits before it is healthy. The deploy fails with the container's last
 * lines as its reason; the secret must appear on no API surface a read token sees, in no log
 * line of the controller or the agent, and nowhere in the database file or its WAL.
 */
describeDocker("a secret printed by a failing release leaks nowhere (real engine)", () => {
  const app = uniqueName("leak");
  const host = uniqueName("leakhost");
  const SECRET = `S3CR3T-${uniqueName("v")}`;
  let ctl: ControllerProcess;
  let agent: AgentProcess;

  beforeAll(async () => {
    const port = await freePort();
    const script = "env; echo API_KEY=$API_KEY | base64; echo -n $API_KEY | od -A n -t x1 | tr -d ' \\n'; echo; echo \"url=$(echo $API_KEY)\"; exit 3";
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    hosts: [${host}]
    run:
      ports: ["127.0.0.1:${port}:80"]
      command: ["sh", "-c", ${JSON.stringify(script)}]
      secrets: [API_KEY]
      healthcheck: { path: /health, port: 80, timeout_seconds: 6 }
`);
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(app);
  });

  it("the deploy fails with the container's last words, and the secret is on no surface", async () => {
    expect((await ctl.api("PUT", `/v1/apps/${app}/secrets/API_KEY`, { value: SECRET })).status).toBe(200);
    const created = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    expect(created.status).toBe(201);
    const jobId = created.body.deployment.jobs[0].id as string;
    const job = await waitForJob(ctl, jobId);
    expect(job.status).toBe("failed");
    // the container did print its environment: the error carries it, masked
    expect(job.error).toContain("API_KEY=********");

    const read = (await ctl.api("POST", "/v1/tokens", { name: "reader", scope: "read" })).body.token as string;
    const get = async (path: string) => {
      const res = await fetch(ctl.url + path, { headers: { authorization: `Bearer ${read}` } });
      expect(res.status).toBe(200);
      return res.text();
    };
    const surfaces = [
      await get(`/v1/jobs/${jobId}`),
      await get("/v1/jobs"),
      await get(`/v1/deployments/${created.body.deployment.id}`),
      await get("/v1/deployments"),
      await get(`/v1/jobs/${jobId}/logs?limit=10000`),
      await get(`/v1/apps/${app}/releases`),
    ];
    const hex = Buffer.from(SECRET).toString("hex");
    const check = (what: string, text: string) => {
      expect(text, what).not.toContain(SECRET);
      expect(text, what).not.toContain(hex);
      for (const b64 of text.match(/[A-Za-z0-9+/]{12,}={0,2}/g) ?? []) {
        expect(Buffer.from(b64, "base64").toString("latin1"), `${what}: base64 ${b64}`).not.toContain(SECRET);
      }
    };
    for (const [i, text] of surfaces.entries()) check(`API answer ${i}`, text);

    await agent.stop();
    await ctl.stop();
    check("controller log", readFileSync(ctl.logFile, "utf8"));
    check("agent log", readFileSync(agent.logFile, "utf8"));
    const agentLog = readFileSync(agent.logFile, "utf8");
    expect(agentLog).toContain("job ended");
    for (const file of ["deploybot.db", "deploybot.db-wal"]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(ctl.dir, file));
      } catch {
        continue; // a checkpointed WAL is gone at close
      }
      expect(bytes.includes(Buffer.from(SECRET)), `${file} holds the secret in plaintext`).toBe(false);
      expect(bytes.includes(Buffer.from(hex)), `${file} holds the secret in hex`).toBe(false);
    }
  });
});
