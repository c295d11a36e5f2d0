import { createHmac, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, jobLog, waitFor } from "../harness/processes";
import {
  containersWithLabels,
  describeDocker,
  engineRequest,
  httpGet,
  makeGitRepo,
  removeAppContainers,
  type TestGitRepo,
  testAppFiles,
  testRegistry,
  testRegistryEnv,
  uniqueName,
} from "../support/docker";

const SECRET = "e2e-webhook-secret";
const API_KEY = `api-key-${randomUUID()}`;

/**
 * The everyday path on two hosts (two agent processes on one engine): push -> webhook ->
 * deployment built once and pulled by both -> healthy; a broken push leaves the running version;
 * rollback brings back the previous release with its own env; secrets reach only the container.
 */
describeDocker("push to deploy on two hosts, rollback, secrets, retention", () => {
  const app = uniqueName("fleet");
  const hosts = [uniqueName("ha"), uniqueName("hb")];
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agents: AgentProcess[] = [];

  const appsYaml = (greeting: string) => `
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    branch: main
    hosts: [${hosts.join(", ")}]
    image: ${testRegistry.host}/${app}
    run:
      ports: ["127.0.0.1:0:80"]
      env: { GREETING: ${greeting} }
      secrets: [API_KEY]
      healthcheck: { path: /health, port: 80, timeout_seconds: 8 }
`;

  const push = async (sha: string, message: string, branch = "main") => {
    const body = JSON.stringify({
      ref: `refs/heads/${branch}`,
      before: "0".repeat(40),
      after: sha,
      created: false,
      deleted: false,
      forced: false,
      repository: { full_name: `acme/${app}`, name: app, clone_url: repo.url },
      pusher: { name: "dev" },
      head_commit: { id: sha, message, timestamp: new Date().toISOString(), author: { name: "dev" } },
      commits: [{ id: sha, message }],
    });
    const res = await fetch(`${ctl.url}/v1/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
      },
      body,
    });
    return { status: res.status, body: await res.json() };
  };

  const waitDeployment = (id: string) =>
    waitFor(`deployment ${id}`, async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${id}`);
      return ["succeeded", "failed", "cancelled", "superseded"].includes(body.deployment.status) ? body.deployment : undefined;
    });

  /**
   * What each host serves: its app container's published port, answered over loopback. `seen`
   * says what the engine held for the host (every container, its release and state) and the
   * agent's last log lines, so a failed expectation names the host and what was there.
   */
  const served = async () =>
    Promise.all(
      hosts.map(async (host, i) => {
        const all = await containersWithLabels([`deploybot.app=${app}`, `deploybot.host=${host}`]);
        const seen = () =>
          `${host}: ${JSON.stringify(all.map((x) => ({ name: x.Names?.[0], state: x.State, status: x.Status, labels: x.Labels })))}\n` +
          readFileSync(agents[i]!.logFile, "utf8").split("\n").slice(-15).join("\n");
        const [c] = all.filter((x) => x.State === "running");
        if (!c) return { body: undefined, env: [] as string[], seen: seen() };
        const info = JSON.parse((await engineRequest("GET", `/containers/${c.Id}/json`)).body);
        const port = Number(info.NetworkSettings.Ports["80/tcp"][0].HostPort);
        const env = info.Config.Env as string[];
        // a refused connection returns at once; the long timeout only spares a loaded machine
        return { body: (await httpGet(port, "/", 15_000))?.body, env, seen: seen() };
      }),
    );

  beforeAll(async () => {
    repo = await makeGitRepo();
    ctl = await controllerProcess(appsYaml("one"), {
      DEPLOYBOT_WEBHOOK_SECRET: SECRET,
      ...testRegistryEnv,
    });
    agents = hosts.map((h) => agentProcess(ctl.url, h));
    await waitFor("both agents online", async () => {
      const { body } = await ctl.api("GET", "/v1/hosts");
      return hosts.every((h) => body.hosts.some((x: { hostname: string; online: boolean }) => x.hostname === h && x.online)) ? true : undefined;
    });
    expect((await ctl.api("PUT", `/v1/apps/${app}/secrets/API_KEY`, { value: API_KEY })).status).toBe(200);
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ctl?.stop();
    await removeAppContainers(app);
    await repo?.cleanup();
  });

  let first: { id: string; releaseId: string };

  it("a signed push deploys to both hosts, built once and pulled by digest", async () => {
    const sha = await repo.commit(testAppFiles("v1", { salt: app }), "v1");
    const res = await push(sha, "v1");
    expect(res.status).toBe(202);
    expect(res.body.outcome).toBe("deployed");
    const d = await waitDeployment(res.body.deploymentId);
    expect(d.status).toBe("succeeded");
    expect(d.jobs.filter((j: { kind: string }) => j.kind === "build")).toHaveLength(1);
    expect(d.image).toMatch(/@sha256:/);
    for (const s of await served()) expect(s.body, s.seen).toBe("v1\n");
    first = d;
  });

  it("a secret reaches the container env and no job log, API answer or controller log line", async () => {
    for (const s of await served()) expect(s.env, s.seen).toContain(`API_KEY=${API_KEY}`);
    const { body } = await ctl.api("GET", `/v1/deployments/${first.id}`);
    const texts = [JSON.stringify(body)];
    for (const j of body.deployment.jobs) {
      texts.push(JSON.stringify(await jobLog(ctl, j.id)));
      texts.push(JSON.stringify((await ctl.api("GET", `/v1/jobs/${j.id}`)).body));
    }
    texts.push(JSON.stringify((await ctl.api("GET", `/v1/apps/${app}`)).body));
    texts.push(JSON.stringify((await ctl.api("GET", `/v1/apps/${app}/secrets`)).body));
    texts.push(readFileSync(ctl.logFile, "utf8"));
    for (const t of texts) expect(t).not.toContain(API_KEY);
  });

  it("pushes to other branches and [skip deploy] pushes deploy nothing", async () => {
    const sha = await repo.commit(testAppFiles("feature", { salt: app }), "feature", "feature");
    expect((await push(sha, "feature", "feature")).body.outcome).toBe("ignored");
    expect((await push(sha, "docs only [skip deploy]")).body.outcome).toBe("ignored");
  });

  it("a broken push fails without touching the running version", async () => {
    const sha = await repo.commit(testAppFiles("v2-broken", { salt: app, healthy: false }), "broken");
    const d = await waitDeployment((await push(sha, "broken")).body.deploymentId);
    expect(d.status).toBe("failed");
    for (const s of await served()) expect(s.body, s.seen).toBe("v1\n");
  });

  it("rollback brings the previous release back with its own env", async () => {
    writeFileSync(join(ctl.dir, "apps.yaml"), appsYaml("two"));
    await ctl.reload();
    const sha = await repo.commit(testAppFiles("v3", { salt: app }), "v3");
    const d3 = await waitDeployment((await push(sha, "v3")).body.deploymentId);
    expect(d3.status).toBe("succeeded");
    for (const s of await served()) {
      expect(s.body, s.seen).toBe("v3\n");
      expect(s.env, s.seen).toContain("GREETING=two");
    }
    const rb = await ctl.api("POST", `/v1/apps/${app}/rollback`, {});
    expect(rb.status).toBe(201);
    expect(rb.body.deployment.releaseId).toBe(first.releaseId);
    expect((await waitDeployment(rb.body.deployment.id)).status).toBe("succeeded");
    for (const s of await served()) {
      expect(s.body, s.seen).toBe("v1\n");
      expect(s.env, s.seen).toContain("GREETING=one");
      expect(s.env, s.seen).toContain(`API_KEY=${API_KEY}`);
    }
  });

  it("hosts keep 5 images of the app and never the rollback target", async () => {
    for (let i = 4; i <= 9; i++) {
      const sha = await repo.commit(testAppFiles(`v${i}`, { salt: app }), `v${i}`);
      const res = await ctl.api("POST", "/v1/deployments", { app, sha });
      expect((await waitDeployment(res.body.deployment.id)).status).toBe("succeeded");
    }
    const images = JSON.parse((await engineRequest("GET", "/images/json")).body) as { RepoTags: string[] | null; RepoDigests: string[] | null }[];
    const mine = images.filter((img) => [...(img.RepoTags ?? []), ...(img.RepoDigests ?? [])].some((r) => r.startsWith(`${testRegistry.host}/${app}`)));
    expect(mine.length).toBeLessThanOrEqual(5);
    const releases = (await ctl.api("GET", `/v1/apps/${app}/releases`)).body.releases as { current: boolean; digest: string | null }[];
    const previous = releases.filter((r) => r.digest).slice(1, 2)[0];
    expect(mine.some((img) => (img.RepoDigests ?? []).some((r) => previous && r.endsWith(previous.digest!)))).toBe(true);
  });
});
