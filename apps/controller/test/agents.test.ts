import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { type Agent, heartbeatResponse, registerResponse, volumesAnswer, volumesOnHosts } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, JOIN, makeHarness, seedJob, test } from "./fixture";

describe("POST /v1/agents/register", () => {
  test("issues an agent token and reports the heartbeat interval", async ({ h }) => {
    const res = await h.call("POST", "/v1/agents/register", {
      token: JOIN,
      body: { hostname: "web-1", labels: ["builder"], version: "1.2.3", capabilities: { arch: "x86_64", cpus: 2 } },
    });
    expect(res.status).toBe(200);
    const body = registerResponse.parse(await res.json());
    expect(body.agent.hostname).toBe("web-1");
    expect(body.agent.labels).toEqual(["builder"]);
    expect(body.agent.online).toBe(true);
    expect(body.token.split(".")).toHaveLength(3);
    expect(body.heartbeatIntervalSeconds).toBe(h.config.heartbeatIntervalSeconds);
  });

  test("re-registering a hostname keeps its id and kills the old token", async ({ h }) => {
    const first = await h.register("web-1");
    const second = await h.register("web-1");
    expect(second.id).toBe(first.id);
    expect(second.token).not.toBe(first.token);
    expect((await h.heartbeat(first)).status).toBe(401);
    expect((await h.heartbeat(second)).status).toBe(200);
  });

  test("refuses a wrong or missing join token", async ({ h }) => {
    const wrong = await h.call("POST", "/v1/agents/register", { token: "nope", body: { hostname: "web-1" } });
    expect(wrong.status).toBe(401);
    expect((await wrong.json()).error.code).toBe("unauthorized");
    const missing = await h.call("POST", "/v1/agents/register", { body: { hostname: "web-1" } });
    expect(missing.status).toBe(401);
    // an API token is not a join token
    expect((await h.call("POST", "/v1/agents/register", { token: ADMIN, body: { hostname: "web-1" } })).status).toBe(401);
  });

  test("an agent re-registers with its own token, which then rotates; never for another host", async ({ h }) => {
    const first = await h.register("web-1");
    const again = await h.call("POST", "/v1/agents/register", { token: first.token, body: { hostname: "web-1", version: "2" } });
    expect(again.status).toBe(200);
    const body = registerResponse.parse(await again.json());
    expect(body.agent).toMatchObject({ id: first.id, version: "2" });
    expect((await h.heartbeat(first)).status).toBe(401);
    expect((await h.heartbeat({ id: first.id, token: body.token })).status).toBe(200);
    const other = await h.call("POST", "/v1/agents/register", { token: body.token, body: { hostname: "web-2" } });
    expect(other.status).toBe(403);
    // an old token re-registers nothing
    expect((await h.call("POST", "/v1/agents/register", { token: first.token, body: { hostname: "web-1" } })).status).toBe(401);
  });

  test("validates the hostname", async ({ h }) => {
    const res = await h.call("POST", "/v1/agents/register", { token: JOIN, body: { hostname: "-bad host" } });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe("invalid_body");
    expect(error.message).toContain("hostname");
  });
});

describe("POST /v1/agents/:id/heartbeat", () => {
  test("answers with no job when the queue is empty", async ({ h }) => {
    const agent = await h.register("web-1");
    const res = await h.heartbeat(agent);
    expect(res.status).toBe(200);
    expect(heartbeatResponse.parse(await res.json())).toMatchObject({ acknowledged: true, job: null, cancelJobIds: [] });
  });

  test("a token may only heartbeat for its own agent id", async ({ h }) => {
    const a = await h.register("web-1");
    const b = await h.register("web-2");
    const res = await h.call("POST", `/v1/agents/${b.id}/heartbeat`, { token: a.token, body: {} });
    expect(res.status).toBe(403);
  });

  test("user tokens never work on agent routes, agent tokens never on user routes", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await h.call("POST", `/v1/agents/${agent.id}/heartbeat`, { token: ADMIN, body: {} })).status).toBe(401);
    expect((await h.call("GET", "/v1/hosts", { token: agent.token })).status).toBe(401);
    expect((await h.submit(seedJob, agent.token)).status).toBe(401);
  });

  test("a forged or tampered JWT is refused", async ({ h }) => {
    const agent = await h.register("web-1");
    const [head, payload] = agent.token.split(".");
    const forged = `${head}.${payload}.${"A".repeat(43)}`;
    expect((await h.heartbeat({ id: agent.id, token: forged })).status).toBe(401);
    const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${payload}.`;
    expect((await h.heartbeat({ id: agent.id, token: none })).status).toBe(401);
  });
});

describe("GET /v1/hosts", () => {
  test("shows online/offline from the last heartbeat and what the agent reported", async ({ h }) => {
    const agent = await h.register("web-1", ["eu"]);
    await h.register("web-2");
    await h.heartbeat(agent);
    h.clock.advance(h.config.heartbeatIntervalSeconds * 2 * 1000);
    await h.heartbeat(agent, { containers: [{ id: "abc", app: "web", state: "running" }] });
    h.clock.advance(h.config.heartbeatIntervalSeconds * 2 * 1000);
    const res = await h.call("GET", "/v1/hosts", { token: ADMIN });
    expect(res.status).toBe(200);
    const { hosts } = await res.json();
    expect(hosts.map((x: { hostname: string; online: boolean }) => [x.hostname, x.online])).toEqual([
      ["web-1", true],
      ["web-2", false],
    ]);
    expect(hosts[0].labels).toEqual(["eu"]);
    expect(hosts[0].containers).toEqual([{ id: "abc", app: "web", state: "running" }]);
  });

  test("an agent long-polling for longer than its lease stays online: the wait renews its liveness every interval", async () => {
    // interval 0.5 s: a lease of 1.5 s against the agent's default 25 s long-poll
    const h = await makeHarness({ heartbeatIntervalSeconds: 0.5 });
    const agent = await h.register("poll-1");
    h.clock.advance(100);
    const polledAt = new Date(h.clock.now).toISOString();
    const stop = new AbortController();
    const polling = h.app.request(`/v1/agents/${agent.id}/heartbeat?wait=25`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${agent.token}` },
      body: "{}",
      signal: stop.signal,
    });
    const host = async () => ((await (await h.call("GET", "/v1/hosts", { token: ADMIN })).json()).hosts as Agent[])[0]!;
    const until = async (done: () => boolean | Promise<boolean>) => {
      for (let i = 0; i < 200 && !(await done()); i++) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      await until(async () => (await host()).lastHeartbeatAt === polledAt); // the poll has begun
      h.clock.advance(1_000);
      const renewedAt = new Date(h.clock.now).toISOString();
      // renewed at the poll's next interval (0.5 s of real time); generous bound
      await until(async () => (await host()).lastHeartbeatAt === renewedAt);
      expect((await host()).lastHeartbeatAt).toBe(renewedAt);
      h.clock.advance(1_000); // 2 s since the poll began: past the lease, 1 s since the renewal
      await h.services.agents.markOffline();
      expect((await host()).online).toBe(true);
      expect(h.logLines.filter((l) => l.includes("host offline"))).toEqual([]);
    } finally {
      stop.abort();
      await polling;
    }
  });

  test("shows each host's named volumes as last reported; a heartbeat without them keeps the list", async ({ h }) => {
    const agent = await h.register("db-1");
    const volume = { name: "deploybot.db.data", app: "db", volume: "data", sizeBytes: 4096, createdAt: "2026-11-27T03:00:00Z", measuredAt: "2026-11-27T03:01:00Z" };
    await h.heartbeat(agent, { volumes: [volume, { name: "x", app: "db", volume: "y", sizeBytes: "many" }] });
    await h.heartbeat(agent, {});
    const hosts = (await (await h.call("GET", "/v1/hosts", { token: ADMIN })).json()).hosts as Agent[];
    expect(volumesOnHosts(hosts)).toEqual([{ ...volume, host: "db-1", online: true }]);
    expect(volumesOnHosts(hosts, { app: "web" })).toEqual([]);

    // GET /v1/volumes: the same rows, by app and host; a token limited to other apps sees none
    const list = async (query: string, token = ADMIN) => {
      const res = await h.call("GET", `/v1/volumes${query}`, { token });
      return { status: res.status, body: (await res.json()) as { volumes: unknown[] } };
    };
    expect((await list("")).body).toEqual(volumesAnswer.parse({ volumes: [{ ...volume, host: "db-1", online: true }] }));
    expect((await list("?app=db&host=db-1")).body.volumes).toHaveLength(1);
    expect((await list("?app=web")).body.volumes).toEqual([]);
    expect((await list("?host=db-2")).body.volumes).toEqual([]);
    // a filter is a name, as on /v1/jobs: empty or "../x" is a 400, not an empty list
    expect((await list("?app=")).status).toBe(400);
    expect((await list("?host=..%2Fdb-1")).status).toBe(400);
    expect((await h.call("GET", "/v1/volumes")).status).toBe(401);
    const webOnly = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "w", scope: "read", apps: ["web"] } })).json()) as { token: string };
    expect(await list("", webOnly.token)).toEqual({ status: 200, body: { volumes: [] } });
  });

  test("needs a token", async ({ h }) => {
    expect((await h.call("GET", "/v1/hosts")).status).toBe(401);
  });

  test("a revoked agent's token stops working and it cannot re-register", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await h.call("POST", "/v1/agents/web-1/revoke", { token: ADMIN })).status).toBe(200);
    expect((await h.heartbeat(agent)).status).toBe(401);
    const again = await h.call("POST", "/v1/agents/register", { token: JOIN, body: { hostname: "web-1" } });
    expect(again.status).toBe(403);
  });
});

describe("GET /v1/agents/install-command", () => {
  test("hands an admin a ready, quoted install command with the join token", async ({ h }) => {
    const res = await h.call("GET", "/v1/agents/install-command?url=https://deploy.example.com&labels=builder,region=eu", { token: ADMIN });
    expect(res.status).toBe(200);
    const { command } = await res.json();
    expect(command).toBe(
      "export DEPLOYBOT_JOIN_TOKEN='join-secret'; curl -fsSL --retry 5 --retry-connrefused -H @<(printf 'Authorization: Bearer %s\\n' \"$DEPLOYBOT_JOIN_TOKEN\") 'https://deploy.example.com/v1/agents/dist/install-agent.sh' | sudo --preserve-env=DEPLOYBOT_JOIN_TOKEN bash -s -- --url 'https://deploy.example.com' --labels 'builder,region=eu'",
    );
  });

  test("refuses non-admins and input that would need escaping", async ({ h }) => {
    const read = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "r", scope: "read" } })).json()).token;
    expect((await h.call("GET", "/v1/agents/install-command", { token: read })).status).toBe(403);
    expect((await h.call("GET", "/v1/agents/install-command?url=http://x/$(id)'", { token: ADMIN })).status).toBe(400);
    expect((await h.call("GET", "/v1/agents/install-command?labels=a;b", { token: ADMIN })).status).toBe(400);
  });

  test("several controller URLs: the installer comes from the first, the agent gets the whole list", async ({ h }) => {
    const res = await h.call("GET", "/v1/agents/install-command?url=https://a.example.com/,https://b.example.com:8443", { token: ADMIN });
    expect(res.status).toBe(200);
    const { command } = await res.json();
    expect(command).toContain("'https://a.example.com/v1/agents/dist/install-agent.sh'");
    expect(command).toContain("--url 'https://a.example.com,https://b.example.com:8443'");
    const init = await (await h.call("GET", "/v1/agents/cloud-init?url=https://a.example.com,https://b.example.com", { token: ADMIN })).text();
    expect(init).toContain("https://a.example.com/v1/agents/dist/install-agent.sh");
    expect(init).toContain("--url 'https://a.example.com,https://b.example.com'");
    for (const bad of ["https://a.example.com,", "https://a.example.com,,https://b.example.com", "https://a.example.com,ftp://b"]) {
      expect((await h.call("GET", `/v1/agents/install-command?url=${encodeURIComponent(bad)}`, { token: ADMIN })).status).toBe(400);
    }
  });
});

describe("GET /v1/agents/bundle and /v1/agents/dist/{file}", () => {
  test("serve the checkout's agent, built on demand, with its version and sha256; the manifest lists every file", async ({ h }) => {
    const res = await h.call("GET", "/v1/agents/bundle", { token: JOIN });
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    const sha = createHash("sha256").update(body).digest("hex");
    const pkg = JSON.parse(readFileSync(new URL("../../agent/package.json", import.meta.url), "utf8"));
    expect(res.headers.get("x-deploybot-agent-version")).toBe(pkg.version);
    expect(res.headers.get("x-deploybot-sha256")).toBe(sha);
    expect(body.toString("utf8")).not.toContain("--import tsx");

    const manifest = await (await h.call("GET", "/v1/agents/dist/manifest.json", { token: JOIN })).json();
    expect(manifest).toMatchObject({ version: pkg.version, files: { "deploybot-agent.mjs": { sha256: sha, size: body.length } } });
    const unit = await h.call("GET", "/v1/agents/dist/deploybot-agent.service", { token: JOIN });
    expect(await unit.text()).toContain("ExecStart=/opt/deploybot-agent/bin/node /var/lib/deploybot-agent/current/deploybot-agent.mjs");
    // the host proxy's units come with it (install-agent.sh installs them)
    expect(manifest.files).toHaveProperty(["deploybot-proxy.service", "sha256"]);
    const pathUnit = await h.call("GET", "/v1/agents/dist/deploybot-proxy.path", { token: JOIN });
    expect(await pathUnit.text()).toContain("Unit=deploybot-proxy.service");
  }, 60_000);

  test("need the join token or an agent token; no other file is served", async ({ h }) => {
    expect((await h.call("GET", "/v1/agents/bundle")).status).toBe(401);
    expect((await h.call("GET", "/v1/agents/bundle", { token: ADMIN })).status).toBe(401);
    expect((await h.call("GET", "/v1/agents/dist/..%2F..%2Fpackage.json", { token: JOIN })).status).toBe(404);
    expect((await h.call("GET", "/v1/agents/dist/package.json", { token: JOIN })).status).toBe(404);
    const agent = await h.register("web-1");
    expect((await h.call("GET", "/v1/agents/dist/manifest.json", { token: agent.token })).status).toBe(200);
  }, 60_000);
});
