import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BASE_IMAGE, describeDocker, uniqueName } from "../../../test/support/docker";
import { eventually, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

/** The busybox app of streamApp/handler.sh as the files of a deploy, answering `version`. */
function streamAppFiles(version: string): Record<string, string> {
  return {
    Dockerfile: [
      `FROM ${BASE_IMAGE}`,
      "COPY handler.sh /handler.sh",
      `RUN chmod 755 /handler.sh && echo ${version} > /release`,
      `CMD ["sh", "-c", "trap 'exit 0' TERM; nc -ll -p 80 -e /handler.sh & wait"]`,
      "",
    ].join("\n"),
    "handler.sh": readFileSync(path.join(import.meta.dirname, "streamApp/handler.sh"), "utf8"),
  };
}

interface Message {
  at: number;
  release: string;
  seq: number;
}

/** One long-lived stream as its client saw it. */
interface Stream {
  messages: Message[];
  endedAt: number | null;
  /** how it ended: "end" (the peer closed), an error code, or "close frame" (WebSocket) */
  how: string | null;
  close(): void;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function record(stream: Stream, text: string): void {
  const [release = "", seq = "-1"] = text.trim().split(" ");
  stream.messages.push({ at: Date.now(), release, seq: Number(seq) });
}

/** An SSE client through the proxy; resolves at the first event. */
function openSse(port: number, host: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const stream: Stream = { messages: [], endedAt: null, how: null, close: () => req.destroy() };
    const end = (how: string) => {
      if (stream.endedAt === null) Object.assign(stream, { endedAt: Date.now(), how });
    };
    const req = http.get({ host: "127.0.0.1", port, path: "/events", headers: { host, accept: "text/event-stream" }, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`SSE: status ${res.statusCode}`));
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let i = buf.indexOf("\n\n");
        while (i >= 0) {
          const event = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (event.startsWith("data: ")) record(stream, event.slice(6));
          if (stream.messages.length === 1) resolve(stream);
          i = buf.indexOf("\n\n");
        }
      });
      res.on("end", () => end("end"));
      res.on("aborted", () => end("aborted"));
      res.on("error", (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      end(err.code ?? err.message);
      reject(err);
    });
  });
}

/** A WebSocket client through the proxy (raw RFC 6455: the handshake is checked); resolves at the first frame. */
function openWs(port: number, host: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString("base64");
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    const stream: Stream = { messages: [], endedAt: null, how: null, close: () => socket.destroy() };
    const end = (how: string) => {
      if (stream.endedAt === null) Object.assign(stream, { endedAt: Date.now(), how });
    };
    let buf = Buffer.alloc(0);
    let upgraded = false;
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const head = buf.indexOf("\r\n\r\n");
        if (head < 0) return;
        const text = buf.subarray(0, head).toString("latin1");
        const accept = createHash("sha1").update(key + GUID).digest("base64");
        // header names case-insensitively: HAProxy sends them in lower case
        if (!text.startsWith("HTTP/1.1 101") || !text.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
          socket.destroy();
          return reject(new Error(`WebSocket handshake refused: ${text.split("\r\n")[0]}`));
        }
        upgraded = true;
        buf = buf.subarray(head + 4);
      }
      // server frames: unmasked, short (FIN + opcode, 7-bit length)
      while (buf.length >= 2 && buf.length >= 2 + (buf[1]! & 0x7f)) {
        const opcode = buf[0]! & 0x0f;
        const len = buf[1]! & 0x7f;
        const payload = buf.subarray(2, 2 + len).toString("utf8");
        buf = buf.subarray(2 + len);
        if (opcode === 0x1) record(stream, payload);
        if (opcode === 0x8) end("close frame");
        if (stream.messages.length === 1 && opcode === 0x1) resolve(stream);
      }
    });
    socket.on("end", () => end("end"));
    socket.on("close", () => end("closed"));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      end(err.code ?? err.message);
      reject(err);
    });
  });
}

/** Sequence numbers received in order without a hole (what a dropped-and-reopened stream would show). */
const contiguous = (s: Stream) => s.messages.every((m, i) => i === 0 || m.seq === s.messages[i - 1]!.seq + 1);
const maxGapMs = (s: Stream, from: number, to: number) => {
  const at = s.messages.map((m) => m.at).filter((t) => t >= from && t <= to);
  return at.reduce((max, t, i) => (i === 0 ? 0 : Math.max(max, t - at[i - 1]!)), 0);
};

describeDocker("a WebSocket and a long SSE response through the host proxy, across a reload and a redeploy", () => {
  let world: ProxyWorld;
  const app = uniqueName("lc");
  const domain = `${app}.deploybot.test`;
  const other = uniqueName("lcother");
  const DRAIN = 4;
  const figures: string[] = [];

  beforeAll(async () => {
    world = await proxyWorld();
    const first = await world.deploy(app, "v1", { domains: [domain], proxy: { drain_seconds: DRAIN }, files: streamAppFiles("v1") });
    expect(first).toMatchObject({ ok: true });
    expect(await viaProxy(world.httpPort, domain)).toEqual({ status: 200, body: "v1" });
  });
  afterAll(async () => {
    if (figures.length > 0) console.log(`long connections through HAProxy:\n  ${figures.join("\n  ")}`);
    await world?.cleanup();
  });

  it("both survive a seamless reload (a new app's domain): no message lost, no reconnect", async () => {
    const ws = await openWs(world.httpPort, domain);
    const sse = await openSse(world.httpPort, domain);
    const reloadAt = Date.now();
    // a new domain is a config change: HAProxy reloads (a new worker); the old one keeps its connections
    expect(await world.deploy(other, "o1", { domains: [`${other}.deploybot.test`] })).toMatchObject({ ok: true });
    const reloadedAt = Date.now();
    const seen = { ws: ws.messages.length, sse: sse.messages.length };
    await eventually("messages after the reload", async () => ws.messages.length > seen.ws + 10 && sse.messages.length > seen.sse + 10);
    for (const [name, s] of [
      ["WebSocket", ws],
      ["SSE", sse],
    ] as const) {
      expect(s.endedAt, name).toBeNull();
      expect(contiguous(s), name).toBe(true);
      expect(s.messages.every((m) => m.release === "v1")).toBe(true);
      figures.push(`reload: ${name} kept open, ${s.messages.length} messages in sequence, longest gap around the reload ${maxGapMs(s, reloadAt, Date.now())} ms (the other app's deploy, build and reload included, took ${reloadedAt - reloadAt} ms)`);
      s.close();
    }
  });

  it("a redeploy: both keep flowing from the old release while it drains, end when the drain ends, and a reconnect gets the new release", async () => {
    const ws = await openWs(world.httpPort, domain);
    const sse = await openSse(world.httpPort, domain);
    let inRouteAt = 0;
    const started = Date.now();
    const outcome = await world.deploy(app, "v2", {
      domains: [domain],
      proxy: { drain_seconds: DRAIN },
      files: streamAppFiles("v2"),
      // from here new requests go to v2 and v1 drains (it leaves the route right after)
      onLog: (line) => {
        if (line.includes("is in the route")) inRouteAt = Date.now();
      },
    });
    const finished = Date.now();
    expect(outcome).toMatchObject({ ok: true });
    expect(inRouteAt).toBeGreaterThan(0);
    await eventually("both streams ended", async () => ws.endedAt !== null && sse.endedAt !== null);
    for (const [name, s] of [
      ["WebSocket", ws],
      ["SSE", sse],
    ] as const) {
      const endedAt = s.endedAt ?? 0;
      expect(contiguous(s), name).toBe(true);
      expect(s.messages.every((m) => m.release === "v1"), name).toBe(true);
      // kept being served by the old container after the new one took new requests
      expect(s.messages.some((m) => m.at > inRouteAt), name).toBe(true);
      expect(endedAt, name).toBeGreaterThan(inRouteAt);
      figures.push(
        `redeploy (drain_seconds ${DRAIN}): ${name} served by v1 for ${endedAt - inRouteAt} ms after v2 entered the route, then ended (${s.how}); ${s.messages.filter((m) => m.at > inRouteAt).length} messages during the drain; the deploy took ${finished - started} ms`,
      );
    }
    const ws2 = await openWs(world.httpPort, domain);
    const sse2 = await openSse(world.httpPort, domain);
    expect(ws2.messages[0]?.release).toBe("v2");
    expect(sse2.messages[0]?.release).toBe("v2");
    figures.push("after the redeploy: a reconnecting WebSocket and SSE client land on v2 at once");
    ws2.close();
    sse2.close();
  });
});
