import { type ClientRequest, createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type ProxyMode = "forward" | "unavailable" | "lose-answers";

export interface SwitchProxy {
  url: string;
  /** requests forwarded (to the target) and answered 503 so far */
  counts: { forwarded: number; unavailable: number };
  /** "METHOD /path?query" of every request forwarded, in order (" last-event-id=ID" when sent) */
  seen: string[];
  /** asked after each chunk of an answer is passed on: true ends that answer there and turns the proxy `unavailable` */
  cutAfter?: (request: string, chunk: string) => boolean;
  /**
   * `forward`: pass every request to the target; `unavailable`: answer 503 like a load balancer
   * whose backend is gone; `lose-answers`: pass the request on, then drop the target's answer and
   * say 502 (a controller that did the work and died before answering). Switching to `unavailable` cuts the requests in flight (long-polls,
   * event streams), as a dying backend would.
   */
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

/**
 * A small HTTP proxy in front of one controller, for failover tests: what a load balancer in
 * front of a dead or restarting controller answers (503), and a second path to a live one.
 */
export async function switchProxy(target: string, mode: ProxyMode = "forward"): Promise<SwitchProxy> {
  const to = new URL(target);
  const inFlight = new Set<{ upstream: ClientRequest; res: ServerResponse }>();
  const counts = { forwarded: 0, unavailable: 0 };
  const seen: string[] = [];
  const unavailable = (res: ServerResponse) => {
    counts.unavailable++;
    res.writeHead(503, { "content-type": "text/plain" }).end("no backend available\n");
  };
  const server = createServer((req, res) => {
    if (mode === "unavailable") return unavailable(res);
    counts.forwarded++;
    const lastEventId = req.headers["last-event-id"];
    seen.push(`${req.method} ${req.url}${lastEventId ? ` last-event-id=${lastEventId}` : ""}`);
    const lose = mode === "lose-answers";
    const upstream = request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (answer) => {
        if (lose) {
          answer.resume();
          answer.on("end", () => res.writeHead(502, { "content-type": "text/plain" }).end("bad gateway\n"));
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        let cut = false;
        answer.on("data", (chunk: Buffer) => {
          if (cut) return;
          res.write(chunk);
          if (handle.cutAfter?.(`${req.method} ${req.url}`, chunk.toString("utf8"))) {
            // this answer ends right after the chunk (flushed), then the proxy's backend is gone
            cut = true;
            inFlight.delete(entry);
            res.end(() => upstream.destroy());
            handle.setMode("unavailable");
          }
        });
        answer.on("end", () => {
          if (!cut) res.end();
        });
      },
    );
    const entry = { upstream, res };
    inFlight.add(entry);
    res.on("close", () => {
      inFlight.delete(entry);
      upstream.destroy();
    });
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end("bad gateway\n");
      else res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const handle: SwitchProxy = {
    url,
    counts,
    seen,
    setMode(next) {
      mode = next;
      if (next === "unavailable") {
        for (const { upstream, res } of inFlight) {
          upstream.destroy();
          if (!res.headersSent) unavailable(res);
          else res.destroy();
        }
        inFlight.clear();
      }
    },
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  return handle;
}

/** A URL nothing listens on: a port taken from the OS and closed again. */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}
