/**
 * The HTTP floor of `pnpm bench` (BENCH_FLOOR=1): the same wire protocol the bench drives, served
 * by the controller's stack alone — @hono/node-server, Hono, the heartbeat's zod schema,
 * better-sqlite3 on the controller's migrated schema (WAL, synchronous=NORMAL) and its group
 * commit — with nothing of the product around it: no outbox, no consequences, no leases beyond
 * the lease id, no request log or metrics, a token compared against a map. A claim + finish in
 * one heartbeat is one finish `UPDATE`, one probe and one take `UPDATE … RETURNING`, as the real
 * pair runs them. What it reaches against its own /healthz is the most the real controller could.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import pino from "pino";
import { openDb } from "../apps/controller/src/db/client";
import { GroupCommit } from "../apps/controller/src/services/groupCommit";
import { FEATURES, heartbeatRequest } from "../packages/protocol/src";

type JobRow = { id: string; kind: string; app: string; lease_id: string; spec: string; timeout_seconds: number; attempts: number; log_offset: number };

export async function startFloor(env: NodeJS.ProcessEnv): Promise<{ port: number; stop(): Promise<void> }> {
  const db = openDb(env.DEPLOYBOT_DB ?? join(process.cwd(), "floor.db"));
  const sqlite = db.$client;
  const group = new GroupCommit(sqlite, pino({ level: "silent" }));
  const inTransaction = sqlite.transaction((fn: () => unknown) => fn());
  const agents = new Map<string, { token: string; labels: string }>();
  const agentByToken = new Map<string, string>();
  const insertAgent = sqlite.prepare("INSERT INTO agents (id, hostname, version, labels, created_at) VALUES (?, ?, 'floor', ?, ?)");
  const insertJob = sqlite.prepare(
    `INSERT INTO jobs (id, kind, app, target_labels, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at)
     VALUES (?, ?, ?, ?, ?, 'pending', 3, 600, 9999999999999, ?)`,
  );
  const probe = sqlite.prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_labels = ? ORDER BY id LIMIT 1").pluck();
  const take = sqlite.prepare(`
    UPDATE jobs SET status = 'assigned', agent_id = @agentId, lease_id = @leaseId, lease_expires_at = @until, assigned_at = @now, attempts = attempts + 1
    WHERE id = @id AND status = 'pending' RETURNING *`);
  const finish = sqlite.prepare(`
    UPDATE jobs SET status = @status, finished_at = @now, lease_expires_at = NULL
    WHERE id = @id AND lease_id = @leaseId AND agent_id = @agentId AND status IN ('assigned', 'running') RETURNING status`);
  const byStatus = sqlite.prepare("SELECT id, status FROM jobs WHERE status = ? ORDER BY id LIMIT ?");

  const claim = (agentId: string, labels: string) => {
    const id = probe.get(labels) as string | undefined;
    if (id === undefined) return null;
    const now = Date.now();
    const row = take.get({ id, agentId, leaseId: `lse_${randomUUID()}`, until: now + 60_000, now }) as JobRow | undefined;
    return row
      ? { id: row.id, kind: row.kind, app: row.app, leaseId: row.lease_id, spec: JSON.parse(row.spec) as unknown, timeoutSeconds: row.timeout_seconds, attempt: row.attempts, logOffset: row.log_offset }
      : null;
  };
  const finishOne = (agentId: string, report: { jobId: string; leaseId: string; status: string }): { status: string } | undefined =>
    finish.get({ id: report.jobId, leaseId: report.leaseId, agentId, status: report.status, now: Date.now() }) as { status: string } | undefined;

  const app = new Hono();
  const agentOf = (authorization: string | undefined, agentId: string) => {
    const agent = agents.get(agentId);
    return agent && authorization === `Bearer ${agent.token}` ? agent : undefined;
  };
  app.get("/healthz", (c) => c.json({ ok: true as const }, 200));
  app.post("/v1/agents/register", async (c) => {
    const body = (await c.req.json()) as { hostname: string; labels?: string[] };
    const id = `agt_${randomUUID()}`;
    const labels = JSON.stringify([...new Set(body.labels ?? [])].sort());
    insertAgent.run(id, body.hostname, labels, Date.now());
    const token = randomUUID();
    agents.set(id, { token, labels });
    agentByToken.set(`Bearer ${token}`, id);
    return c.json({ agent: { id }, token, heartbeatIntervalSeconds: 10, features: [FEATURES.finishedInHeartbeat] }, 200);
  });
  app.post(
    "/v1/agents/:agentId/heartbeat",
    validator("json", (value) => {
      const parsed = heartbeatRequest.safeParse(value);
      if (!parsed.success) throw new HTTPException(400, { message: parsed.error.message });
      return parsed.data;
    }),
    async (c) => {
      const agentId = c.req.param("agentId");
      const agent = agentOf(c.req.header("authorization"), agentId);
      if (!agent) return c.json({ error: { code: "unauthorized", message: "not this agent's token" } }, 401);
      const body = c.req.valid("json");
      const { finished, job } = await group.run(
        () =>
          inTransaction(() => {
            const done = body.finished ? finishOne(agentId, body.finished) : undefined;
            const finishedAnswer = body.finished ? { jobId: body.finished.jobId, accepted: done !== undefined, ...(done ? { status: done.status } : {}) } : undefined;
            return { finished: finishedAnswer, job: body.status === "draining" ? null : claim(agentId, agent.labels) };
          }) as { finished?: { jobId: string; accepted: boolean; status?: string }; job: ReturnType<typeof claim> },
        agentId,
      );
      return c.json({ acknowledged: true as const, job, cancelJobIds: [], heartbeatIntervalSeconds: 10, ...(finished ? { finished } : {}) }, 200);
    },
  );
  app.post("/v1/jobs/:jobId/status", async (c) => {
    const body = (await c.req.json()) as { leaseId: string; status: string };
    const agentId = agentByToken.get(c.req.header("authorization") ?? "");
    if (!agentId) return c.json({ error: { code: "unauthorized", message: "unknown token" } }, 401);
    const done = await group.run(() => inTransaction(() => finishOne(agentId, { jobId: c.req.param("jobId"), ...body })) as { status: string } | undefined, agentId);
    return done ? c.json({ job: { id: c.req.param("jobId"), status: done.status } }, 200) : c.json({ error: { code: "stale_lease", message: "not held" } }, 409);
  });
  app.post("/v1/jobs", async (c) => {
    const body = (await c.req.json()) as { spec: { kind: string; app: string }; target: { labels: string[] } };
    const id = `job_${Date.now().toString(36)}${randomUUID().slice(0, 8)}`;
    insertJob.run(id, body.spec.kind, body.spec.app, JSON.stringify([...new Set(body.target.labels)].sort()), JSON.stringify(body.spec), Date.now());
    return c.json({ job: { id } }, 201);
  });
  app.get("/v1/jobs", (c) => c.json({ jobs: byStatus.all(c.req.query("status"), Number(c.req.query("limit") ?? 50)) }, 200));

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: Number(env.DEPLOYBOT_PORT ?? 0), hostname: env.DEPLOYBOT_HOST ?? "127.0.0.1" }, () => resolve(s));
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        sqlite.close();
      }),
  };
}
