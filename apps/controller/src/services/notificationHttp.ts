import { createHmac } from "node:crypto";
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP } from "node:net";

/**
 * Addresses a notification may not reach unless its target allows it: a target URL is written
 * by whoever edits apps.yaml, and without this it could make the controller call its own admin
 * surface, the cloud's metadata service (169.254.169.254) or anything else on the private network.
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

/** "ADDRESS, a ... address" when an address is not a public one, else null. */
export function privateAddressProblem(address: string): string | null {
  const family = isIP(address);
  if (family === 0) return `'${address}' is not an IP address`;
  // ::ffff:10.0.0.1 and friends reach the IPv4 address inside
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] : undefined;
  if (mapped) return privateAddressProblem(mapped);
  if (family === 6 && /^::ffff:/i.test(address)) return `${address}, an IPv4-mapped address`;
  return blocked.check(address, family === 4 ? "ipv4" : "ipv6") ? `${address}, a loopback, link-local or private address` : null;
}

export class AddressRefused extends Error {
  readonly code = "address_refused";
}

/**
 * A DNS lookup that refuses private answers. It runs when the socket connects, so the address
 * checked is the address used: a name that resolved to a public address at load time and to
 * 127.0.0.1 now (DNS rebinding) is refused now.
 */
function guardedLookup(hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, "");
    const list = addresses as LookupAddress[];
    // every answer is checked: a name that resolves to one public and one private address is refused
    for (const a of list) {
      const problem = privateAddressProblem(a.address);
      if (problem) return callback(new AddressRefused(`refused: ${hostname} resolves to ${problem}; set allow_private: true on the target to allow it`), "");
    }
    if (options.all) return callback(null, list);
    const first = list[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), "");
    callback(null, first.address, first.family);
  });
}

export interface PostResult {
  statusCode: number;
  /** the first 500 characters of the answer */
  body: string;
}

/**
 * POSTs a JSON body without following redirects (a redirect could lead anywhere, past the
 * address check). Rejects with AddressRefused when the address is not allowed, with the socket's
 * error on a connection failure, and on timeout.
 */
export function postJson(url: string, body: string, headers: Record<string, string>, opts: { allowPrivate: boolean; timeoutMs: number }): Promise<PostResult> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (!opts.allowPrivate && isIP(host) !== 0) {
    // an address literal is connected to without any lookup
    const problem = privateAddressProblem(host);
    if (problem) return Promise.reject(new AddressRefused(`refused: ${problem}; set allow_private: true on the target to allow it`));
  }
  const client = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      fn();
    };
    const req = client.request(
      u,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), "user-agent": "deploybot-notifications", ...headers },
        ...(opts.allowPrivate ? {} : { lookup: guardedLookup as unknown as typeof dnsLookup }),
        // no pooled socket: a kept-alive connection would skip the lookup, and its check, next time
        agent: false,
      },
      (res) => {
        let text = "";
        const done = () => settle(() => resolve({ statusCode: res.statusCode ?? 0, body: text.slice(0, 500) }));
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
          // the start of the answer is all that is kept: a receiver streaming forever does not hold the attempt
          if (text.length >= 500) {
            done();
            res.destroy();
          }
        });
        res.on("end", done);
        res.on("error", (err) => settle(() => reject(err)));
      },
    );
    // the whole attempt, not just an idle socket: a receiver answering a byte a second is cut off too
    const deadline = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${opts.timeoutMs} ms`), { code: "ETIMEDOUT" })), opts.timeoutMs);
    req.on("error", (err) => settle(() => reject(err)));
    req.end(body);
  });
}

/**
 * `X-Deploybot-Signature-256: sha256=<hex>` over `<timestamp>.<body>`: the timestamp is signed
 * with the body, so a receiver that rejects old timestamps cannot be fed a recorded delivery.
 */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}
