/**
 * A job held back on PostgreSQL because the agent that would take it cannot run its volumes says
 * why on the job, as on SQLite; several controllers write the reason once.
 */
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres } from "../../../../test/support/postgres";
import { waitingForVolumes } from "../../src/services/jobState";
import { PgJobState } from "../../src/services/pgJobState";
import { migratedDatabase } from "./database";
import { newJob } from "./jobFixtures";

describePostgres("held-back jobs on PostgreSQL", () => {
  const db = migratedDatabase();

  test("a job with volumes ahead of an old agent's next job stays pending with the reason; a current agent takes it and the reason goes", async () => {
    let now = Date.now();
    const warnings: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line).jobId) });
    const [a, b] = [new PgJobState(db.sql, { clock: () => now, logger }), new PgJobState(db.sql, { clock: () => now, logger })];
    await db.sql`INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_old', 'vol-1', '1.0.0', 0), ('agt_new', 'vol-1b', '2.0.0', 0)`;
    const volumes = (await a.queue(newJob({ host: "vol-1" }, { spec: { kind: "deploy", app: "web", run: { volumes: ["data:/data"] } } }), null)).row;
    const plain = (await a.queue(newJob({ host: "vol-1" }), null)).row;
    const old = { id: "agt_old", hostname: "vol-1", labels: [], version: "1.0.0" };

    const handed = await a.claim(old, 60_000);
    expect(handed?.id).toBe(plain.id);
    const held = await a.byId(volumes.id);
    expect(held?.status).toBe("pending");
    expect(held?.error).toBe(waitingForVolumes(old));
    // another controller, a minute later: the reason is there already, written once
    now += 61_000;
    expect(await b.claim(old, 60_000)).toBeNull();
    expect(warnings.filter((id) => id === volumes.id)).toHaveLength(1);

    // the agent upgraded: it takes the job, which no longer says it waits
    await db.sql`UPDATE jobs SET target_host = 'vol-1b' WHERE id = ${volumes.id}`;
    const taken = await b.claim({ id: "agt_new", hostname: "vol-1b", labels: [], version: "2.0.0", capabilities: { volumes: true } }, 60_000);
    expect(taken?.id).toBe(volumes.id);
    expect(taken?.error).toBeNull();
  });
});
