import { deployment as deploymentSchema, release as releaseSchema } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { secrets } from "../src/db/schema";
import { ADMIN, type Harness, test } from "./fixture";

type Agent = { id: string; token: string };

/** Claims the next job as `agent` and ends it with `status` and `result`. */
async function runNext(h: Harness, agent: Agent, status: "succeeded" | "failed", result: Record<string, unknown> = {}) {
  const beat = await (await h.heartbeat(agent)).json();
  expect(beat.job).not.toBeNull();
  const { id, leaseId } = beat.job;
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status, result, ...(status === "failed" ? { error: "health check failed" } : {}) } });
  return beat.job;
}
const getDeployment = async (h: Harness, id: string) =>
  deploymentSchema.parse((await (await h.call("GET", `/v1/deployments/${id}`, { token: ADMIN })).json()).deployment);
const deploy = async (h: Harness, body: Record<string, unknown>) => {
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body });
  expect(res.status).toBe(201);
  return deploymentSchema.parse((await res.json()).deployment);
};

describe("deployments", () => {
  test("each host builds when the app has no image repository", async ({ h }) => {
    const agent = await h.register("web-1");
    const d = await deploy(h, { app: "web", ref: "main" });
    expect(d).toMatchObject({ status: "deploying", trigger: "api", hosts: ["web-1"] });
    expect(d.jobs).toHaveLength(1);
    const job = await runNext(h, agent, "succeeded", { version: "abc123", sha: "abc123def", image: "deploybot/web:abc123" });
    expect(job.spec.source).toMatchObject({ type: "git", ref: "main" });
    const done = await getDeployment(h, d.id);
    expect(done.status).toBe("succeeded");
    // the commit the host built is the deployment's, as with a built image (webhooks, `deploybot deployments`)
    expect(done).toMatchObject({ ref: "main", sha: "abc123def" });
    const releases = (await (await h.call("GET", "/v1/apps/web/releases", { token: ADMIN })).json()).releases;
    expect(releaseSchema.parse(releases[0])).toMatchObject({ status: "success", version: "abc123", current: true });
  });

  test("with a repository the image is built once and every host pulls it by digest", async ({ h }) => {
    h.config.registry = { url: "127.0.0.1:5000", username: "u", password: "registry-pw" };
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://db" } });
    const a1 = await h.register("api-1");
    const a2 = await h.register("api-2");
    const d = await deploy(h, { app: "api", sha: "0123456789abcdef0123456789abcdef01234567" });
    expect(d.status).toBe("building");
    const build = await runNext(h, a1, "succeeded", { version: "0123456789ab", digest: "sha256:feed", sha: "0123456789abcdef0123456789abcdef01234567" });
    expect(build.kind).toBe("build");
    expect((await getDeployment(h, d.id)).status).toBe("deploying");
    for (const agent of [a1, a2]) {
      const job = await runNext(h, agent, "succeeded");
      expect(job.spec.source).toEqual({ type: "image", image: "127.0.0.1:5000/acme/api@sha256:feed" });
      expect(job.spec.registry.password).toBe("registry-pw");
    }
    expect((await getDeployment(h, d.id)).status).toBe("succeeded");
  });

  test("a newer pending deploy supersedes an older pending one; a running one is not interrupted", async ({ h }) => {
    const agent = await h.register("web-1");
    const first = await deploy(h, { app: "web", ref: "v1" });
    const running = await runNextStartOnly(h, agent);
    const second = await deploy(h, { app: "web", ref: "v2" });
    const third = await deploy(h, { app: "web", ref: "v3" });
    expect((await getDeployment(h, first.id)).status).toBe("deploying");
    expect((await getDeployment(h, second.id)).status).toBe("superseded");
    expect((await getDeployment(h, third.id)).status).toBe("deploying");
    const job = (await (await h.call("GET", `/v1/jobs/${running}`, { token: ADMIN })).json()).job;
    expect(job.status).toBe("running");
  });

  test("rollback re-runs the previous release with its own config", async ({ h }) => {
    const agent = await h.register("web-1");
    const v1 = await deploy(h, { app: "web", ref: "v1" });
    await runNext(h, agent, "succeeded", { version: "v1", image: "deploybot/web:v1" });
    const v2 = await deploy(h, { app: "web", ref: "v2" });
    await runNext(h, agent, "succeeded", { version: "v2", image: "deploybot/web:v2" });
    expect((await getDeployment(h, v2.id)).status).toBe("succeeded");
    const res = await h.call("POST", "/v1/apps/web/rollback", { token: ADMIN, body: {} });
    expect(res.status).toBe(201);
    const rb = deploymentSchema.parse((await res.json()).deployment);
    expect(rb).toMatchObject({ trigger: "rollback", releaseId: v1.releaseId });
    const job = await runNext(h, agent, "succeeded");
    expect(job.spec.source).toEqual({ type: "image", image: "deploybot/web:v1" });
    expect(job.spec.run.ports).toEqual(["8080:80"]);
    const current = (await (await h.call("GET", "/v1/apps/web", { token: ADMIN })).json()).app.currentRelease;
    expect(current.id).toBe(v1.releaseId);
    // the list finds every app's current release in one pass; it must agree with the app's own view
    const listed = (await (await h.call("GET", "/v1/apps", { token: ADMIN })).json()).apps as Array<{ name: string; currentRelease: { id: string } | null }>;
    expect(listed.find((a) => a.name === "web")!.currentRelease).toEqual(current);
    expect(listed.filter((a) => a.name !== "web").every((a) => a.currentRelease === null)).toBe(true);
  });

  test("rollback with nothing to roll back to is a 409", async ({ h }) => {
    const res = await h.call("POST", "/v1/apps/web/rollback", { token: ADMIN, body: {} });
    expect(res.status).toBe(409);
  });

  test("unknown apps and bad bodies are clear errors", async ({ h }) => {
    expect((await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "nope" } })).status).toBe(404);
    expect((await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref: "a", image: "x" } })).status).toBe(400);
    expect((await h.call("GET", "/v1/deployments?app=web", { token: ADMIN })).status).toBe(200);
  });
});

describe("secrets", () => {
  test("set, listed by name only, encrypted at rest, injected into the claimed job only", async ({ h }) => {
    const value = "postgres://user:s3cr3t-value@db/app";
    const put = await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value } });
    expect(put.status).toBe(200);
    const list = await (await h.call("GET", "/v1/apps/api/secrets", { token: ADMIN })).text();
    expect(list).toContain("DATABASE_URL");
    expect(list).not.toContain("s3cr3t");
    expect(JSON.stringify(await h.db.select().from(secrets))).not.toContain("s3cr3t");
    const a1 = await h.register("api-1");
    await h.register("api-2");
    const d = await deploy(h, { app: "api", image: "127.0.0.1:5000/acme/api:1" });
    const beat = await (await h.heartbeat(a1)).json();
    expect(beat.job.spec.secretEnv).toEqual({ DATABASE_URL: value });
    const answers = [
      await (await h.call("GET", `/v1/jobs/${beat.job.id}`, { token: ADMIN })).text(),
      await (await h.call("GET", `/v1/deployments/${d.id}`, { token: ADMIN })).text(),
      await (await h.call("GET", "/v1/apps/api", { token: ADMIN })).text(),
    ];
    for (const text of answers) expect(text).not.toContain("s3cr3t");
    expect(h.logLines.join("\n")).not.toContain("s3cr3t");
    expect((await h.call("DELETE", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN })).status).toBe(204);
    expect((await h.call("DELETE", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN })).status).toBe(404);
  });

  test("need the admin scope and a known app and key", async ({ h }) => {
    const deployToken = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "d", scope: "deploy" } })).json()).token;
    expect((await h.call("PUT", "/v1/apps/api/secrets/X", { token: deployToken, body: { value: "v" } })).status).toBe(403);
    expect((await h.call("PUT", "/v1/apps/nope/secrets/X", { token: ADMIN, body: { value: "v" } })).status).toBe(404);
    expect((await h.call("PUT", "/v1/apps/api/secrets/bad-key", { token: ADMIN, body: { value: "v" } })).status).toBe(400);
  });
});

async function runNextStartOnly(h: Harness, agent: Agent): Promise<string> {
  const beat = await (await h.heartbeat(agent)).json();
  await h.call("POST", `/v1/jobs/${beat.job.id}/status`, { token: agent.token, body: { leaseId: beat.job.leaseId, status: "running" } });
  return beat.job.id;
}
