import { deploymentStatuses } from "@deploybot/protocol";
import { HttpResponse, http } from "msw";
import { describe, expect, test, vi } from "vitest";
import { commitStateFor } from "../../src/services/commitStatuses";
import { ADMIN, type Harness, makeHarness } from "../fixture";
import { API, REPO, SHA, seen } from "./handlers";
import { server, useFakeGitHub } from "./server";

useFakeGitHub();

const TOKEN = "ghp_statustoken0123456789abcdefghijklmnop";

type Posted = { path: string; state: string; context: string; target_url: string; description: string };
const posted = (): Posted[] => seen.filter((r) => r.method === "POST").map((r) => ({ ...(r.body as Omit<Posted, "path">), path: r.path }));

async function deployRef(h: Harness, ref: string) {
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref } });
  expect(res.status).toBe(201);
  return (await res.json()).deployment as { id: string; sha: string };
}

async function finishNextJob(h: Harness, agent: { id: string; token: string }, status: "succeeded" | "failed") {
  const { job } = await (await h.heartbeat(agent)).json();
  await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: job.leaseId, status: "running" } });
  await h.call("POST", `/v1/jobs/${job.id}/status`, {
    token: agent.token,
    body: { leaseId: job.leaseId, status, ...(status === "failed" ? { error: "health check failed" } : {}) },
  });
}

describe("commitStateFor", () => {
  test("maps every deployment status to a GitHub commit state", () => {
    expect(Object.fromEntries(deploymentStatuses.map((s) => [s, commitStateFor(s)]))).toEqual({
      pending: "pending",
      building: "pending",
      deploying: "pending",
      succeeded: "success",
      failed: "failure",
      superseded: "error",
      cancelled: "error",
    });
  });
});

describe("commit statuses", () => {
  test("a deployment of a tag reports pending, then success, on the tag's commit", async () => {
    const h = await makeHarness({ githubToken: TOKEN, publicUrl: "https://deploy.example.test" });
    const agent = await h.register("web-1");
    const d = await deployRef(h, "v1.1.0");
    expect(d.sha).toBe(SHA.v110);
    await finishNextJob(h, agent, "succeeded");
    await h.settle();
    const statuses = posted();
    expect(statuses.map((s) => s.state)).toEqual(["pending", "success"]);
    for (const s of statuses) {
      expect(s).toMatchObject({
        path: `/repos/${REPO}/statuses/${SHA.v110}`,
        context: "deploybot/web",
        target_url: `https://deploy.example.test/v1/deployments/${d.id}`,
      });
    }
    expect(seen.filter((r) => r.method === "POST").every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
  });

  test("a failed deployment reports failure with the reason", async () => {
    const h = await makeHarness({ githubToken: TOKEN });
    const agent = await h.register("web-1");
    const d = await deployRef(h, "main");
    await finishNextJob(h, agent, "failed");
    await h.settle();
    const statuses = posted();
    expect(statuses.map((s) => s.state)).toEqual(["pending", "failure"]);
    expect(statuses[1]).toMatchObject({ path: `/repos/${REPO}/statuses/${SHA.main}`, target_url: `http://localhost:8080/v1/deployments/${d.id}` });
  });

  test("GitHub refusing a status is logged and never touches the deployment", async () => {
    server.use(http.post(`${API}/repos/:o/:r/statuses/:sha`, () => HttpResponse.json({ message: "Server Error" }, { status: 500 })));
    const h = await makeHarness({ githubToken: TOKEN });
    const agent = await h.register("web-1");
    const d = await deployRef(h, "main");
    await finishNextJob(h, agent, "succeeded");
    await h.settle();
    const res = await h.call("GET", `/v1/deployments/${d.id}`, { token: ADMIN });
    expect((await res.json()).deployment.status).toBe("succeeded");
    await vi.waitFor(() => expect(h.logLines.some((l) => l.includes("could not report the commit status"))).toBe(true));
    expect(h.logLines.join("")).not.toContain(TOKEN);
  });

  test("without a token nothing is sent (and refs are not resolved through GitHub)", async () => {
    const h = await makeHarness();
    const agent = await h.register("web-1");
    await deployRef(h, "main");
    await finishNextJob(h, agent, "succeeded");
    await h.settle();
    expect(seen).toEqual([]);
  });
});
