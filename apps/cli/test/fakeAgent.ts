import { expect } from "vitest";
import { JOIN, type startTestController } from "../../controller/test/server";

type Controller = Awaited<ReturnType<typeof startTestController>>;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tokens of the hosts registered so far: a host that exists re-registers with its own, as the real agent does. */
const tokens = new Map<string, string>();

/**
 * An agent spoken over HTTP, so the CLI sees real jobs claimed, logged and ended. It registers
 * as a current agent does; `identity` overrides its version and capabilities (an older agent).
 */
export async function fakeAgent(ctl: Controller, hostname: string, identity: { version?: string; capabilities?: Record<string, unknown> } = {}) {
  const { version = "test", capabilities = { volumes: true } } = identity;
  const reg = await ctl.call("POST", "/v1/agents/register", tokens.get(`${ctl.url}|${hostname}`) ?? JOIN, { hostname, version, capabilities });
  expect(reg.status).toBe(200);
  const { id } = reg.body.agent as { id: string };
  const token = reg.body.token as string;
  tokens.set(`${ctl.url}|${hostname}`, token);
  const agent = {
    async claim(): Promise<{ id: string; leaseId: string }> {
      for (let i = 0; i < 20; i++) {
        const hb = await ctl.call("POST", `/v1/agents/${id}/heartbeat?wait=2`, token, {});
        expect(hb.status).toBe(200);
        if (hb.body.job) return hb.body.job;
      }
      throw new Error("no job was handed out");
    },
    status: (jobId: string, leaseId: string, status: string, error?: string) =>
      ctl.call("POST", `/v1/jobs/${jobId}/status`, token, { leaseId, status, ...(error ? { error } : {}) }),
    logs: (jobId: string, leaseId: string, offset: number, lines: string[]) =>
      ctl.call("POST", `/v1/jobs/${jobId}/logs`, token, {
        leaseId,
        offset,
        entries: lines.map((line) => ({ ts: new Date().toISOString(), stream: "stdout", line })),
      }),
    /** ships app containers' output at `offset`, as the agent's app-log shipper does */
    appLogs: (offset: number, entries: { app: string; container: string; line: string }[]) =>
      ctl.call("POST", `/v1/agents/${id}/app-logs`, token, { offset, entries: entries.map((e) => ({ ts: new Date().toISOString(), stream: "stdout", ...e })) }),
    /** claims the next job, logs `lines`, ends it with `status` */
    async run(lines: string[], status = "succeeded", error?: string) {
      const job = await agent.claim();
      expect((await agent.status(job.id, job.leaseId, "running")).status).toBe(200);
      expect((await agent.logs(job.id, job.leaseId, 0, lines)).status).toBe(200);
      await sleep(300);
      expect((await agent.status(job.id, job.leaseId, status, error)).status).toBe(200);
      return job;
    },
  };
  return agent;
}
