/**
 * One controller's job traffic on PostgreSQL for `pnpm bench:pg`, in its own process: AGENTS
 * concurrent agent loops claim and finish jobs through PgJobState until none is pending, then
 * empty-queue claim polls (the queue part of an idle heartbeat) for POLL_MS. Waits for "go" over
 * IPC, reports {cycles, cyclesMs, polls, pollMs}.
 */
import pino from "pino";
import { connectPg } from "../apps/controller/src/db/pg";
import { PgJobState } from "../apps/controller/src/services/pgJobState";

const url = process.env.BENCH_PG_URL!;
const index = Number(process.env.BENCH_INDEX ?? 0);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 8);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 2000);
const sql = connectPg(url, { max: AGENTS, name: `bench controller ${index}` });
const state = new PgJobState(sql, { clock: Date.now, logger: pino({ level: "silent" }) });
const agents = Array.from({ length: AGENTS }, (_, i) => ({ id: `agt_${index}_${i}`, hostname: "bench-1", labels: [] as string[], capabilities: { volumes: true } }));
await sql`SELECT 1`;
process.send?.("ready");
await new Promise<void>((resolve) => process.once("message", () => resolve()));

let cycles = 0;
const started = performance.now();
await Promise.all(
  agents.map(async (agent) => {
    for (;;) {
      const job = await state.claim(agent, 60_000);
      if (!job) return;
      await state.finish(job.id, job.leaseId!, { status: "succeeded" });
      cycles++;
    }
  }),
);
const cyclesMs = performance.now() - started;
let polls = 0;
const idle = { id: `agt_${index}_idle`, hostname: "idle-host", labels: ["idle"], capabilities: { volumes: true } };
const pollStart = performance.now();
await Promise.all(
  agents.map(async () => {
    while (performance.now() - pollStart < POLL_MS) {
      if (await state.claim(idle, 60_000)) throw new Error("an idle poll claimed a job");
      polls++;
    }
  }),
);
const pollMs = performance.now() - pollStart;

// An idle heartbeat's database work on PostgreSQL, statement for statement what the services do
// on SQLite (AgentService.authenticate, LeaseService.reconcile, claimNextJob): the agent's identity
// row, the jobs it holds, an empty claim. The liveness write is batched per second per controller.
let heartbeats = 0;
const seen = new Set<string>();
const beatStart = performance.now();
let flushedAt = beatStart;
await Promise.all(
  agents.map(async (a) => {
    const agent = { ...idle, id: a.id };
    while (performance.now() - beatStart < POLL_MS) {
      const [row] = await sql<{ token_version: number; revoked: boolean }[]>`
        SELECT id, hostname, labels, version, capabilities, token_version, revoked FROM agents WHERE id = ${agent.id}`;
      if (!row || row.revoked || row.token_version !== 1) throw new Error("agent not authenticated");
      await sql`SELECT * FROM jobs WHERE agent_id = ${agent.id} AND status IN ('assigned', 'running')`;
      if (await state.claim(agent, 60_000)) throw new Error("an idle heartbeat claimed a job");
      seen.add(agent.id);
      heartbeats++;
      if (performance.now() - flushedAt >= 1000) {
        flushedAt = performance.now();
        const ids = [...seen];
        seen.clear();
        await sql`UPDATE agents SET last_heartbeat_at = ${Date.now()} WHERE id = ANY(${ids})`;
      }
    }
  }),
);
const heartbeatMs = performance.now() - beatStart;
await sql.end();
process.send?.({ cycles, cyclesMs, polls, pollMs, heartbeats, heartbeatMs });
process.disconnect();
