import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../controller/test/server";
import { ApiClient, CliError } from "../src/client";
import { type Command, type Context, parseCommandArgs } from "../src/command";
import { hostsCreate, hostsDestroy } from "../src/commands/cloudHosts";
import { DigitalOcean } from "../src/digitalocean";
import { Output, type Streams } from "../src/output";

/**
 * `hosts create|destroy` against a real controller and DigitalOcean's API mocked with msw from
 * its documented shapes: POST /v2/droplets (202 {droplet}), GET /v2/droplets?tag_name=
 * ({droplets, links, meta}), DELETE /v2/droplets/{id} (204), errors {id, message} with 401, 422
 * and 429 (ratelimit-limit / -remaining / -reset).
 */
const DO = "https://api.digitalocean.com";
const TOKEN = "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

let ctl: Awaited<ReturnType<typeof startTestController>>;
const seen: { method: string; path: string; auth: string | null; body: unknown }[] = [];
const droplets: Record<number, { id: number; name: string; status: string; tags: string[]; region: { slug: string }; size_slug: string }> = {};
let nextId = 3164444;

const record = async (request: Request) => {
  const url = new URL(request.url);
  const body = request.method === "POST" ? await request.clone().json() : null;
  seen.push({ method: request.method, path: url.pathname + url.search, auth: request.headers.get("authorization"), body });
  return body;
};
const doError = (status: number, id: string, message: string, headers: Record<string, string> = {}) => HttpResponse.json({ id, message }, { status, headers });

const handlers = [
  http.post(`${DO}/v2/droplets`, async ({ request }) => {
    const body = (await record(request)) as { name: string; region: string; size: string; tags: string[] };
    if (request.headers.get("authorization") !== `Bearer ${TOKEN}`) return doError(401, "unauthorized", "Unable to authenticate you.");
    const d = { id: nextId++, name: body.name, status: "new", tags: body.tags, region: { slug: body.region }, size_slug: body.size, networks: { v4: [] } };
    droplets[d.id] = d;
    return HttpResponse.json({ droplet: d, links: { actions: [{ id: 36805096, rel: "create", href: `${DO}/v2/actions/36805096` }] } }, { status: 202 });
  }),
  http.get(`${DO}/v2/droplets`, async ({ request }) => {
    await record(request);
    const tag = new URL(request.url).searchParams.get("tag_name");
    const list = Object.values(droplets).filter((d) => !tag || d.tags.includes(tag));
    return HttpResponse.json({ droplets: list, links: {}, meta: { total: list.length } });
  }),
  http.delete(`${DO}/v2/droplets/:id`, async ({ request, params }) => {
    await record(request);
    if (!droplets[Number(params.id)]) return doError(404, "not_found", "The resource you were accessing could not be found.");
    delete droplets[Number(params.id)];
    return new HttpResponse(null, { status: 204 });
  }),
];
const server = setupServer(...handlers);

beforeAll(async () => {
  server.listen({ onUnhandledRequest: "bypass" }); // the controller on 127.0.0.1 is real
  ctl = await startTestController();
});
afterEach(() => {
  server.resetHandlers();
  seen.length = 0;
});
afterAll(async () => {
  server.close();
  await ctl?.stop();
});

/** Runs one command in-process, as main() would, and collects what it prints. */
async function run(cmd: Command, argv: string[], env: Record<string, string | undefined> = { DEPLOYBOT_DO_TOKEN: TOKEN }) {
  let stdout = "";
  let stderr = "";
  const streams = { stdout: { write: (s: string) => (stdout += s), isTTY: false }, stderr: { write: (s: string) => (stderr += s), isTTY: false } } as unknown as Streams;
  const parsed = parseCommandArgs(cmd, argv);
  const ctx: Context = {
    env,
    out: new Output(streams, env, { json: parsed.values.json === true }),
    signal: new AbortController().signal,
    client: () => new ApiClient(ctl.url, ADMIN),
  };
  try {
    const code = await cmd.run(ctx, parsed.values, parsed.positionals);
    return { code, stdout, stderr };
  } catch (err) {
    if (err instanceof CliError) return { code: err.exitCode, stdout, stderr: `${stderr}${err.message}\n` };
    throw err;
  }
}

const createArgs = (name: string, extra: string[] = []) => ["--provider", "digitalocean", "--name", name, "--region", "lon1", "--size", "s-1vcpu-1gb", "--labels", "web,eu", ...extra];

describe("deploybot hosts create --provider digitalocean", () => {
  test("creates a tagged Droplet whose user-data installs the agent, then waits until that agent registers", async () => {
    const name = `web-${Date.now().toString(36)}`;
    // the Droplet "boots": its agent registers a moment after the API accepted the create
    server.use(
      http.post(`${DO}/v2/droplets`, async ({ request }) => {
        const body = (await record(request)) as { name: string; region: string; size: string; tags: string[] };
        setTimeout(() => void ctl.call("POST", "/v1/agents/register", JOIN, { hostname: body.name, labels: ["web", "eu"], version: "0.1.0" }), 200);
        const d = { id: nextId++, name: body.name, status: "new", tags: body.tags, region: { slug: body.region }, size_slug: body.size };
        droplets[d.id] = d;
        return HttpResponse.json({ droplet: d, links: {} }, { status: 202 });
      }),
    );
    const res = await run(hostsCreate, createArgs(name));
    expect(res.stderr).toMatch(new RegExp(`droplet ${name} \\(\\d+\\) created in lon1, s-1vcpu-1gb, debian-12-x64: new`));
    expect(res.stdout).toMatch(new RegExp(`host ${name} registered`));
    expect(res.code).toBe(0);

    const create = seen.find((r) => r.method === "POST")!;
    expect(create.auth).toBe(`Bearer ${TOKEN}`);
    const body = create.body as Record<string, unknown>;
    expect(body).toMatchObject({ name, region: "lon1", size: "s-1vcpu-1gb", image: "debian-12-x64", tags: ["deploybot"] });
    expect(body.user_data).toMatch(/^#cloud-config\n/);
    expect(body.user_data).toContain(`--hostname '${name}'`);
    expect(body.user_data).toContain("--labels 'web,eu'");
    expect(`${res.stdout}${res.stderr}`).not.toContain(TOKEN);
  }, 60_000);

  test("a 429 is waited out until ratelimit-reset and retried", async () => {
    let calls = 0;
    server.use(
      http.post(`${DO}/v2/droplets`, async ({ request }) => {
        if (calls++ > 0) return undefined; // fall through to the normal handler
        await record(request);
        return doError(429, "too_many_requests", "API Rate limit exceeded.", {
          "ratelimit-limit": "5000",
          "ratelimit-remaining": "0",
          "ratelimit-reset": String(Math.ceil(Date.now() / 1000) + 1),
        });
      }),
    );
    const res = await run(hostsCreate, createArgs("web-rl", ["--no-wait"]));
    expect(res.code, res.stderr).toBe(0);
    expect(seen.filter((r) => r.method === "POST")).toHaveLength(2);
    expect(res.stdout.trim()).toMatch(/^\d+$/);
  });

  test("401 exits 3 naming DEPLOYBOT_DO_TOKEN, never printing it; a missing token is refused before any call", async () => {
    const res = await run(hostsCreate, createArgs("web-401", ["--no-wait"]), { DEPLOYBOT_DO_TOKEN: "dop_v1_wrong0123456789" });
    expect(res.code).toBe(3);
    expect(res.stderr).toMatch(/DigitalOcean answered 401 \(unauthorized: Unable to authenticate you\.\): check DEPLOYBOT_DO_TOKEN/);
    expect(res.stderr).not.toContain("dop_v1_wrong0123456789");
    seen.length = 0;
    const none = await run(hostsCreate, createArgs("web-none", ["--no-wait"]), {});
    expect(none.code).toBe(3);
    expect(seen).toEqual([]);
  });

  test("422 exits 6 with DigitalOcean's message", async () => {
    server.use(http.post(`${DO}/v2/droplets`, () => doError(422, "unprocessable_entity", "Region is not available")));
    const res = await run(hostsCreate, createArgs("web-422", ["--no-wait"]));
    expect(res.code).toBe(6);
    expect(res.stderr).toContain("DigitalOcean answered 422 (unprocessable_entity: Region is not available)");
  });

  test("usage errors: a name that cannot be a host name, an unknown provider", async () => {
    const badName = await run(hostsCreate, createArgs("web_3"));
    expect(badName.code).toBe(2);
    expect(badName.stderr).toMatch(/--name must be/);
    const badProvider = await run(hostsCreate, ["--provider", "aws", "--name", "x", "--region", "r", "--size", "s"]);
    expect(badProvider.code).toBe(2);
    expect(badProvider.stderr).toMatch(/unknown --provider 'aws'/);
  });
});

describe("deploybot hosts destroy", () => {
  test("deletes the deploybot-tagged Droplet of that name and forgets its agent", async () => {
    const name = `gone-${Date.now().toString(36)}`;
    droplets[99] = { id: 99, name, status: "active", tags: ["deploybot"], region: { slug: "lon1" }, size_slug: "s-1vcpu-1gb" };
    droplets[98] = { id: 98, name, status: "active", tags: ["other-team"], region: { slug: "lon1" }, size_slug: "s-1vcpu-1gb" };
    await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: name, labels: [], version: "0.1.0" });
    const res = await run(hostsDestroy, [name]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(`droplet ${name} (99) destroyed; host ${name} removed from the controller`);
    expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /v2/droplets?tag_name=deploybot&per_page=200", "DELETE /v2/droplets/99"]);
    expect(droplets[98]).toBeDefined(); // not ours: untouched
    const hosts = await ctl.call("GET", "/v1/hosts", ADMIN);
    expect(hosts.body.hosts.some((h: { hostname: string }) => h.hostname === name)).toBe(false);
  });

  test("no such Droplet exits 4", async () => {
    expect((await run(hostsDestroy, ["never-made"])).code).toBe(4);
  });
});

describe("the DigitalOcean client's rate limiting", () => {
  test("waits until ratelimit-reset (bounded), then gives up after three retries with the reset time", async () => {
    const now = Date.parse("2026-11-27T01:00:00Z");
    server.use(
      http.get(`${DO}/v2/droplets`, () =>
        doError(429, "too_many_requests", "API Rate limit exceeded.", { "ratelimit-limit": "250", "ratelimit-remaining": "0", "ratelimit-reset": String(now / 1000 + 7) }),
      ),
    );
    const waits: number[] = [];
    const client = new DigitalOcean({ token: TOKEN, sleep: async (ms) => void waits.push(ms), now: () => now });
    const err = await client.dropletsNamed("x").catch((e: unknown) => e);
    expect(waits).toEqual([7000, 7000, 7000]);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).message).toBe(
      "DigitalOcean answered 429 (too_many_requests: API Rate limit exceeded.): rate limited (ratelimit-remaining 0); the limit resets at 2026-11-27T01:00:07.000Z",
    );
  });
});
