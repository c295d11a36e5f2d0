import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { type ControllerSwitch, ControllerClient, ControllerError } from "../src/controllerClient";

/** A real HTTP server on 127.0.0.1 that counts its requests and answers with `handler`. */
async function server(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const hits: string[] = [];
  const s: Server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  servers.push(s);
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, hits };
}
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const json = (status: number, body: unknown) => (_req: IncomingMessage, res: ServerResponse) =>
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));

async function closedUrl() {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise((r) => s.close(r));
  return url;
}

describe("ControllerClient with several controller URLs", () => {
  test("a closed port and a 503 are skipped; it sticks to the one that answered and tells the switch once", async () => {
    const dead = await closedUrl();
    const unavailable = await server((_req, res) => res.writeHead(503).end("no backend"));
    const live = await server(json(200, { ok: true }));
    const told: ControllerSwitch[] = [];
    const client = new ControllerClient(`${dead}, ${unavailable.url}/,${live.url}`, (s) => told.push(s));
    expect(client.urls).toEqual([dead, unavailable.url, live.url]);
    expect(await client.post("/v1/x", {})).toEqual({ ok: true });
    expect(await client.post("/v1/y", {})).toEqual({ ok: true });
    expect(client.baseUrl).toBe(live.url);
    expect(unavailable.hits).toEqual(["POST /v1/x"]);
    expect(live.hits).toEqual(["POST /v1/x", "POST /v1/y"]);
    expect(told).toEqual([{ from: unavailable.url, to: live.url, reason: "answered 503" }]);
  });

  test("a 4xx and a 500 are answers, not failover reasons: the next URL is never asked", async () => {
    const refusing = await server(json(401, { error: { code: "unauthorized", message: "token refused" } }));
    const broken = await server(json(500, { error: { code: "internal", message: "boom" } }));
    const spare = await server(json(200, { ok: true }));
    const first = new ControllerClient([refusing.url, spare.url]);
    await expect(first.post("/v1/x", {})).rejects.toMatchObject({ status: 401, code: "unauthorized" });
    const second = new ControllerClient([broken.url, spare.url]);
    const err = await second.post("/v1/x", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControllerError);
    expect((err as ControllerError).status).toBe(500);
    expect(spare.hits).toEqual([]);
  });

  test("no answer in time moves the call on; every URL failing throws once, for the caller's backoff", async () => {
    const silent = await server(() => {}); // accepts, never answers
    const live = await server(json(200, { ok: true }));
    const told: ControllerSwitch[] = [];
    const client = new ControllerClient([silent.url, live.url], (s) => told.push(s));
    expect(await client.post("/v1/x", {}, { timeoutMs: 2000 })).toEqual({ ok: true });
    expect(told).toEqual([{ from: silent.url, to: live.url, reason: "no answer within 2 s" }]);

    const gone = await server((_req, res) => res.writeHead(502).end());
    const allDown = new ControllerClient([await closedUrl(), gone.url]);
    await expect(allDown.post("/v1/x", {})).rejects.toMatchObject({ status: 502 });
    // after a full round it is back where it started: the next call begins with the first URL
    expect(allDown.baseUrl).toBe(allDown.urls[0]);
  });

  test("the caller's abort is not a failover reason", async () => {
    const silent = await server(() => {});
    const live = await server(json(200, { ok: true }));
    const client = new ControllerClient([silent.url, live.url]);
    const stop = new AbortController();
    const call = client.post("/v1/x", {}, { signal: stop.signal, timeoutMs: 60_000 });
    setTimeout(() => stop.abort(), 50);
    await expect(call).rejects.toThrow(/aborted/);
    expect(live.hits).toEqual([]);
    expect(client.baseUrl).toBe(silent.url);
  });
});
