import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../controller/test/server";
import { fakeAgent as makeFakeAgent } from "./fakeAgent";
import { json, runCli } from "./runCli";

// The real binary (see runCli.ts) against a real controller on a loopback port.
// Each run starts node with the bundled CLI (~0.15 s, more on a busy machine); some tests run a dozen.
vi.setConfig({ testTimeout: 60_000 });

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;
let home: string;

const cli = (args: string[], env: Record<string, string | undefined> = {}) => runCli({ url: ctl.url, home }, args, { env });

/** A fake agent that speaks the wire protocol over HTTP, so the CLI sees a job move and log. */
const fakeAgent = (hostname: string) => makeFakeAgent(ctl, hostname);

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  ctl = await startTestController();
  home = mkdtempSync(join(tmpdir(), "deploybot-cli-home-"));
});

afterAll(async () => {
  await ctl?.stop();
});

describe("help and usage", () => {
  test("--help on the top level and every command, each with an example", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/examples:/);
    const names = ["login", "deploy", "status", "logs", "jobs", "cancel", "hosts", "tokens create", "tokens list", "tokens revoke", "agents revoke", "agents remove"];
    const runs = await Promise.all(names.map((n) => cli([...n.split(" "), "--help"])));
    runs.forEach((run, i) => {
      expect(run.code, names[i]).toBe(0);
      expect(run.stdout, names[i]).toMatch(new RegExp(`usage: deploybot ${names[i]}`));
      expect(run.stdout, names[i]).toMatch(/examples:\n {2}deploybot /);
    });
    expect((await cli(["tokens", "--help"])).stdout).toMatch(/tokens create/);
  });

  test("usage errors exit 2", async () => {
    for (const args of [[], ["nope"], ["deploy", "--repo", "acme/web"], ["jobs", "--status", "bogus"], ["jobs", "--limit", "0"], ["status"], ["hosts", "--frobnicate"], ["tokens", "create", "--name", "x", "--scope", "root"]]) {
      const run = await cli(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr.length, args.join(" ")).toBeGreaterThan(0);
    }
  });
});

describe("login", () => {
  test("stores url and token with private modes, and later commands use them", async () => {
    const fresh = mkdtempSync(join(tmpdir(), "deploybot-cli-login-"));
    const env = { HOME: fresh, XDG_CONFIG_HOME: join(fresh, "xdg"), DEPLOYBOT_URL: undefined, DEPLOYBOT_TOKEN: undefined };

    const before = await cli(["hosts"], env);
    expect(before.code).toBe(3);
    expect(before.stderr).toMatch(/not logged in/);

    const login = await cli(["login", "--url", `${ctl.url}/`, "--token", ADMIN], env);
    expect(login.code).toBe(0);
    expect(login.stdout).toMatch(/logged in/);
    const file = join(fresh, "xdg", "deploybot", "config.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ url: ctl.url, token: ADMIN });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(fresh, "xdg", "deploybot")).mode & 0o777).toBe(0o700);

    const hosts = await cli(["hosts", "--json"], env);
    expect(hosts.code).toBe(0);
    expect(Array.isArray(json(hosts).hosts)).toBe(true);

    // the environment wins over the stored login
    const overridden = await cli(["hosts"], { ...env, DEPLOYBOT_TOKEN: "wrong" });
    expect(overridden.code).toBe(3);
  });

  test("a refused token is reported and nothing is stored", async () => {
    const fresh = mkdtempSync(join(tmpdir(), "deploybot-cli-login-"));
    const run = await cli(["login", "--url", ctl.url, "--token", "wrong"], { HOME: fresh, XDG_CONFIG_HOME: undefined });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/unauthorized/);
    expect(() => statSync(join(fresh, ".config", "deploybot", "config.json"))).toThrow();
  });

  test("login --json says what was stored, without the token", async () => {
    const fresh = mkdtempSync(join(tmpdir(), "deploybot-cli-login-"));
    const run = await cli(["login", "--url", ctl.url, "--token", ADMIN, "--json"], { HOME: fresh, XDG_CONFIG_HOME: undefined });
    expect(run.code).toBe(0);
    const body = json(run);
    expect(body.url).toBe(ctl.url);
    expect(body.configFile).toBe(join(fresh, ".config", "deploybot", "config.json"));
    expect(run.stdout).not.toContain(ADMIN);
  });
});

describe("errors", () => {
  test("a bad token exits 3", async () => {
    const run = await cli(["jobs"], { DEPLOYBOT_TOKEN: "not-a-token" });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/unauthorized: /);
  });

  test("an unreachable controller exits 5 and names the URL", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const run = await cli(["hosts"], { DEPLOYBOT_URL: url });
    expect(run.code).toBe(5);
    expect(run.stderr).toContain(url);
    expect(run.stderr).toMatch(/ECONNREFUSED/);
  });

  test("a DEPLOYBOT_URL that is no http(s) URL is a usage error (exit 2), checked as login --url is", async () => {
    const notUrl = await cli(["hosts"], { DEPLOYBOT_URL: "notaurl" });
    expect(notUrl.code).toBe(2);
    expect(notUrl.stderr).toContain("DEPLOYBOT_URL 'notaurl' is not a URL (try http://HOST:8080)");
    const ftp = await cli(["hosts"], { DEPLOYBOT_URL: "ftp://deploy.example.test" });
    expect(ftp.code).toBe(2);
    expect(ftp.stderr).toContain("DEPLOYBOT_URL must be http:// or https://");
  });

  test("an unknown job exits 4 for status, logs and cancel", async () => {
    for (const args of [["status", "job_nope"], ["logs", "--job", "job_nope"], ["cancel", "job_nope"]]) {
      const run = await cli(args);
      expect(run.code, args.join(" ")).toBe(4);
      expect(run.stderr, args.join(" ")).toMatch(/not_found: job 'job_nope' does not exist/);
    }
  });

  test("an app's output on a host it does not run on (a typo) exits 4 at once, following or not", async () => {
    for (const args of [["logs", "web", "--host", "web-9"], ["logs", "web", "--host", "web-9", "-f"]]) {
      const run = await cli(args);
      expect(run.code, args.join(" ")).toBe(4);
      expect(run.stderr, args.join(" ")).toMatch(/unknown_host: app 'web' has no output from host 'web-9'.*its hosts: web-1/);
    }
    const quiet = await cli(["logs", "web", "--host", "web-1"]);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toMatch(/no output from web on web-1 yet/);
  });

  test("a value the controller refuses (400) is a usage error: exit 2 with code: message", async () => {
    const app = await cli(["deploy", "../etc", "--ref", "main", "--detach"]);
    expect(app.code).toBe(2);
    expect(app.stderr).toMatch(/^deploybot deploy: invalid_body: invalid 'app': /);
    const cursor = await cli(["jobs", "--cursor", "bogus"]);
    expect(cursor.code).toBe(2);
    expect(cursor.stderr).toContain("invalid_query: invalid 'cursor'");
    // parseArgs calls `--limit -5` ambiguous; the message says how to give such a value
    const dash = await cli(["jobs", "--limit", "-5"]);
    expect(dash.code).toBe(2);
    expect(dash.stderr).toContain("--limit takes a value; one starting with '-' is written --limit=VALUE");
    expect((await cli(["jobs", "--limit=-5"])).stderr).toContain("--limit must be a whole number from 1 to 200, got '-5'");
  });

  test("other API errors exit 6 with code: message", async () => {
    const run = await cli(["deploy", "--repo", "acme/unknown", "--ref", "main", "--host", "web-1", "--detach"]);
    expect(run.code).toBe(6);
    expect(run.stderr).toMatch(/deploybot deploy: [a-z_]+: /);
  });
});

describe("jobs", () => {
  test("deploy --detach, status, jobs, cancel", async () => {
    const detached = await cli(["deploy", "--repo", "acme/web", "--ref", "detached", "--host", "web-1", "--detach", "--json"]);
    expect(detached.code).toBe(0);
    const { job } = json(detached);
    expect(job).toMatchObject({ app: "web", status: "pending", target: { host: "web-1" } });

    // human --detach: the id alone on stdout; an identical active job is reused, not duplicated
    const again = await cli(["deploy", "--repo", "acme/web", "--ref", "detached", "--host", "web-1", "--detach"]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(job.id);
    expect(again.stderr).toMatch(/already active/);

    const status = await cli(["status", job.id, "--json"]);
    expect(status.code).toBe(0);
    expect(json(status).job).toMatchObject({ id: job.id, status: "pending" });
    const human = await cli(["status", job.id]);
    expect(human.stdout).toMatch(/status:\s+pending/);
    expect(human.stdout).toMatch(/ref:\s+detached/);
    expect(human.stdout).toMatch(/attempts:\s+0 of at most 3\n/);

    const list = await cli(["jobs", "--status", "pending", "--host", "web-1", "--app", "web", "--limit", "10", "--json"]);
    expect(list.code).toBe(0);
    expect(json(list).jobs.map((j: { id: string }) => j.id)).toContain(job.id);
    const table = await cli(["jobs"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^JOB\s+STATUS\s+APP\s+KIND\s+REF\s+TARGET\s+CREATED\s+DURATION$/);
    expect(table.stdout).toMatch(new RegExp(`${job.id}\\s+pending\\s+web\\s+deploy\\s+detached\\s+web-1`));
    expect(table.stdout).not.toContain("\x1b["); // piped: no colour

    const cancel = await cli(["cancel", job.id, "--json"]);
    expect(cancel.code).toBe(0);
    expect(json(cancel).job.status).toBe("cancelled");
    expect((await cli(["cancel", job.id])).stdout).toMatch(/cancelled/);
    expect((await cli(["status", job.id])).stdout).toMatch(/attempts:\s+0\n/);
  });

  test("deploy follows the log live and exits 0 when the job succeeds", async () => {
    const agent = await fakeAgent("web-1");
    const running = cli(["deploy", "--repo", "acme/web", "--ref", "main", "--host", "web-1"]);
    const claimed = await agent.claim();
    expect((await agent.status(claimed.id, claimed.leaseId, "running")).status).toBe(200);
    expect((await agent.logs(claimed.id, claimed.leaseId, 0, ["cloning acme/web", "building image"])).status).toBe(200);
    await sleep(800); // at least one poll sees the job running with lines
    expect((await agent.logs(claimed.id, claimed.leaseId, 2, ["container healthy"])).status).toBe(200);
    expect((await agent.status(claimed.id, claimed.leaseId, "succeeded")).status).toBe(200);

    const run = await running;
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("cloning acme/web\nbuilding image\ncontainer healthy\n");
    expect(run.stderr).toMatch(new RegExp(`job ${claimed.id} succeeded`));

    const logs = await cli(["logs", "--job", claimed.id]);
    expect(logs.stdout).toBe("cloning acme/web\nbuilding image\ncontainer healthy\n");
    const logsJson = await cli(["logs", claimed.id, "--json"]);
    expect(json(logsJson)).toMatchObject({ jobId: claimed.id, finished: true, next: 2 });
    expect(json(logsJson).entries.map((e: { line: string }) => e.line)).toEqual(["cloning acme/web", "building image", "container healthy"]);
  });

  test("deploy --json and logs -f exit 1 when the job fails", async () => {
    const agent = await fakeAgent("web-1");
    const deploying = cli(["deploy", "--repo", "acme/web", "--ref", "broken", "--host", "web-1", "--json"]);
    const claimed = await agent.claim();
    const following = cli(["logs", "--job", claimed.id, "-f"]);
    await agent.status(claimed.id, claimed.leaseId, "running");
    await agent.logs(claimed.id, claimed.leaseId, 0, ["health check failed"]);
    await sleep(600);
    await agent.status(claimed.id, claimed.leaseId, "failed", "the new container never became healthy");

    const [deployed, followed] = await Promise.all([deploying, following]);
    expect(deployed.code).toBe(1);
    expect(json(deployed).job).toMatchObject({ id: claimed.id, status: "failed", error: "the new container never became healthy" });
    expect(deployed.stderr).toMatch(/health check failed/); // under --json the log streams to stderr
    expect(deployed.stderr).toMatch(/failed after .*never became healthy/);
    expect(followed.code).toBe(1);
    expect(followed.stdout).toBe("health check failed\n");
  });
});

describe("hosts, tokens and agents", () => {
  test("hosts lists registered agents", async () => {
    await fakeAgent("web-1");
    const run = await cli(["hosts", "--json"]);
    expect(run.code).toBe(0);
    expect(json(run).hosts.find((h: { hostname: string }) => h.hostname === "web-1")).toMatchObject({ online: true });
    const table = await cli(["hosts"]);
    expect(table.stdout).toMatch(/^HOST\s+ONLINE\s+STATE/);
    expect(table.stdout).toMatch(/web-1\s+online\s+idle/);
  });

  test("tokens create, list and revoke; scopes are enforced", async () => {
    const created = await cli(["tokens", "create", "--name", "ci-read", "--scope", "read", "--json"]);
    expect(created.code).toBe(0);
    const token = json(created);
    expect(token).toMatchObject({ name: "ci-read", scope: "read" });
    expect(token.token).toMatch(/^dbt_/);

    const human = await cli(["tokens", "create", "--name", "ci-deploy", "--scope", "deploy"]);
    expect(human.stdout).toMatch(/token:\s+dbt_/);
    expect(human.stderr).toMatch(/store the token now/);

    expect((await cli(["jobs"], { DEPLOYBOT_TOKEN: token.token })).code).toBe(0);
    const forbidden = await cli(["deploy", "--repo", "acme/web", "--ref", "main", "--host", "web-1", "--detach"], { DEPLOYBOT_TOKEN: token.token });
    expect(forbidden.code).toBe(3);
    expect(forbidden.stderr).toMatch(/forbidden: /);

    const list = await cli(["tokens", "list", "--json"]);
    expect(json(list).tokens.map((t: { id: string }) => t.id)).toContain(token.id);
    expect(list.stdout).not.toContain(token.token);
    expect((await cli(["tokens", "list"])).stdout).toMatch(new RegExp(`${token.id}\\s+ci-read\\s+read`));

    const revoked = await cli(["tokens", "revoke", token.id, "--json"]);
    expect(revoked.code).toBe(0);
    expect(json(revoked).revokedAt).not.toBeNull();
    expect((await cli(["jobs"], { DEPLOYBOT_TOKEN: token.token })).code).toBe(3);
    expect((await cli(["tokens", "revoke", "tok_nope"])).code).toBe(4);
  });

  test("tokens create --apps limits a token to apps; agents join-token registers one new host once", async () => {
    const limited = json(await cli(["tokens", "create", "--name", "ci-web", "--scope", "deploy", "--apps", "web", "--json"]));
    expect(limited.apps).toEqual(["web"]);
    const other = await cli(["deploy", "--repo", "acme/api", "--ref", "main", "--host", "api-1", "--detach"], { DEPLOYBOT_TOKEN: limited.token });
    expect(other.code).toBe(3);
    expect(other.stderr).toMatch(/limited to app web/);

    const created = await cli(["agents", "join-token", "--host", "web-5"]);
    expect(created.code).toBe(0);
    const joinToken = created.stdout.trim();
    expect(joinToken).toMatch(/^djt_/);
    expect((await ctl.call("POST", "/v1/agents/register", joinToken, { hostname: "web-6" })).status).toBe(403);
    expect((await ctl.call("POST", "/v1/agents/register", joinToken, { hostname: "web-5" })).status).toBe(200);
    expect((await ctl.call("POST", "/v1/agents/register", joinToken, { hostname: "web-5" })).status).toBe(401);
    expect((await cli(["agents", "join-token", "--ttl", "soon"])).code).toBe(2);
  });

  test("agents revoke and remove a host", async () => {
    await fakeAgent("web-9");
    const revoked = await cli(["agents", "revoke", "web-9", "--json"]);
    expect(revoked.code).toBe(0);
    expect(json(revoked).agent).toMatchObject({ hostname: "web-9", online: false });
    expect((await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: "web-9" })).status).toBe(403);

    const removed = await cli(["agents", "remove", "web-9"]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toMatch(/web-9 removed/);
    expect((await cli(["agents", "revoke", "web-9"])).code).toBe(4);
  });

  test("a deploy, and the status of a job, say why it waits: a host offline, or one no agent registered as", async () => {
    await fakeAgent("api-1");
    expect((await cli(["agents", "revoke", "api-1"])).code).toBe(0);
    expect((await cli(["secrets", "set", "api", "DATABASE_URL", "postgres://db"])).code).toBe(0);
    // api builds on its first host, api-1: the deploy follows until killed, the build stays pending
    const deploying = await runCli({ url: ctl.url, home }, ["deploy", "api"], { timeoutMs: 8_000 });
    expect(deploying.stderr).toMatch(/host 'api-1' is offline \(last heard from .* ago\): its jobs wait until its agent is back/);

    // the single-job form says so too, while it follows
    const single = await runCli({ url: ctl.url, home }, ["deploy", "--repo", "acme/api", "--ref", "main", "--host", "api-2"], { timeoutMs: 8_000 });
    expect(single.stderr).toMatch(/no agent called 'api-2' has registered: its jobs wait until one does/);

    const queued = await cli(["deploy", "--repo", "acme/api", "--ref", "main", "--host", "api-2", "--detach", "--json"]);
    expect(queued.code, queued.stderr).toBe(0);
    const status = await cli(["status", json(queued).job.id]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/status:\s+pending/);
    expect(status.stderr).toMatch(/no agent called 'api-2' has registered: its jobs wait until one does/);
  });
});
