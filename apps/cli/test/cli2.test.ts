import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { createServer, type Socket, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { startTestController } from "../../controller/test/server";
import { SseParser } from "../src/sse";
import { fakeAgent as makeFakeAgent } from "./fakeAgent";
import { BIN, json, runCli } from "./runCli";

// Deployments, releases, rollback, secrets and SSE log following: the real binary against a real
// controller (one for the whole file), with fake agents speaking the wire protocol over HTTP.
vi.setConfig({ testTimeout: 60_000 });

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;
let home: string;

const cli = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}) =>
  runCli({ url: ctl.url, home }, args, opts);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `done` every 50 ms for up to 30 s: a wait on the condition, not on the clock. */
async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !done(); i++) await sleep(50);
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

const fakeAgent = (hostname: string) => makeFakeAgent(ctl, hostname);

/** A TCP proxy to the controller whose connections the test can cut. */
async function cuttableProxy(target: string) {
  const { port: targetPort } = new URL(target);
  const sockets = new Set<Socket>();
  let relayed = "";
  const server = createServer((client) => {
    const upstream = connect(Number(targetPort), "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    upstream.on("data", (chunk: Buffer) => {
      relayed += chunk.toString("utf8");
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
    cutAll: () => {
      for (const s of sockets) s.destroy();
      return sockets.size;
    },
    get open() {
      return sockets.size;
    },
    /** Everything the controller sent through the proxy so far. */
    get relayed() {
      return relayed;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An HTTP proxy to the controller that records each request's method and path. */
async function countingProxy(target: string) {
  const seen: string[] = [];
  const server = createHttpServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const { hostname, port } = new URL(target);
    const upstream = httpRequest({ hostname, port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

beforeAll(async () => {
  ctl = await startTestController();
  home = mkdtempSync(join(tmpdir(), "deploybot-cli2-home-"));
});

afterAll(async () => {
  await ctl?.stop();
});

describe("SSE parser", () => {
  test("splits events across chunks and line endings; the id moves only on dispatch", () => {
    const p = new SseParser();
    expect(p.feed("retry: 2000\n\nid: 1\nevent: log\nda")).toEqual([]);
    expect(p.lastEventId).toBeUndefined(); // the event is not complete yet
    expect(p.feed('ta: {"a":1}\r')).toEqual([]);
    expect(p.feed("\n\r\n: ping\n\ndata:x\ndata: y\n\n")).toEqual([
      { type: "log", data: '{"a":1}', id: "1" },
      { type: ":", data: "ping", id: "1" },
      { type: "message", data: "x\ny", id: "1" },
    ]);
    expect(p.retry).toBe(2000);
    expect(p.lastEventId).toBe("1");
  });
});

describe("SSE parser keeps the stream's last id", () => {
  test("an event without an id carries the last one; a resumed parser starts from the given id", () => {
    const p = new SseParser("7");
    expect(p.feed("data: a\n\nid: 8\ndata: b\n\ndata: c\n\n")).toEqual([
      { type: "message", data: "a", id: "7" },
      { type: "message", data: "b", id: "8" },
      { type: "message", data: "c", id: "8" },
    ]);
  });
});

describe("help", () => {
  test("every new command has --help with an example", async () => {
    const names = ["deploy", "deployments", "rollback", "apps", "releases", "routes", "logs", "secrets set", "secrets list", "secrets rm", "agents install-command"];
    const runs = await Promise.all(names.map((n) => cli([...n.split(" "), "--help"])));
    runs.forEach((run, i) => {
      expect(run.code, names[i]).toBe(0);
      expect(run.stdout, names[i]).toMatch(new RegExp(`usage: deploybot ${names[i]}`));
      expect(run.stdout, names[i]).toMatch(/examples:\n {2}deploybot /);
      expect(run.stdout, names[i]).toMatch(/--json/);
    });
    expect((await cli(["secrets", "--help"])).stdout).toMatch(/secrets set/);
  });

  test("a reader that goes away (deploybot jobs | head) ends the command quietly", async () => {
    // the read end is closed before the command writes anything: every write fails with EPIPE
    const child = spawn(process.execPath, [BIN, "--help"], { stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH, HOME: home } });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });

  test("usage errors exit 2", async () => {
    const cases = [
      ["deploy"],
      ["deploy", "web", "--ref", "main", "--sha", "abcdef1"],
      ["deploy", "web", "--repo", "acme/web", "--ref", "x", "--host", "web-1"],
      ["deploy", "--repo", "acme/web", "--ref", "x", "--host", "a", "--host", "b"],
      ["rollback"],
      ["releases"],
      ["logs", "--host", "web-1"],
      ["logs", "--job", "j", "--app", "web", "--host", "web-1"],
      ["secrets", "set", "api"],
      ["secrets", "set", "api", "not-a-name", "v"],
      ["deployments", "-f"],
      ["logs", "web", "--since", "10x"],
    ];
    const runs = await Promise.all(cases.map((args) => cli(args)));
    runs.forEach((run, i) => {
      expect(run.code, cases[i]!.join(" ")).toBe(2);
      expect(run.stderr.length, cases[i]!.join(" ")).toBeGreaterThan(0);
    });
  });
});

describe("apps, secrets, install command", () => {
  test("apps and releases", async () => {
    const list = await cli(["apps", "--json"]);
    expect(list.code).toBe(0);
    expect(json(list).apps.map((a: { name: string }) => a.name)).toEqual(["web", "api"]);
    const table = await cli(["apps"]);
    expect(table.stdout).toMatch(/^APP\s+REPO\s+BRANCH\s+HOSTS/);
    expect(table.stdout).toMatch(/api\s+acme\/api\s+\S+\s+api-1,api-2\s+127\.0\.0\.1:5000\/acme\/api/);
    // no image and no DEPLOYBOT_REGISTRY_URL: nothing is pushed, and the detail says so
    expect((await cli(["apps", "web"])).stdout).toMatch(/image:\s+- \(each host builds it; nothing is pushed\)/);

    const rel = await cli(["releases", "api", "--json"]);
    expect(rel.code).toBe(0);
    expect(json(rel)).toEqual({ releases: [] });
    expect((await cli(["releases", "nope"])).code).toBe(4);

    const routes = await cli(["routes", "api"]);
    expect(routes.code).toBe(0);
    expect(routes.stderr + routes.stdout).toMatch(/app api has no domains: it runs in port mode/);
    expect(json(await cli(["routes", "api", "--json"]))).toEqual({ app: "api", domains: [], routes: [] });
    expect((await cli(["routes", "nope"])).code).toBe(4);
  });

  test("secrets set from stdin and from an argument, list shows names only, rm", async () => {
    const value = "postgres://app:s3cr3t-from-stdin@db/app";
    const set = await cli(["secrets", "set", "api", "DATABASE_URL", "--json"], { input: `${value}\n` });
    expect(set.code).toBe(0);
    expect(json(set).secret).toMatchObject({ key: "DATABASE_URL" });
    expect(set.stdout + set.stderr).not.toContain("s3cr3t");

    const human = await cli(["secrets", "set", "api", "API_KEY", "argument-s3cr3t"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/secret API_KEY of api set/);
    expect(human.stdout + human.stderr).not.toContain("argument-s3cr3t");

    const list = await cli(["secrets", "list", "api", "--json"]);
    expect(list.code).toBe(0);
    expect(json(list).secrets.map((s: { key: string }) => s.key)).toEqual(["API_KEY", "DATABASE_URL"]);
    const table = await cli(["secrets", "list", "api"]);
    expect(table.stdout).toMatch(/^KEY\s+UPDATED/);
    expect(table.stdout).toMatch(/DATABASE_URL/);
    for (const run of [list, table]) expect(run.stdout + run.stderr).not.toContain("s3cr3t");

    // the controller stored what came on stdin, less the newline
    expect(await ctl.services.secrets.valuesFor("api", ["DATABASE_URL"])).toEqual({ DATABASE_URL: value });

    const removed = await cli(["secrets", "rm", "api", "API_KEY", "--json"]);
    expect(removed.code).toBe(0);
    expect(json(removed)).toEqual({ removed: { app: "api", key: "API_KEY" } });
    expect((await cli(["secrets", "rm", "api", "API_KEY"])).code).toBe(4);
    expect((await cli(["secrets", "list", "nope"])).code).toBe(4);
    expect((await cli(["secrets", "set", "api", "EMPTY"], { input: "" })).code).toBe(2);
  });

  test("agents install-command", async () => {
    const run = await cli(["agents", "install-command", "--url", "https://deploy.example.com", "--labels", "builder,eu", "--json"]);
    expect(run.code).toBe(0);
    const body = json(run);
    expect(body.url).toBe("https://deploy.example.com");
    expect(body.command).toMatch(/--labels 'builder,eu'|--labels builder,eu/);
    const human = await cli(["agents", "install-command"]);
    expect(human.code).toBe(0);
    expect(human.stdout.trim().split("\n")).toHaveLength(1);
    expect(human.stdout).toMatch(/v1\/agents\/dist\/install-agent\.sh' \| sudo --preserve-env=DEPLOYBOT_JOIN_TOKEN bash -s -- --url/);
  });
});

describe("deployments", () => {
  test("rollback with nothing to roll back to exits 6; unknown apps exit 4", async () => {
    const none = await cli(["rollback", "web"]);
    expect(none.code).toBe(6);
    expect(none.stderr).toMatch(/no_previous_release: /);
    for (const args of [["rollback", "nope"], ["deploy", "nope", "--detach"], ["deployments", "dep_nope"]]) {
      expect((await cli(args)).code, args.join(" ")).toBe(4);
    }
  });

  test("deploy APP follows to success, releases and rollback", async () => {
    const agent = await fakeAgent("web-1");

    const first = cli(["deploy", "web", "--image", "registry.test/web:1"]);
    const job1 = await agent.run(["pulling registry.test/web:1", "container healthy"]);
    const run1 = await first;
    expect(run1.code, run1.stderr).toBe(0);
    expect(run1.stdout).toBe("pulling registry.test/web:1\ncontainer healthy\n"); // one host: no prefix
    expect(run1.stderr).toMatch(/deployment dep_\S+: web @ registry\.test\/web:1 on web-1: deploying/);
    expect(run1.stderr).toMatch(new RegExp(`web-1: deploy job ${job1.id} succeeded`));
    expect(run1.stderr).toMatch(/deployment dep_\S+ succeeded in /);

    const second = cli(["deploy", "web", "--image", "registry.test/web:2", "--json"]);
    await agent.run(["pulling registry.test/web:2"]);
    const run2 = await second;
    expect(run2.code, run2.stderr).toBe(0);
    const dep2 = json(run2).deployment;
    expect(dep2).toMatchObject({ app: "web", status: "succeeded", image: "registry.test/web:2", hosts: ["web-1"] });
    expect(run2.stderr).toMatch(/pulling registry\.test\/web:2/); // under --json the log goes to stderr

    const rel = await cli(["releases", "web", "--json"]);
    const releases = json(rel).releases as { id: string; version: string; current: boolean }[];
    expect(releases.map((r) => [r.version, r.current])).toEqual([
      ["2", true],
      ["1", false],
    ]);
    const relTable = await cli(["releases", "web"]);
    expect(relTable.stdout).toMatch(new RegExp(`\\*\\s+${releases[0]!.id}\\s+2\\s+-\\s+success`));

    const rollingBack = cli(["rollback", "web", "--json"]);
    const job3 = await agent.run(["rolling back to 1"]);
    const run3 = await rollingBack;
    expect(run3.code, run3.stderr).toBe(0);
    expect(json(run3).deployment).toMatchObject({ trigger: "rollback", status: "succeeded", releaseId: releases[1]!.id, image: "registry.test/web:1" });
    expect(json(run3).deployment.jobs.map((j: { id: string }) => j.id)).toEqual([job3.id]);

    const apps = json(await cli(["apps", "--json"]));
    expect(apps.apps.find((a: { name: string }) => a.name === "web").currentRelease.id).toBe(releases[1]!.id);

    const list = await cli(["deployments", "--app", "web", "--json"]);
    expect(list.code).toBe(0);
    const deps = json(list).deployments as { id: string; trigger: string }[];
    expect(deps.map((d) => d.trigger)).toEqual(["rollback", "api", "api"]);
    expect((await cli(["deployments", "--app", "web"])).stdout).toMatch(/^DEPLOYMENT\s+APP\s+STATUS/);
    const one = await cli(["deployments", dep2.id, "--json"]);
    expect(json(one).deployment.id).toBe(dep2.id);
    // an image pinned by digest fits the VERSION column: the digest is cut to 12 hex digits
    const digest = `sha256:${"0123456789ab".repeat(5)}cdef`;
    const pinned = cli(["deploy", "web", "--image", `registry.test/web@${digest}`, "--detach"]);
    expect((await pinned).code).toBe(0);
    const table = (await cli(["deployments", "--app", "web", "--limit", "1"])).stdout;
    expect(table).toMatch(/\sregistry\.test\/web@sha256:0123456789ab\s/);
    expect(table).not.toContain(digest);
    expect((await cli(["cancel", json(await cli(["deployments", "--app", "web", "--limit", "1", "--json"])).deployments[0].jobs[0].id])).code).toBe(0);

    // the host's app log: the history of its jobs, oldest first
    const history = await cli(["logs", "--host", "web-1", "--app", "web", "--json"]);
    expect(history.code).toBe(0);
    const lines = json(history).jobs.flatMap((j: { entries: { line: string }[] }) => j.entries.map((e) => e.line));
    expect(lines).toEqual(["pulling registry.test/web:1", "container healthy", "pulling registry.test/web:2", "rolling back to 1"]);
    const human = await cli(["logs", "--host", "web-1", "--app", "web"]);
    expect(human.stdout).toMatch(new RegExp(`== job ${job1.id} \\(deploy, succeeded\\)\\npulling registry.test/web:1\\n`));
  });

  test("deploy APP exits 1 when the deployment fails; logs --job -f follows it over SSE", async () => {
    const agent = await fakeAgent("web-1");
    const deploying = cli(["deploy", "web", "--ref", "broken"]);
    const job = await agent.claim();
    const following = cli(["logs", "--job", job.id, "-f"]);
    await agent.status(job.id, job.leaseId, "running");
    await agent.logs(job.id, job.leaseId, 0, ["building", "health check failed"]);
    await sleep(1000);
    await agent.status(job.id, job.leaseId, "failed", "the new container never became healthy");

    const [deployed, followed] = await Promise.all([deploying, following]);
    expect(deployed.code).toBe(1);
    expect(deployed.stdout).toBe("building\nhealth check failed\n");
    expect(deployed.stderr).toMatch(/deployment dep_\S+ failed after .*web-1: the new container never became healthy/);
    expect(followed.code).toBe(1);
    expect(followed.stdout).toBe("building\nhealth check failed\n");
    expect(followed.stderr).toMatch(/failed after .*never became healthy/);

    const detached = await cli(["deploy", "web", "--ref", "later", "--detach"]);
    expect(detached.code).toBe(0);
    const depId = detached.stdout.trim();
    expect(depId).toMatch(/^dep_\S+$/);
    const shown = await cli(["deployments", depId, "--json"]);
    const pending = json(shown).deployment.jobs[0].id as string;
    expect((await cli(["deployments", depId])).stdout).toMatch(new RegExp(`${pending}\\s+deploy\\s+web-1\\s+pending`));
    expect((await cli(["cancel", pending])).code).toBe(0);
  });

  test("deploy APP follows GET /v1/events: it reads the deployment when it changes, never on a timer", async () => {
    const proxy = await countingProxy(ctl.url);
    try {
      const agent = await fakeAgent("web-1");
      const deploying = cli(["deploy", "web", "--image", "registry.test/web:events"], { env: { DEPLOYBOT_URL: proxy.url } });
      await sleep(3000); // nothing happens for a while: a poller would ask every 500 ms
      await agent.run(["pulling"]);
      const run = await deploying;
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toMatch(/deployment dep_\S+ succeeded in /);
      expect(proxy.seen.some((r) => r.startsWith("GET /v1/events?app=web&types=deployment.changed,job.changed"))).toBe(true);
      // once when the stream opens, then once per change (claimed, started, finished, deployment succeeded)
      const reads = proxy.seen.filter((r) => /^GET \/v1\/deployments\/dep_/.test(r));
      expect(reads.length).toBeGreaterThanOrEqual(1);
      expect(reads.length).toBeLessThanOrEqual(5);
    } finally {
      await proxy.close();
    }
  });

  test("deploy APP on several hosts prefixes each log line with its host", async () => {
    const [a1, a2] = await Promise.all([fakeAgent("api-1"), fakeAgent("api-2")]);
    const deploying = cli(["deploy", "api", "--image", "127.0.0.1:5000/acme/api:7"]);
    await Promise.all([a1.run(["started on one"]), a2.run(["started on two"])]);
    const run = await deploying;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split("\n").filter(Boolean).sort()).toEqual(["api-1 | started on one", "api-2 | started on two"]);
    expect(run.stderr).toMatch(/api-1: deploy job \S+ succeeded/);
    expect(run.stderr).toMatch(/api-2: deploy job \S+ succeeded/);
  });

  test("logs --job -f resumes after a dropped connection without losing or repeating a line", async () => {
    const proxy = await cuttableProxy(ctl.url);
    try {
      const agent = await fakeAgent("web-1");
      const deployed = await cli(["deploy", "--repo", "acme/web", "--ref", "resume", "--host", "web-1", "--detach"]);
      const job = await agent.claim();
      expect(job.id).toBe(deployed.stdout.trim());
      await agent.status(job.id, job.leaseId, "running");
      await agent.logs(job.id, job.leaseId, 0, ["one", "two"]);
      const following = cli(["logs", "--job", job.id, "-f", "--json"], { env: { DEPLOYBOT_URL: proxy.url } });
      // cut once the CLI has connected and been sent the first lines (the CLI may start slowly on a busy machine)
      await until("the first lines through the proxy", () => proxy.relayed.includes('"two"'));
      expect(proxy.cutAll()).toBeGreaterThan(0);
      await agent.logs(job.id, job.leaseId, 2, ["three", "four"]);
      await until("the resumed stream to carry line four", () => proxy.relayed.includes('"four"'));
      proxy.cutAll();
      await agent.logs(job.id, job.leaseId, 4, ["five"]);
      await agent.status(job.id, job.leaseId, "succeeded");
      const run = await following;
      expect(run.code, run.stderr).toBe(0);
      expect(json(run).entries.map((e: { line: string }) => e.line)).toEqual(["one", "two", "three", "four", "five"]);
      expect(run.stderr).toMatch(/resuming after line/);
    } finally {
      await proxy.close();
    }
  });
});
