import { type ClaimedJob, heartbeatResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import type { PgFacadeDb } from "../src/db/pgFacade";
import { ADMIN, type Harness, seedJob, test, testEngine } from "./fixture";

/**
 * The heartbeat path's one COMMIT per job: a final report in the heartbeat of an agent that is
 * then idle finishes the job and claims its next one in one transaction (JobState.finishAndClaim
 * on SQLite; the same pair as two calls on PostgreSQL), and the heartbeat does not run its own
 * reconcile/claim round after it.
 */

type Event = { id: number; type: string; data: { id: string; transition: string; agentId: string | null } };
const outbox = (h: Harness) =>
  (h.services.jobs as unknown as { deps: { outbox: { after(id: number, n: number): Promise<Event[]> } } }).deps.outbox.after(0, 10_000);
/** the job.changed rows after `since`, as "transition job" */
const changes = async (h: Harness, since: number) =>
  (await outbox(h)).filter((e) => e.id > since && e.type === "job.changed").map((e) => `${e.data.transition} ${e.data.id}`);
const lastId = async (h: Harness) => (await outbox(h)).at(-1)?.id ?? 0;
const jobOf = async (h: Harness, id: string) => (await (await h.call("GET", `/v1/jobs/${id}`, { token: ADMIN })).json()).job;
const submit = async (h: Harness, ref: string) => (await (await h.submit({ ...seedJob, ref })).json()).job.id as string;

/** web-1 holds one job (claimed by a heartbeat) and `waiting` more wait in the queue. */
async function holding(h: Harness, waiting = 1) {
  const agent = await h.register("web-1");
  const jobId = await submit(h, "v1");
  const claimed = heartbeatResponse.parse(await (await h.heartbeat(agent)).json()).job!;
  expect(claimed.id).toBe(jobId);
  const next: string[] = [];
  for (let i = 0; i < waiting; i++) next.push(await submit(h, `v${i + 2}`));
  return { agent, jobId, leaseId: claimed.leaseId, next };
}

const reporting = (jobId: string, leaseId: string, extra: Record<string, unknown> = {}) => ({
  status: "busy",
  heldJobIds: [jobId],
  finished: { jobId, leaseId, status: "succeeded", logLines: 0 },
  ...extra,
});

/** Makes every claim (pending -> assigned) throw in the database until the returned function runs. */
async function failingClaims(h: Harness): Promise<() => Promise<void>> {
  if (testEngine === "sqlite") {
    const sqlite = h.db.$client;
    sqlite.exec(`CREATE TRIGGER test_claims_fail BEFORE UPDATE OF status ON jobs
      WHEN OLD.status = 'pending' AND NEW.status = 'assigned' BEGIN SELECT RAISE(ABORT, 'claims fail in this test'); END`);
    return async () => void sqlite.exec("DROP TRIGGER test_claims_fail");
  }
  const pg = (h.db as unknown as PgFacadeDb).$pg;
  await pg.unsafe(`CREATE FUNCTION test_claims_fail() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'claims fail in this test'; END $$`);
  await pg.unsafe(`CREATE TRIGGER test_claims_fail BEFORE UPDATE OF status ON jobs FOR EACH ROW
    WHEN (OLD.status = 'pending' AND NEW.status = 'assigned') EXECUTE FUNCTION test_claims_fail()`);
  return async () => {
    await pg.unsafe("DROP TRIGGER test_claims_fail ON jobs");
    await pg.unsafe("DROP FUNCTION test_claims_fail()");
  };
}

describe("finish and next claim in one heartbeat", () => {
  test("commits both: the finished row, then the claimed one, and no other round", async ({ h }) => {
    const { agent, jobId, leaseId, next } = await holding(h);
    const since = await lastId(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId))).json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(beat.job?.id).toBe(next[0]);
    // nothing between them, and no requeue or second claim by a reconcile round after the pair
    expect(await changes(h, since)).toEqual([`finished ${jobId}`, `claimed ${next[0]}`]);
    expect(await jobOf(h, jobId)).toMatchObject({ status: "succeeded" });
    expect(await jobOf(h, next[0]!)).toMatchObject({ status: "assigned", agentId: agent.id, attempts: 1 });
    // the agent's next heartbeat holds it: it stays assigned under the same lease
    const after = await lastId(h);
    const held = heartbeatResponse.parse(await (await h.heartbeat(agent, { status: "busy", heldJobIds: [next[0]] })).json());
    expect(held.job).toBeNull();
    expect(held.cancelJobIds).toEqual([]);
    expect(await changes(h, after)).toEqual([]);
    // under the lease the pair handed out
    const done = await h.call("POST", `/v1/jobs/${next[0]}/status`, { token: agent.token, body: { leaseId: beat.job!.leaseId, status: "succeeded" } });
    expect(done.status).toBe(200);
  });

  test("with nothing left to claim the finish is accepted and the answer carries no job", async ({ h }) => {
    const { agent, jobId, leaseId } = await holding(h, 0);
    const since = await lastId(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId))).json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(beat.job).toBeNull();
    expect(await changes(h, since)).toEqual([`finished ${jobId}`]);
  });

  test("a claim that throws is rolled back alone: the finish stays and the heartbeat answers", async ({ h }) => {
    const { agent, jobId, leaseId, next } = await holding(h);
    const since = await lastId(h);
    const restore = await failingClaims(h);
    const res = await h.heartbeat(agent, reporting(jobId, leaseId));
    await restore();
    expect(res.status).toBe(200);
    const beat = heartbeatResponse.parse(await res.json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(beat.job).toBeNull();
    expect(await changes(h, since)).toEqual([`finished ${jobId}`]);
    expect(await jobOf(h, jobId)).toMatchObject({ status: "succeeded" });
    expect(await jobOf(h, next[0]!)).toMatchObject({ status: "pending", agentId: null, attempts: 0 });
    expect(h.logLines.some((l) => l.includes("claiming the next job after a finish failed"))).toBe(true);
    // the next heartbeat of the now idle agent takes it
    const again = heartbeatResponse.parse(await (await h.heartbeat(agent, { status: "idle", heldJobIds: [] })).json());
    expect(again.job?.id).toBe(next[0]);
  });

  test("a refused finish claims nothing", async ({ h }) => {
    const { agent, jobId, next } = await holding(h);
    const since = await lastId(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, "lse_stale"))).json());
    expect(beat.finished).toMatchObject({ jobId, accepted: false, error: { httpStatus: 409, code: "stale_lease" } });
    expect(beat.job).toBeNull();
    expect(await changes(h, since)).toEqual([]);
    expect(await jobOf(h, jobId)).toMatchObject({ status: "assigned", agentId: agent.id });
    expect((await jobOf(h, next[0]!)).status).toBe("pending");
  });

  test("an agent that says it holds another job gets no claim", async ({ h }) => {
    const { agent, jobId, leaseId, next } = await holding(h, 2);
    // a second job held by the same agent, claimed as a heartbeat would
    const other = await h.services.leases.claimNextJob({ id: agent.id, hostname: "web-1", labels: [], capabilities: { volumes: true } });
    expect(other?.id).toBe(next[0]);
    const since = await lastId(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId, { heldJobIds: [jobId, next[0]] }))).json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(beat.job).toBeNull();
    expect(await changes(h, since)).toEqual([`finished ${jobId}`]);
    expect(await jobOf(h, next[0]!)).toMatchObject({ status: "assigned", agentId: agent.id });
    expect((await jobOf(h, next[1]!)).status).toBe("pending");
  });

  test("an agent the controller sees holding another job: the pair claims nothing, the round reconciles as before", async ({ h }) => {
    const { agent, jobId, leaseId, next } = await holding(h, 2);
    // the agent lost track of a second job it was handed (its answer never arrived, say)
    const lost = await h.services.leases.claimNextJob({ id: agent.id, hostname: "web-1", labels: [], capabilities: { volumes: true } });
    expect(lost?.id).toBe(next[0]);
    const since = await lastId(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId))).json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    // as without the pair: the job it does not hold is handed back, then the oldest is claimed
    expect(await changes(h, since)).toEqual([`finished ${jobId}`, `requeued ${next[0]}`, `claimed ${next[0]}`]);
    expect(beat.job?.id).toBe(next[0]);
  });

  test("an older agent without `finished` is unchanged: status route, then an idle heartbeat claims", async ({ h }) => {
    const { agent, jobId, leaseId, next } = await holding(h);
    const since = await lastId(h);
    const res = await h.call("POST", `/v1/jobs/${jobId}/status`, { token: agent.token, body: { leaseId, status: "succeeded" } });
    expect(res.status).toBe(200);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, { status: "idle", heldJobIds: [] })).json());
    expect(beat.finished).toBeUndefined();
    expect(beat.job?.id).toBe(next[0]);
    expect(await changes(h, since)).toEqual([`finished ${jobId}`, `claimed ${next[0]}`]);
  });

  test.skipIf(testEngine !== "sqlite")("SQLite: several agents' pairs in one turn share a COMMIT, one member each", async ({ h }) => {
    const agents = [];
    for (const host of ["web-1", "web-2", "web-3"]) agents.push({ id: (await h.register(host)).id, hostname: host, labels: [] as string[], capabilities: { volumes: true } });
    const held: ClaimedJob[] = [];
    for (const a of agents) {
      await h.submit({ ...seedJob, host: a.hostname });
      held.push((await h.services.leases.claimNextJob(a))!);
      await h.submit({ ...seedJob, host: a.hostname, ref: "v2" });
    }
    const state = h.services.jobState.state;
    const before = { ...state.group.stats };
    const pairs = await Promise.all(
      agents.map((a, i) => h.services.jobState.finishAndClaim(held[i]!.id, held[i]!.leaseId, { status: "succeeded" }, a, 60_000)),
    );
    // the first runs at once; the other two wait for the turn's check phase and commit together
    expect(state.group.stats.groups - before.groups).toBe(1);
    expect(state.group.stats.members - before.members).toBe(2);
    for (const [i, p] of pairs.entries()) {
      expect(p.finished).toMatchObject({ id: held[i]!.id, status: "succeeded" });
      expect(p.claimed).toMatchObject({ status: "assigned", agentId: agents[i]!.id });
      expect(p.claimTried).toBe(true);
    }
  });
});
