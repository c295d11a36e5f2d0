/**
 * Calls through a client generated from /openapi.json (openapi-typescript + openapi-fetch).
 * `openapi.client.test.ts` type-checks this file against the types generated from the live
 * document (./api.gen.d.ts, written by the test, never checked in) and then runs it against a
 * real app: a field the document does not promise, or promises with another type, fails tsc.
 */
import createClient from "openapi-fetch";
import type { paths } from "./api.gen";

export type Fetch = (request: Request) => Promise<Response>;

/** `data` of a 2xx answer, or a thrown error carrying the status and the envelope. */
function ok<T>(r: { data?: T; error?: { error: { code: string; message: string } }; response: Response }): T {
  if (r.data === undefined) throw new Error(`${r.response.status} ${r.error?.error.code}: ${r.error?.error.message}`);
  return r.data;
}

export async function exerciseApi(fetch: Fetch, tokens: { admin: string; join: string }) {
  const as = (token: string) => createClient<paths>({ baseUrl: "http://controller.test", fetch, headers: { authorization: `Bearer ${token}` } });
  const admin = as(tokens.admin);

  const health = ok(await admin.GET("/healthz"));
  const created = ok(await admin.POST("/v1/tokens", { body: { name: "ci", scope: "deploy" } }));
  const deployer = as(created.token);

  const registered = ok(await as(tokens.join).POST("/v1/agents/register", { body: { hostname: "web-1", labels: ["builder"], version: "test" } }));
  const agent = as(registered.token);
  const submitted = ok(await deployer.POST("/v1/jobs", { body: { repo: "acme/web", ref: "main", host: "web-1" } }));
  const beat = ok(
    await agent.POST("/v1/agents/{agentId}/heartbeat", {
      params: { path: { agentId: registered.agent.id } },
      body: { status: "idle", containers: [{ id: "c1", app: "web", state: "running" }] },
    }),
  );
  const claimed = beat.job;
  if (!claimed) throw new Error("the heartbeat handed out no job");
  const jobPath = { params: { path: { jobId: claimed.id } } };
  const appended = ok(
    await agent.POST("/v1/jobs/{jobId}/logs", {
      ...jobPath,
      body: { leaseId: claimed.leaseId, offset: claimed.logOffset, entries: [{ ts: new Date(0).toISOString(), stream: "stdout", line: "hello" }] },
    }),
  );
  const finished = ok(await agent.POST("/v1/jobs/{jobId}/status", { ...jobPath, body: { leaseId: claimed.leaseId, status: "succeeded" } }));
  const logs = ok(await admin.GET("/v1/jobs/{jobId}/logs", { ...jobPath, params: { ...jobPath.params, query: { after: -1 } } }));
  const page = ok(await admin.GET("/v1/jobs", { params: { query: { limit: 10 } } }));

  const hosts = ok(await admin.GET("/v1/hosts"));
  const apps = ok(await admin.GET("/v1/apps"));
  const web = ok(await admin.GET("/v1/apps/{name}", { params: { path: { name: "web" } } }));
  const deployment = ok(await deployer.POST("/v1/deployments", { body: { app: "web", ref: "main" } })).deployment;
  const deployments = ok(await admin.GET("/v1/deployments", { params: { query: { app: "web" } } }));

  const secretPath = { params: { path: { name: "api", key: "DATABASE_URL" } } };
  const secret = ok(await admin.PUT("/v1/apps/{name}/secrets/{key}", { ...secretPath, body: { value: "postgres://x" } })).secret;
  const deleted = await admin.DELETE("/v1/apps/{name}/secrets/{key}", secretPath);
  const noRegistry = await deployer.POST("/v1/builds", { body: { name: "hello", version: "1.0.0", files: { Dockerfile: "FROM scratch" } } });

  return {
    healthy: health.ok,
    tokenScope: created.scope,
    submittedStatus: submitted.job.status,
    claimedKind: claimed.kind,
    logOffset: appended.offset,
    finishedStatus: finished.job.status,
    finishedAt: finished.job.finishedAt,
    logLines: logs.entries.map((e) => e.line),
    jobIds: page.jobs.map((j) => j.id),
    nextCursor: page.nextCursor,
    containerStates: hosts.hosts.flatMap((h) => h.containers.map((c) => c.state ?? null)),
    appNames: apps.apps.map((a) => a.name),
    webPorts: web.app.run.ports,
    webCurrentRelease: web.app.currentRelease?.id ?? null,
    deploymentStatus: deployment.status,
    deploymentIds: deployments.deployments.map((d) => d.id),
    secretKey: secret.key,
    deletedStatus: deleted.response.status,
    buildErrorCode: noRegistry.error?.error.code ?? null,
  };
}
