import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/**
 * A notification receiver on 127.0.0.1: records every request and answers `answer` (200 unless
 * changed). `down()` closes the port (connections are refused), `up()` opens the same port again.
 */
export async function startReceiver(port = 0) {
  const received: Received[] = [];
  let answer = { status: 200, body: "ok" };
  let server: Server | undefined;
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), status: answer.status });
          res.writeHead(answer.status, { "content-type": "text/plain" }).end(answer.body);
        });
      });
      s.once("error", reject);
      s.listen(p, "127.0.0.1", () => {
        server = s;
        const a = s.address();
        resolve(typeof a === "object" && a ? a.port : p);
      });
    });
  const bound = await listen(port);
  return {
    port: bound,
    url: `http://127.0.0.1:${bound}/hook`,
    received,
    /** requests answered with a 2xx */
    accepted: () => received.filter((r) => r.status >= 200 && r.status < 300),
    answer(status: number, body = "") {
      answer = { status, body };
    },
    async down() {
      const s = server;
      server = undefined;
      const closed = new Promise<void>((r) => (s ? s.close(() => r()) : r()));
      s?.closeAllConnections();
      await closed;
    },
    async up() {
      await listen(bound);
    },
    close() {
      return this.down();
    },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/** What a receiver does with a webhook delivery: checks the signature and the timestamp's age (README, "Notifications"). */
export function verifyDelivery(secret: string, headers: IncomingHttpHeaders, rawBody: string, now = Date.now()): boolean {
  const timestamp = String(headers["x-deploybot-timestamp"] ?? "");
  const sent = String(headers["x-deploybot-signature-256"] ?? "");
  if (!/^\d+$/.test(timestamp) || Math.abs(now / 1000 - Number(timestamp)) > 300) return false;
  const expected = `sha256=${createHmac("sha256", secret).update(`${timestamp}.${rawBody}`).digest("hex")}`;
  return sent.length === expected.length && timingSafeEqual(Buffer.from(sent), Buffer.from(expected));
}
