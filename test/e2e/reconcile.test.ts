import http from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor, waitForHostOnline } from "../harness/processes";
import {
  BASE_IMAGE,
  containersWithLabels,
  describeDocker,
  engineRequest,
  freePort,
  httpGet,
  makeGitRepo,
  removeAppContainers,
  type TestGitRepo,
  testAppFiles,
  uniqueName,
} from "../support/docker";

const SECRET = `s3cret-${Math.random().toString(36).slice(2)}`;

interface AppEventWire {
  kind: string;
  reason: string;
  at: string;
  host: string;
}

/**
 * Keeping apps running, with real controller and agent processes on the real engine: a killed
 * container comes back, a crash loop backs off, the agent recovers apps while the controller is
 * down, a stopped app stays stopped, an agent restart leaves healthy containers alone, and
 * managed containers nobody wants are removed while unmanaged and other hosts' ones are not.
 */
describeDocker("reconcile: desired state kept by the agent (controller + agent processes, real engine)", () => {
  const web = uniqueName("rweb");
  const crash = uniqueName("rcrash");
  const talker = uniqueName("rtalk");
  const host = uniqueName("rhost");
  const repos: TestGitRepo[] = [];
  const foreign: string[] = [];
  let port: number;
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  let crashDeployedAt = 0;

  const containerOf = async (app: string) => (await containersWithLabels([`deploybot.app=${app}`, `deploybot.host=${host}`])).filter((c) => !c.Labels["deploybot.role"]);
  const inspect = async (id: string) => JSON.parse((await engineRequest("GET", `/containers/${id}/json`)).body) as { Id: string; State: { Running: boolean; StartedAt: string; Status: string } };
  const statusOf = async (app: string) => {
    const { body } = await ctl.api("GET", `/v1/apps/${app}`);
    return body.app.status.find((s: { host: string }) => s.host === host);
  };
  const events = async (app: string): Promise<AppEventWire[]> => (await ctl.api("GET", `/v1/apps/${app}/events?limit=200`)).body.events;
  const deploy = async (app: string) => {
    const res = await ctl.api("POST", "/v1/deployments", { app });
    expect(res.status).toBe(201);
    return waitFor(`deployment of ${app}`, async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${res.body.deployment.id}`);
      return ["succeeded", "failed", "cancelled"].includes(body.deployment.status) ? body.deployment : undefined;
    });
  };
  const operate = async (app: string, op: string, body: Record<string, unknown> = {}) => {
    const res = await ctl.api("POST", `/v1/apps/${app}/${op}`, body);
    expect(res.status).toBe(201);
    return Promise.all(
      res.body.jobs.map((j: { id: string }) =>
        waitFor(`${op} job ${j.id}`, async () => {
          const { body: answer } = await ctl.api("GET", `/v1/jobs/${j.id}`);
          return ["succeeded", "failed", "cancelled", "lost", "timed_out"].includes(answer.job.status) ? answer.job : undefined;
        }),
      ),
    );
  };
  const serving = () => waitFor("web to answer", async () => ((await httpGet(port, "/health"))?.status === 200 ? true : undefined), 120_000);
  const restartAgent = async () => {
    expect(await agent.stop()).toBe(0);
    agent.start();
  };

  beforeAll(async () => {
    port = await freePort();
    const webRepo = await makeGitRepo();
    const crashRepo = await makeGitRepo();
    const talkRepo = await makeGitRepo();
    repos.push(webRepo, crashRepo, talkRepo);
    // a numbered line every 200 ms (stderr every 10th): a gap or a repeat shows in the numbers
    await talkRepo.commit(
      { Dockerfile: `FROM ${BASE_IMAGE}\nCMD ["sh", "-c", "trap 'exit 0' TERM; echo \\"key=$API_KEY\\"; i=0; while true; do if [ $((i % 10)) = 0 ]; then echo \\"n=$i\\" >&2; else echo \\"n=$i\\"; fi; i=$((i+1)); sleep 0.2; done"]\n` },
      "talk",
    );
    await webRepo.commit(testAppFiles("v1", { salt: web }), "v1");
    // Up long enough to pass the deploy's 2 s settle time, then exits 3: a crash loop.
    await crashRepo.commit({ Dockerfile: `FROM ${BASE_IMAGE}\nCMD ["sh", "-c", "echo boot; sleep 4; echo dying >&2; exit 3"]\n` }, "crash");
    ctl = await controllerProcess(`
apps:
  - name: ${web}
    repo: acme/${web}
    url: ${webRepo.url}
    hosts: [${host}]
    run:
      ports: ["127.0.0.1:${port}:80"]
      healthcheck: { path: /health, port: 80, timeout_seconds: 10, period_seconds: 2, failure_threshold: 2 }
  - name: ${crash}
    repo: acme/${crash}
    url: ${crashRepo.url}
    hosts: [${host}]
  - name: ${talker}
    repo: acme/${talker}
    url: ${talkRepo.url}
    hosts: [${host}]
    run:
      secrets: [API_KEY]
`);
    agent = agentProcess(ctl.url, host, { DEPLOYBOT_RECONCILE_INTERVAL_SECONDS: "1" });
    await waitForHostOnline(ctl, host);
    // The crash loop runs through the whole file: two minutes of it are asserted at the end.
    expect((await deploy(crash)).status).toBe("succeeded");
    crashDeployedAt = Date.now();
    expect((await deploy(web)).status).toBe("succeeded");
    expect((await ctl.api("PUT", `/v1/apps/${talker}/secrets/API_KEY`, { value: SECRET })).status).toBe(200);
    expect((await deploy(talker)).status).toBe("succeeded");
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(web);
    await removeAppContainers(crash);
    await removeAppContainers(talker);
    for (const id of foreign) await engineRequest("DELETE", `/containers/${id}?force=1`).catch(() => undefined);
    for (const r of repos) await r.cleanup();
  });

  it("docker kill of a container: running and healthy again, the restart in status and events", async () => {
    await serving();
    const [before] = await containerOf(web);
    await engineRequest("POST", `/containers/${before!.Id}/kill`);
    await waitFor("the killed container to run again", async () => ((await inspect(before!.Id)).State.Running ? true : undefined), 60_000);
    await serving();
    const status = await waitFor("the restart in status", async () => {
      const s = await statusOf(web);
      return s?.actual.restarts >= 1 && s.actual.healthy === 1 ? s : undefined;
    });
    expect(status).toMatchObject({ desired: { state: "running", replicas: 1 }, actual: { running: 1, lastExitCode: 137 } });
    expect(status.actual.lastReason).toMatch(/killed/);
    const seen = await waitFor("exit and restart events", async () => {
      const list = await events(web);
      return list.some((e) => e.kind === "restarted") ? list : undefined;
    });
    expect(seen.find((e) => e.kind === "exited")?.reason).toMatch(/killed \(exit code 137.*restarting in 10 s/);
    // and on the controller's event stream, from its start
    const stream = await readEvents(ctl.url, `app=${web}&after=0`, (text) => /event: app\.desired/.test(text) && /event: app\.reconciled\ndata: .*"kind":"restarted"/.test(text));
    expect(stream).toMatch(/event: app\.desired/);
    expect(stream).toMatch(/event: app\.reconciled\ndata: .*"kind":"restarted"/);
  });

  it("an agent restart does not restart healthy containers; runtime logs followed live across it lose and repeat nothing", async () => {
    const followedAt = Date.now();
    const live = followAppLogs(ctl.url, talker);
    await waitFor("live lines of the talker", async () => (live.lines.filter((l) => Date.parse(l.ts) > followedAt).length >= 10 ? true : undefined), 60_000);
    const stoppingAt = Date.now();
    const [before] = await containerOf(web);
    const startedAt = (await inspect(before!.Id)).State.StartedAt;
    await restartAgent();
    await waitFor("the agent back online", async () => {
      const { body } = await ctl.api("GET", "/v1/hosts");
      return body.hosts.find((h: { hostname: string; online: boolean; lastHeartbeatAt: string }) => h.hostname === host && h.online) ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 4000)); // several reconcile passes at 1 s
    const after = await containerOf(web);
    expect(after.map((c) => c.Id)).toEqual([before!.Id]);
    expect((await inspect(before!.Id)).State.StartedAt).toBe(startedAt);

    const restartedAt = Date.now();
    await waitFor("live lines written after the restart", async () => (live.lines.some((l) => l.receivedAt > restartedAt + 3000) ? true : undefined), 60_000);
    live.stop();
    const numbered = live.lines.filter((l) => l.line.startsWith("n="));
    const numbers = numbered.map((l) => Number(/^n=(\d+)$/.exec(l.line)?.[1]));
    expect(numbers.every((n) => Number.isInteger(n))).toBe(true);
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0]! + i)); // consecutive: none lost, none twice
    expect(numbered.filter((l) => l.stream === "stderr").every((l) => Number(l.line.slice(2)) % 10 === 0)).toBe(true);
    // How long a line took from the container to this reader while the agent ran (not the
    // replayed history, not the restart's gap): a figure for the report, bounded loosely here.
    const steady = live.lines.filter((l) => Date.parse(l.ts) > followedAt && Date.parse(l.ts) < stoppingAt);
    const delays = steady.map((l) => l.receivedAt - Date.parse(l.ts)).sort((a, b) => a - b);
    console.log(`app log delay over ${delays.length} live lines: median ${delays[Math.floor(delays.length / 2)]} ms, max ${delays.at(-1)} ms`);
    expect(delays[Math.floor(delays.length / 2)]).toBeLessThan(10_000);
  });

  it("controller down for 60 s: the agent still brings a killed app back from its cached state", async () => {
    await ctl.stop();
    const [before] = await containerOf(web);
    await engineRequest("POST", `/containers/${before!.Id}/kill`);
    await waitFor("the app back without the controller", async () => ((await inspect(before!.Id)).State.Running ? true : undefined), 60_000);
    await serving();
    // the rest of the minute: the agent keeps going (and queues its events) with nobody to talk to
    const downFor = 60_000;
    await new Promise((r) => setTimeout(r, Math.max(0, downFor - 20_000)));
    await ctl.start();
    // events made while the controller was away arrive once it is back
    await waitFor("the queued events", async () => ((await events(web)).filter((e) => e.kind === "restarted").length >= 2 ? true : undefined), 60_000);
  });

  it("managed containers nobody wants are removed; other hosts' and unmanaged ones are never touched", async () => {
    const create = async (labels: Record<string, string>) => {
      const res = await fetchEngine("POST", `/containers/create?name=${uniqueName("rforeign")}`, { Image: BASE_IMAGE, Cmd: ["sleep", "600"], Labels: labels });
      const id = (JSON.parse(res) as { Id: string }).Id;
      foreign.push(id);
      await engineRequest("POST", `/containers/${id}/start`);
      return id;
    };
    const orphan = await create({ "deploybot.managed": "true", "deploybot.app": uniqueName("ghost"), "deploybot.host": host, "deploybot.job": "x", "deploybot.release": "x" });
    const otherHost = await create({ "deploybot.managed": "true", "deploybot.app": web, "deploybot.host": uniqueName("other"), "deploybot.job": "x", "deploybot.release": "x" });
    const unmanaged = await create({ "deploybot.app": web });
    await waitFor("the orphan removed", async () => ((await engineRequest("GET", `/containers/${orphan}/json`)).status === 404 ? true : undefined), 30_000);
    expect((await inspect(otherHost)).State.Running).toBe(true);
    expect((await inspect(unmanaged)).State.Running).toBe(true);
  });

  it("a stopped app stays stopped through reconcile passes and an agent restart; start brings it back", async () => {
    const [job] = await operate(web, "stop");
    expect(job.status).toBe("succeeded");
    const [c] = await containerOf(web);
    expect((await inspect(c!.Id)).State.Running).toBe(false);
    await new Promise((r) => setTimeout(r, 4000));
    await restartAgent();
    await new Promise((r) => setTimeout(r, 5000));
    expect((await inspect(c!.Id)).State.Running).toBe(false);
    expect((await statusOf(web)).desired).toMatchObject({ state: "stopped" });
    const [started] = await operate(web, "start");
    expect(started.status).toBe("succeeded");
    // The heartbeat that reported the start counted the new container's health on the same
    // listing: not "1 up, 0 healthy" (the status of the pass before the start) until a later one.
    expect((await statusOf(web)).actual).toMatchObject({ running: 1, healthy: 1 });
    await serving();
  });

  it("a crash loop backs off: at most 5 restarts in 2 minutes, the waits doubling", async () => {
    // measured from the first exit, whatever the other tests took
    const list = await waitFor(
      "two minutes of crash loop",
      async () => {
        const all = (await events(crash)).reverse();
        const first = all.find((e) => e.kind === "exited");
        if (!first || Date.now() - Date.parse(first.at) < 125_000) return undefined;
        return all.filter((e) => Date.parse(e.at) <= Date.parse(first.at) + 120_000);
      },
      240_000,
      1000,
    );
    const restarts = list.filter((e) => e.kind === "restarted");
    expect(restarts.length).toBeGreaterThanOrEqual(2);
    expect(restarts.length).toBeLessThanOrEqual(5);
    const waits = list.filter((e) => e.kind === "exited").map((e) => Number(/restarting in (\d+) s/.exec(e.reason)?.[1]));
    expect(waits.slice(0, 3)).toEqual([10, 20, 40]);
    // every talker line stored once, in order, across two agent restarts and a controller outage
    const stored: { id: number; line: string; host: string }[] = [];
    for (let after = 0; ; ) {
      const { body } = await ctl.api("GET", `/v1/apps/${talker}/logs?after=${after}`);
      stored.push(...body.lines);
      if (body.lines.length === 0) break;
      after = body.next;
    }
    // secrets are redacted like job logs (the engine may order the first stdout and stderr lines either way)
    expect(stored.slice(0, 3).map((l) => l.line)).toContain("key=********");
    expect(JSON.stringify(stored)).not.toContain(SECRET);
    const ns = stored.filter((l) => l.line.startsWith("n=")).map((l) => Number(l.line.slice(2)));
    expect(ns.length).toBeGreaterThan(300);
    expect(ns).toEqual(ns.map((_, i) => ns[0]! + i));
    expect(new Set(stored.map((l) => l.host))).toEqual(new Set([host]));
    const status = await statusOf(crash);
    expect(status.actual.restarts).toBeGreaterThanOrEqual(2);
    expect(status.actual.lastExitCode).toBe(3);
    expect(Date.now() - crashDeployedAt).toBeGreaterThan(120_000);
  });
});

/** POST with a JSON body to the engine (the shared helper only sends bodiless requests). */
async function fetchEngine(method: string, apiPath: string, body: unknown): Promise<string> {
  const host = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  const socketPath = host.startsWith("unix://") ? host.slice("unix://".length) : "/var/run/docker.sock";
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ socketPath, method, path: apiPath, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
    req.on("error", reject);
    req.end(data);
  });
}

interface LiveLine {
  id: number;
  ts: string;
  stream: string;
  line: string;
  receivedAt: number;
}

/** Follows `GET /v1/apps/{app}/logs?follow=1` (SSE), reconnecting with Last-Event-ID, until stopped. */
function followAppLogs(url: string, app: string): { lines: LiveLine[]; stop(): void } {
  const lines: LiveLine[] = [];
  const abort = new AbortController();
  let lastId: string | undefined;
  void (async () => {
    while (!abort.signal.aborted) {
      try {
        const res = await fetch(`${url}/v1/apps/${app}/logs?follow=1`, {
          headers: { authorization: `Bearer ${ADMIN}`, ...(lastId ? { "last-event-id": lastId } : {}) },
          signal: abort.signal,
        });
        const reader = res.body!.getReader();
        let buffer = "";
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += Buffer.from(value).toString("utf8");
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf("\n\n");
            const data = block.split("\n").find((l) => l.startsWith("data: "));
            const id = block.split("\n").find((l) => l.startsWith("id: "));
            if (!data) continue;
            if (id) lastId = id.slice(4);
            lines.push({ ...(JSON.parse(data.slice(6)) as Omit<LiveLine, "receivedAt">), receivedAt: Date.now() });
          }
        }
      } catch {
        // the controller went away or we stopped: reconnect after a breath
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return { lines, stop: () => abort.abort() };
}

/**
 * The frames `GET /v1/events?<query>` sends, as text: read until `enough` holds for them, or for
 * 30 s (a fixed few seconds assumed a quiet machine).
 */
async function readEvents(url: string, query: string, enough: (text: string) => boolean): Promise<string> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 30_000);
  const res = await fetch(`${url}/v1/events?${query}`, { headers: { authorization: `Bearer ${ADMIN}` }, signal: abort.signal });
  let text = "";
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString("utf8");
      if (enough(text)) break;
    }
  } catch {
    // the time limit ends the read
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return text;
}
