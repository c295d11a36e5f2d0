import { appLogLine, appLogSilentHost } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { z } from "zod";
import { ADMIN, type Harness, makeHarness, test } from "./fixture";

const page = z.object({ lines: z.array(appLogLine), next: z.number(), silentHosts: z.array(appLogSilentHost) });
const entry = (n: number, app = "web", stream = "stdout") => ({
  ts: `2026-11-22T12:00:${String(n % 60).padStart(2, "0")}.5Z`,
  app,
  container: `${app}-1`,
  stream,
  line: `n=${n}`,
});

const send = (h: Harness, agent: { id: string; token: string }, offset: number, entries: unknown[], token = agent.token) =>
  h.call("POST", `/v1/agents/${agent.id}/app-logs`, { token, body: { offset, entries } });
const read = async (h: Harness, query = "") => page.parse(await (await h.call("GET", `/v1/apps/web/logs${query}`, { token: ADMIN })).json());

describe("POST /v1/agents/{id}/app-logs", () => {
  test("appends at the agent's offset; a retried batch stores nothing twice; a gap is 409 with the offset", async ({ h }) => {
    const agent = await h.register("web-1");
    expect(await (await send(h, agent, 0, [entry(0), entry(1)])).json()).toEqual({ offset: 2 });
    // the answer was lost and the agent sends the same batch plus one more line
    expect(await (await send(h, agent, 0, [entry(0), entry(1), entry(2)])).json()).toEqual({ offset: 3 });
    const gap = await send(h, agent, 7, [entry(7)]);
    expect(gap.status).toBe(409);
    expect(await gap.json()).toMatchObject({ error: { code: "offset_mismatch", details: { offset: 3 } } });
    const { lines } = await read(h);
    expect(lines.map((l) => l.line)).toEqual(["n=0", "n=1", "n=2"]);
    expect(lines[0]).toMatchObject({ host: "web-1", container: "web-1", ts: "2026-11-22T12:00:00.500000000Z" });
  });

  test("lines are redacted again on ingest with the app's secrets", async ({ h }) => {
    const agent = await h.register("web-1");
    await h.call("PUT", "/v1/apps/web/secrets/API_KEY", { token: ADMIN, body: { value: "sk-live-0123456789" } });
    await send(h, agent, 0, [{ ...entry(0), line: "key=sk-live-0123456789 ok" }]);
    expect((await read(h)).lines.map((l) => l.line)).toEqual(["key=******** ok"]);
  });

  test("only the agent itself may send; API tokens are refused", async ({ h }) => {
    const a = await h.register("web-1");
    const b = await h.register("web-2");
    expect((await send(h, a, 0, [entry(0)], b.token)).status).toBe(403);
    expect((await send(h, a, 0, [entry(0)], ADMIN)).status).toBe(401);
    expect((await send(h, a, 0, [{ ...entry(0), line: 5 }])).status).toBe(400);
  });
});

describe("GET /v1/apps/{name}/logs", () => {
  test("merged across hosts in arrival order; host, tail, since and after filter", async ({ h }) => {
    const a = await h.register("web-1");
    const b = await h.register("web-2");
    await send(h, a, 0, [entry(0), entry(1)]);
    await send(h, b, 0, [entry(10), entry(11, "web", "stderr")]);
    await send(h, a, 2, [entry(2), entry(3, "api")]);
    expect((await read(h)).lines.map((l) => `${l.host}:${l.line}`)).toEqual(["web-1:n=0", "web-1:n=1", "web-2:n=10", "web-2:n=11", "web-1:n=2"]);
    expect((await read(h, "?host=web-2")).lines.map((l) => l.stream)).toEqual(["stdout", "stderr"]);
    const tail = await read(h, "?tail=2");
    expect(tail.lines.map((l) => l.line)).toEqual(["n=11", "n=2"]);
    expect((await read(h, `?after=${tail.lines[0]!.id}`)).lines.map((l) => l.line)).toEqual(["n=2"]);
    h.clock.now = Date.parse("2026-11-22T12:00:20Z");
    expect((await read(h, "?since=15s")).lines.map((l) => l.line)).toEqual(["n=10", "n=11"]);
    expect((await h.call("GET", "/v1/apps/web/logs?since=yesterday", { token: ADMIN })).status).toBe(400);
    expect((await h.call("GET", "/v1/apps/nope/logs", { token: ADMIN })).status).toBe(404);
    // a host the app runs on but that has said nothing yet is empty; one it neither runs on nor
    // has output from (a typo) is 404, streaming or not
    expect((await h.call("GET", "/v1/apps/api/logs?host=api-2", { token: ADMIN })).status).toBe(200);
    for (const follow of ["", "&follow=1"]) {
      const typo = await h.call("GET", `/v1/apps/web/logs?host=web-3${follow}`, { token: ADMIN });
      expect(typo.status).toBe(404);
      expect((await typo.json()).error).toMatchObject({ code: "unknown_host", message: expect.stringContaining("its hosts: web-1") });
    }
    expect((await h.call("GET", "/v1/apps/web/logs")).status).toBe(401);
  });

  test("keeps DEPLOYBOT_APP_LOG_LINES lines per app and host", async () => {
    const h = await makeHarness({ appLogLines: 100 });
    const agent = await h.register("web-1");
    let offset = 0;
    for (let batch = 0; batch < 3; batch++) {
      const entries = Array.from({ length: 400 }, (_, i) => entry(batch * 400 + i));
      offset = ((await (await send(h, agent, offset, entries)).json()) as { offset: number }).offset;
    }
    const { lines } = await read(h);
    // trimmed every 500 lines to the newest 100; never fewer than the limit
    expect(lines.length).toBeGreaterThanOrEqual(100);
    expect(lines.length).toBeLessThan(600);
    expect(lines.at(-1)?.line).toBe("n=1199");
  });

  test("a host whose agent predates app-log shipping is named with its version and 'upgrade', not left as an empty answer", async ({ h }) => {
    // api runs on api-1 (a current agent) and api-2 (an agent from before app-log shipping)
    await h.register("api-1");
    const old = await h.register("api-2", [], [], { version: "0.1.0", capabilities: {} });
    const api = async (query = "") => page.parse(await (await h.call("GET", `/v1/apps/api/logs${query}`, { token: ADMIN })).json());
    const all = await api();
    expect(all.lines).toEqual([]);
    expect(all.silentHosts).toEqual([
      {
        host: "api-2",
        agentVersion: "0.1.0",
        message: "host api-2 runs agent 0.1.0, which predates app-log shipping: the output of api there never reaches the controller; upgrade the agent on api-2",
      },
    ]);
    expect((await api("?host=api-2")).silentHosts.map((s) => s.host)).toEqual(["api-2"]);
    expect((await api("?host=api-1")).silentHosts).toEqual([]);
    // a live stream says it first, as a `notice` event without an id
    const res = await h.call("GET", "/v1/apps/api/logs?follow=1", { token: ADMIN });
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("\n\n")) text += Buffer.from((await reader.read()).value ?? []).toString("utf8");
    await reader.cancel();
    expect(text).toMatch(/^event: notice\ndata: \{"host":"api-2".*upgrade the agent on api-2"\}\n\n/);
    expect(text).not.toMatch(/^id:/m);
    // an agent of that day without the volumes capability that has sent lines does ship
    await send(h, old, 0, [entry(0, "api")]);
    const shipped = await api();
    expect(shipped.lines.map((l) => l.line)).toEqual(["n=0"]);
    expect(shipped.silentHosts).toEqual([]);
  });

  test("follow=1 streams the stored lines, then new ones as they arrive, resumable by Last-Event-ID", async ({ h }) => {
    const agent = await h.register("web-1");
    await send(h, agent, 0, [entry(0), entry(1)]);
    const res = await h.call("GET", "/v1/apps/web/logs?follow=1", { token: ADMIN });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = "";
    const until = async (needle: string) => {
      while (!text.includes(needle)) text += Buffer.from((await reader.read()).value ?? []).toString("utf8");
    };
    await until("n=1");
    await send(h, agent, 2, [entry(2)]);
    await until("n=2");
    await reader.cancel();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toHaveLength(3);
    const resumed = await h.call("GET", "/v1/apps/web/logs?follow=1", { token: ADMIN, headers: { "last-event-id": String(ids[1]) } });
    const r2 = resumed.body!.getReader();
    const chunk = Buffer.from((await r2.read()).value ?? []).toString("utf8");
    await r2.cancel();
    expect(chunk).toContain("n=2");
    expect(chunk).not.toContain("n=1");
  });
});
