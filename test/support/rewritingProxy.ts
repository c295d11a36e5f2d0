import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export type Rewrite = (path: string, body: Record<string, unknown>) => void;

/** Between agent and controller: rewrites the JSON of requests and answers, as an older controller would differ. */
export async function rewritingProxy(target: string, rewrite: { request?: Rewrite; answer?: Rewrite }): Promise<{ url: string; server: Server }> {
  const to = new URL(target);
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body = Buffer.concat(chunks);
      const path = req.url ?? "/";
      if (rewrite.request && body.length > 0 && req.headers["content-type"]?.includes("json")) {
        const json = JSON.parse(body.toString()) as Record<string, unknown>;
        rewrite.request(path, json);
        body = Buffer.from(JSON.stringify(json));
      }
      const headers = { ...req.headers, host: to.host, "content-length": String(body.length) };
      const upstream = request({ host: to.hostname, port: to.port, path, method: req.method, headers }, (up) => {
        const answer: Buffer[] = [];
        up.on("data", (c: Buffer) => answer.push(c));
        up.on("end", () => {
          let out = Buffer.concat(answer);
          if (rewrite.answer && up.headers["content-type"]?.includes("json")) {
            const json = JSON.parse(out.toString()) as Record<string, unknown>;
            rewrite.answer(path, json);
            out = Buffer.from(JSON.stringify(json));
          }
          res.writeHead(up.statusCode ?? 502, { "content-type": up.headers["content-type"] ?? "application/json", "content-length": String(out.length) });
          res.end(out);
        });
      });
      upstream.on("error", () => res.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** A request of the agent protocol that carries the agent's state (registration, heartbeat). */
export const isAgentCall = (path: string) => path === "/v1/agents/register" || /^\/v1\/agents\/[^/]+\/heartbeat/.test(path);
