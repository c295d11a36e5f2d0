import { z } from "zod";
import { CliError, ExitCode } from "./client";

/** What the Droplets API answers about one Droplet (the fields we read; the rest passes). */
const droplet = z
  .object({
    id: z.number(),
    name: z.string(),
    status: z.string(),
    region: z.object({ slug: z.string() }).passthrough().optional(),
    size_slug: z.string().optional(),
    tags: z.array(z.string()).optional(),
    networks: z.object({ v4: z.array(z.object({ ip_address: z.string(), type: z.string() }).passthrough()) }).passthrough().optional(),
  })
  .passthrough();
export type Droplet = z.infer<typeof droplet>;

const errorBody = z.object({ id: z.string().optional(), message: z.string().optional() }).passthrough();

/** Every Droplet deploybot creates carries this tag; destroy only ever looks among them. */
export const DEPLOYBOT_TAG = "deploybot";
// A 429 is retried after the reset the API names, at most this often and this long each.
const MAX_RATE_LIMIT_RETRIES = 3;
const MAX_RATE_LIMIT_WAIT_MS = 60_000;

export interface DigitalOceanOptions {
  token: string;
  apiUrl?: string;
  /** waits between retries; tests pass one that records instead of sleeping */
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  signal?: AbortSignal;
}

/**
 * DigitalOcean's v2 API, the calls `hosts create|destroy` need. The token is only ever the
 * Authorization header: no error message, log line or output carries it. Failures are
 * CliErrors with DigitalOcean's own message (401: exit 3; 404: 4; other 4xx/5xx: 6).
 */
export class DigitalOcean {
  private readonly apiUrl: string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly opts: DigitalOceanOptions) {
    this.apiUrl = (opts.apiUrl ?? "https://api.digitalocean.com").replace(/\/$/, "");
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.now = opts.now ?? Date.now;
  }

  async createDroplet(spec: { name: string; region: string; size: string; image: string; userData: string; tags: string[]; sshKeys: string[] }): Promise<Droplet> {
    const body = {
      name: spec.name,
      region: spec.region,
      size: spec.size,
      image: spec.image,
      user_data: spec.userData,
      tags: [...new Set([DEPLOYBOT_TAG, ...spec.tags])],
      ...(spec.sshKeys.length > 0 ? { ssh_keys: spec.sshKeys } : {}),
      monitoring: true,
    };
    const answer = await this.request("POST", "/v2/droplets", body);
    return z.object({ droplet }).parse(answer).droplet;
  }

  /** The deploybot-tagged Droplets named `name` (names are not unique at DigitalOcean). */
  async dropletsNamed(name: string): Promise<Droplet[]> {
    const answer = await this.request("GET", `/v2/droplets?tag_name=${DEPLOYBOT_TAG}&per_page=200`);
    return z
      .object({ droplets: z.array(droplet) })
      .parse(answer)
      .droplets.filter((d) => d.name === name);
  }

  async deleteDroplet(id: number): Promise<void> {
    await this.request("DELETE", `/v2/droplets/${id}`);
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(this.apiUrl + path, {
          method,
          headers: { authorization: `Bearer ${this.opts.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: this.opts.signal ? AbortSignal.any([this.opts.signal, AbortSignal.timeout(30_000)]) : AbortSignal.timeout(30_000),
        });
      } catch (err) {
        throw new CliError(ExitCode.unreachable, `cannot reach DigitalOcean's API at ${this.apiUrl}: ${(err as Error).message}`);
      }
      if (res.status === 429 && attempt < MAX_RATE_LIMIT_RETRIES) {
        await res.text().catch(() => "");
        await this.sleep(this.rateLimitWait(res.headers));
        continue;
      }
      const text = await res.text();
      if (res.ok) return text ? JSON.parse(text) : null;
      throw this.failure(res, text);
    }
  }

  /** `retry-after` (seconds) if given, else until `ratelimit-reset` (epoch seconds), within bounds. */
  private rateLimitWait(headers: Headers): number {
    const retryAfter = Number(headers.get("retry-after"));
    if (Number.isFinite(retryAfter) && retryAfter > 0) return Math.min(retryAfter * 1000, MAX_RATE_LIMIT_WAIT_MS);
    const reset = Number(headers.get("ratelimit-reset"));
    const wait = Number.isFinite(reset) && reset > 0 ? reset * 1000 - this.now() : 1000;
    return Math.min(Math.max(wait, 1000), MAX_RATE_LIMIT_WAIT_MS);
  }

  private failure(res: Response, text: string): CliError {
    let detail = "";
    try {
      const parsed = errorBody.safeParse(JSON.parse(text));
      if (parsed.success) detail = [parsed.data.id, parsed.data.message].filter(Boolean).join(": ");
    } catch {
      // not JSON: the status says enough
    }
    const what = `DigitalOcean answered ${res.status}${detail ? ` (${detail})` : ""}`;
    if (res.status === 401) return new CliError(ExitCode.auth, `${what}: check DEPLOYBOT_DO_TOKEN (a token with read and write scope)`);
    if (res.status === 404) return new CliError(ExitCode.notFound, what);
    if (res.status === 429) {
      const reset = Number(res.headers.get("ratelimit-reset"));
      const when = Number.isFinite(reset) && reset > 0 ? `; the limit resets at ${new Date(reset * 1000).toISOString()}` : "";
      return new CliError(ExitCode.api, `${what}: rate limited (ratelimit-remaining ${res.headers.get("ratelimit-remaining") ?? "?"})${when}`);
    }
    return new CliError(ExitCode.api, what);
  }
}
