import { describe, expect } from "vitest";
import { deployments, jobLogs, jobs, releases } from "../src/db/schema";
import { ADMIN, type Harness, test } from "./fixture";

const SECRET = "S3CR3T-VALUE-for-api";
type Agent = { id: string; token: string };

/** every stored row of the tables a job's data reaches */
const dump = async (h: Harness) =>
  (await Promise.all([jobs, jobLogs, deployments, releases].map((t) => h.db.select().from(t)))).map((rows) => JSON.stringify(rows)).join("\n");

async function readToken(h: Harness) {
  return (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "r", scope: "read" } })).json()).token as string;
}

/** Claims the next job and sends what an agent that redacts nothing would send. */
async function leakyAgentRun(h: Harness, agent: Agent) {
  const beat = await (await h.heartbeat(agent)).json();
  const { id, leaseId } = beat.job;
  expect(beat.job.spec.secretEnv).toEqual({ DATABASE_URL: SECRET });
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  const b64 = Buffer.from(`PATH=/bin\nDATABASE_URL=${SECRET}\n`).toString("base64");
  const entries = [`DATABASE_URL=${SECRET}`, b64, encodeURIComponent(SECRET)].map((line) => ({ ts: new Date().toISOString(), stream: "stdout", line }));
  expect((await h.call("POST", `/v1/jobs/${id}/logs`, { token: agent.token, body: { leaseId, offset: 0, entries } })).status).toBe(200);
  const error = `health check failed\nlast log lines of the new container:\nDATABASE_URL=${SECRET.slice(0, 9)}\n${SECRET.slice(9)}`;
  const status = await h.call("POST", `/v1/jobs/${id}/status`, {
    token: agent.token,
    body: { leaseId, status: "failed", error, result: { lastLogLines: [`DATABASE_URL=${SECRET}`, b64], [SECRET]: Buffer.from(SECRET).toString("hex") } },
  });
  expect(status.status).toBe(200);
  return id as string;
}

describe("secrets on every surface", () => {
  test("what an agent sends (error, result, log lines, encoded forms) is redacted before it is stored", async ({ h }) => {
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: SECRET } });
    const a1 = await h.register("api-1");
    await h.register("api-2");
    const dep = (await (await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:1" } })).json()).deployment;
    const jobId = await leakyAgentRun(h, a1);
    const read = await readToken(h);
    const answers = await Promise.all(
      [`/v1/jobs/${jobId}`, "/v1/jobs", `/v1/deployments/${dep.id}`, "/v1/deployments", `/v1/jobs/${jobId}/logs`].map(async (p) => {
        const res = await h.call("GET", p, { token: read });
        expect(res.status).toBe(200);
        return res.text();
      }),
    );
    const job = JSON.parse(answers[0]!).job;
    expect(job.error).toContain("********");
    expect(job.result.lastLogLines[0]).toBe("DATABASE_URL=********");
    const surfaces = [...answers, await dump(h), h.logLines.join("\n")].join("\n");
    expect(surfaces).not.toContain(SECRET);
    expect(surfaces).not.toContain(SECRET.slice(9));
    expect(surfaces).not.toContain(Buffer.from(SECRET).toString("hex"));
    expect(surfaces).not.toContain(encodeURIComponent(SECRET));
    for (const b64 of surfaces.match(/[A-Za-z0-9+/]{16,}={0,2}/g) ?? []) expect(Buffer.from(b64, "base64").toString()).not.toContain(SECRET);
  });

  test("a declared secret that is not set fails the deploy before anything is queued, naming the key", async ({ h }) => {
    await h.register("api-1");
    for (const res of [
      await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:1" } }),
      await h.submit({ repo: "acme/api", ref: "main", host: "api-1" }),
    ]) {
      expect(res.status).toBe(422);
      const { error } = await res.json();
      expect(error.code).toBe("secret_not_set");
      expect(error.message).toContain("DATABASE_URL");
    }
    const jobs = (await (await h.call("GET", "/v1/jobs", { token: ADMIN })).json()).jobs;
    expect(jobs).toEqual([]);
  });
});
