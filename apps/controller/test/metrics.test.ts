import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freePort } from "../../../test/support/docker";
import { ADMIN, startTestController } from "./server";
import { promtoolCheck } from "../../../test/support/promtool";

const run = promisify(execFile);

const sample = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe("GET /metrics", () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>;
  let metricsToken: string;
  beforeAll(async () => {
    ctl = await startTestController();
    const created = await ctl.call("POST", "/v1/tokens", ADMIN, { name: "prometheus", scope: "metrics" });
    expect(created.status).toBe(201);
    metricsToken = created.body.token;
  });
  afterAll(async () => {
    await ctl?.stop();
    if (ctl) rmSync(ctl.dir, { recursive: true, force: true });
  });
  const scrape = (token?: string) => fetch(`${ctl.url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  test("needs a token; a metrics token reads metrics and nothing else", async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape("dbt_not-a-token")).status).toBe(401);
    expect((await scrape(metricsToken)).status).toBe(200);
    expect((await scrape(ADMIN)).status).toBe(200);
    expect((await ctl.call("GET", "/v1/hosts", metricsToken)).status).toBe(403);
  });

  test("passes promtool check metrics and counts deployments, requests by route pattern, jobs and the queue", async () => {
    const d = await ctl.call("POST", "/v1/deployments", ADMIN, { app: "web", ref: "main" });
    expect(d.status).toBe(201);
    await ctl.call("GET", `/v1/deployments/${d.body.deployment.id}`, ADMIN);
    const res = await scrape(metricsToken);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    const check = await promtoolCheck(text);
    expect(check.output).toBe("");
    expect(check.ok).toBe(true);

    expect(sample(text, 'deploybot_deployments_total{status="deploying"}')).toBe(1);
    expect(sample(text, 'deploybot_jobs{kind="deploy",status="pending"}')).toBe(1);
    expect(sample(text, "deploybot_queue_depth")).toBe(1);
    expect(sample(text, "deploybot_queue_oldest_job_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'deploybot_agents{state="online"}')).toBe(0);
    expect(sample(text, "deploybot_sse_subscribers")).toBe(0);
    expect(sample(text, "deploybot_database_size_bytes")).toBeGreaterThan(0);
    expect(text).toContain("process_resident_memory_bytes");
    // the route pattern is the label, never the deployment id
    expect(text).toContain('deploybot_http_request_duration_seconds_count{method="GET",route="/v1/deployments/:deploymentId",status="200"}');
    expect(text).not.toContain(d.body.deployment.id);
    expect(text).not.toMatch(/^nodejs_active_handles_total/m);
  });
});

describe("an address allow-list", () => {
  test("DEPLOYBOT_METRICS_ALLOW lets 127.0.0.1 scrape without a token", async () => {
    const ctl = await startTestController(undefined, { DEPLOYBOT_METRICS_ALLOW: "127.0.0.1" });
    try {
      expect((await fetch(`${ctl.url}/metrics`)).status).toBe(200);
    } finally {
      await ctl.stop();
      rmSync(ctl.dir, { recursive: true, force: true });
    }
  });
});

describe("a real Prometheus server", () => {
  test("scraping a test controller sees a deployment counter move", { timeout: 90_000 }, async () => {
    const ctl = await startTestController();
    const dir = mkdtempSync(join(tmpdir(), "deploybot-prom-"));
    let prom: ChildProcess | undefined;
    try {
      const token = (await ctl.call("POST", "/v1/tokens", ADMIN, { name: "prometheus", scope: "metrics" })).body.token as string;
      writeFileSync(join(dir, "token"), token);
      writeFileSync(
        join(dir, "prometheus.yml"),
        [
          "global: { scrape_interval: 1s, evaluation_interval: 1s }",
          "scrape_configs:",
          "  - job_name: deploybot",
          `    authorization: { credentials_file: ${join(dir, "token")} }`,
          `    static_configs: [{ targets: ["127.0.0.1:${ctl.port}"] }]`,
          "",
        ].join("\n"),
      );
      await run("promtool", ["check", "config", join(dir, "prometheus.yml")]);
      const port = await freePort();
      prom = spawn("prometheus", [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: "ignore" });
      const query = async (q: string): Promise<number | undefined> => {
        try {
          const body = (await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { data?: { result?: { value: [number, string] }[] } };
          const v = body.data?.result?.[0]?.value[1];
          return v === undefined ? undefined : Number(v);
        } catch {
          return undefined;
        }
      };
      const waitFor = async (q: string, want: (v: number | undefined) => boolean) => {
        for (let i = 0; i < 600; i++) {
          const v = await query(q);
          if (want(v)) return v;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`prometheus never saw ${q}`);
      };
      // scraped before any deployment: the series does not exist yet, the target is up
      await waitFor('up{job="deploybot"}', (v) => v === 1);
      expect(await query("sum(deploybot_deployments_total) or vector(0)")).toBe(0);
      expect((await ctl.call("POST", "/v1/deployments", ADMIN, { app: "web", ref: "main" })).status).toBe(201);
      expect(await waitFor("sum(deploybot_deployments_total)", (v) => v === 1)).toBe(1);
    } finally {
      prom?.kill();
      await ctl.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(ctl.dir, { recursive: true, force: true });
    }
  });
});
