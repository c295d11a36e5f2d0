/**
 * One racing controller process for pgJobState.test.ts: claims, starts and finishes jobs for its
 * agents on the shared database until no job is pending, then prints the ids it claimed.
 * argv: database URL, agents as JSON [{id, hostname, labels}].
 */
import pino from "pino";
import { connectPg } from "../../src/db/pg";
import { PgJobState } from "../../src/services/pgJobState";

const [url, agentsJson] = process.argv.slice(2) as [string, string];
const agents = JSON.parse(agentsJson) as Array<{ id: string; hostname: string; labels: string[] }>;
const sql = connectPg(url, { max: 4, name: `racer-${process.pid}` });
const state = new PgJobState(sql, { clock: Date.now, logger: pino({ level: "silent" }) });
const claimed: string[] = [];
// every agent of this process heartbeats concurrently, as agents of one controller do
await Promise.all(
  agents.map(async (agent) => {
    for (;;) {
      const job = await state.claim(agent, 60_000);
      if (!job) {
        const [{ n }] = (await sql`SELECT count(*)::int AS n FROM jobs WHERE status = 'pending'`) as unknown as [{ n: number }];
        if (n === 0) return;
        continue;
      }
      claimed.push(job.id);
      if (!(await state.start(job.id, job.leaseId!, 60_000))) throw new Error(`start refused for ${job.id}`);
      if (!(await state.finish(job.id, job.leaseId!, { status: "succeeded" }))) throw new Error(`finish refused for ${job.id}`);
    }
  }),
);
await sql.end();
process.stdout.write(JSON.stringify(claimed));
