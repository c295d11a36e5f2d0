import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor, waitForHostOnline } from "../harness/processes";
import { BASE_IMAGE, describeDocker, removeAppContainers, uniqueName } from "../support/docker";

const FINAL = ["succeeded", "failed", "cancelled", "lost", "timed_out"];
const SECRET_VALUE = "restored-secret-value-7f3a";

/**
 * A backup taken with `deploybot db backup` while deploys and runs go on (jobs claimed and
 * finishing, logs streaming), restored the way README says into a fresh data dir: the controller
 * starts on it and keeps its tokens, apps, secrets and releases, and the same agent carries on.
 */
describeDocker("backup while deploys run, restored into a fresh controller (controller + agent processes, real engine)", () => {
  const app = uniqueName("bk");
  const host = uniqueName("bkhost");
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  let stopped = false;

  const get = async (path: string, token?: string) => {
    const res = await fetch(ctl.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, body: await res.json() };
  };
  const finished = async (deploymentId: string) =>
    waitFor(`deployment ${deploymentId}`, async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${deploymentId}`);
      return FINAL.includes(body.deployment.status) ? body.deployment : undefined;
    });

  beforeAll(async () => {
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    hosts: [${host}]
    run:
      command: [sleep, "3600"]
      secrets: [API_KEY]
      restart: "no"
`);
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    stopped = true;
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(app);
  });

  it("keeps tokens, apps, secrets and releases, and the agent carries on", async () => {
    expect((await ctl.api("PUT", `/v1/apps/${app}/secrets/API_KEY`, { value: SECRET_VALUE })).status).toBe(200);
    const readToken = (await ctl.api("POST", "/v1/tokens", { name: "restore-read", scope: "read" })).body.token as string;
    const first = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    expect(first.status).toBe(201);
    expect((await finished(first.body.deployment.id)).status).toBe("succeeded");
    const releasesBefore = (await get(`/v1/apps/${app}/releases`, readToken)).body.releases as { id: string }[];
    expect(releasesBefore.length).toBeGreaterThan(0);
    const agentId = (await ctl.api("GET", "/v1/hosts")).body.hosts.find((h: { hostname: string }) => h.hostname === host).agentId;

    // work in flight: runs streaming log lines one after another, and a second deploy queued behind them
    let busy = true;
    const runIds: string[] = [];
    const load = (async () => {
      while (busy && !stopped) {
        const created = await ctl.api("POST", `/v1/apps/${app}/runs`, { command: ["sh", "-c", "for i in $(seq 1 60); do echo line $i; sleep 0.05; done"] });
        expect(created.status).toBe(201);
        runIds.push(created.body.run.id);
        await waitFor("the run to end", async () => {
          const { body } = await ctl.api("GET", `/v1/runs/${created.body.run.id}`);
          return [...FINAL, "missed", "skipped"].includes(body.run.status) ? true : undefined;
        });
      }
    })().then(
      () => null,
      (err: Error) => err,
    );
    // back up while a run is running and has sent some of its lines
    await waitFor("a run streaming its log", async () => {
      const id = runIds.at(-1);
      if (!id) return undefined;
      const { body } = await ctl.api("GET", `/v1/runs/${id}`);
      if (body.run.status !== "running" || !body.run.jobId) return undefined;
      const logs = await ctl.api("GET", `/v1/jobs/${body.run.jobId}/logs?limit=1000`);
      return logs.body.entries.length >= 5 ? true : undefined;
    });
    const second = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    const home = mkdtempSync(join(tmpdir(), "deploybot-bk-cli-"));
    const backupFile = join(home, "deploybot-backup.db");
    const backup = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", backupFile, "--json"], { env: { DEPLOYBOT_TOKEN: ADMIN } });
    expect(backup.code, backup.stderr).toBe(0);
    expect(JSON.parse(backup.stdout)).toMatchObject({ path: backupFile, integrity: "ok" });
    busy = false;
    expect(await load).toBeNull();
    await finished(second.body.deployment.id);

    const copy = new Database(backupFile, { readonly: true });
    expect(copy.pragma("integrity_check", { simple: true })).toBe("ok");
    // the copy was taken mid-flight: some job of the load is not final in it
    const open = copy.prepare("SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'assigned', 'running')").get() as { n: number };
    copy.close();
    expect(open.n).toBeGreaterThan(0);

    // restore, as README says: stop, put the backup (and the same secret key) in a fresh data dir, start
    await ctl.stop();
    const fresh = mkdtempSync(join(tmpdir(), "deploybot-bk-restored-"));
    copyFileSync(backupFile, join(fresh, "deploybot.db"));
    copyFileSync(join(ctl.dir, "secret.key"), join(fresh, "secret.key"));
    await ctl.start({ DEPLOYBOT_DB: join(fresh, "deploybot.db") });
    expect((await fetch(`${ctl.url}/readyz`)).status).toBe(200);

    // tokens, apps and releases
    const apps = await get("/v1/apps", readToken);
    expect(apps.status).toBe(200);
    expect(apps.body.apps.map((a: { name: string }) => a.name)).toContain(app);
    const releasesAfter = (await get(`/v1/apps/${app}/releases`, readToken)).body.releases as { id: string }[];
    expect(releasesAfter.map((r) => r.id)).toEqual(expect.arrayContaining(releasesBefore.map((r) => r.id)));

    // the same agent, not a new registration, and every job it was said to hold ends
    await waitFor("the agent back online", async () => {
      const h = (await ctl.api("GET", "/v1/hosts")).body.hosts.find((x: { hostname: string; online: boolean }) => x.hostname === host && x.online);
      return h ? h : undefined;
    });
    expect((await ctl.api("GET", "/v1/hosts")).body.hosts.find((h: { hostname: string }) => h.hostname === host).agentId).toBe(agentId);
    await waitFor("no job left open from before the restore", async () => {
      const { body } = await ctl.api("GET", `/v1/jobs?limit=200`);
      return body.jobs.every((j: { status: string }) => FINAL.includes(j.status)) ? true : undefined;
    }, 180_000);

    // the secret still opens and reaches the agent: a run checks it without printing it
    const check = await ctl.api("POST", `/v1/apps/${app}/runs`, { command: ["sh", "-c", `test "$API_KEY" = "${SECRET_VALUE}" && echo secret-ok`] });
    expect(check.status).toBe(201);
    const run = await waitFor("the secret check", async () => {
      const { body } = await ctl.api("GET", `/v1/runs/${check.body.run.id}`);
      return FINAL.includes(body.run.status) ? body.run : undefined;
    });
    expect(run).toMatchObject({ status: "succeeded", exitCode: 0 });
    // and a new deploy goes through on the restored controller
    const third = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    expect((await finished(third.body.deployment.id)).status).toBe("succeeded");
  });
});
