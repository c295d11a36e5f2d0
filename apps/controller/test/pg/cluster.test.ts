/**
 * Several controllers on one PostgreSQL database: wake-ups through LISTEN/NOTIFY and singleton
 * work under advisory locks, handed over when the holder is killed with -9.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres, } from "../../../../test/support/postgres";
import { connectPg, } from "../../src/db/pg";
import { Notifier } from "../../src/services/notifier";
import { PgLeader, PgOutboxFollower, PgOutboxListener } from "../../src/services/pgCluster";
import { PgJobState } from "../../src/services/pgJobState";
import { migratedDatabase } from "./database";
import { newJob } from "./jobFixtures";

const silent = pino({ level: "silent" });

describePostgres("several controllers on PostgreSQL", () => {
  const db = migratedDatabase();

  test("a job queued through one controller wakes a long-poll waiting on another (NOTIFY, no polling)", async () => {
    const { url } = db;
    // controller A: its own connections, a long-poll waiting for web-1
    const listener = new PgOutboxListener(url, 3_600_000); // no polling: only NOTIFY can wake it
    await listener.start();
    const poolA = connectPg(url, { max: 2 });
    const notifier = new Notifier();
    const heard: string[] = [];
    const follower = new PgOutboxFollower(poolA, listener, (e) => {
      heard.push(e.type);
      notifier.jobChanged(e.data as never);
    });
    await follower.start();
    let woke = false;
    const waiting = notifier.wait({ agentId: "agt_a", hostname: "web-1", labels: [] }, 120_000).then(() => {
      woke = true;
    });
    // controller B queues
    const poolB = connectPg(url, { max: 2 });
    const b = new PgJobState(poolB, { clock: Date.now, logger: silent });
    await b.queue(newJob({ host: "web-2" }), null); // another host's job wakes nobody here
    await b.queue(newJob({ host: "web-1" }), null);
    await waiting;
    expect(woke).toBe(true);
    expect(notifier.waiting).toBe(0);
    expect(heard).toEqual(["job.changed", "job.changed"]);
    follower.stop();
    await listener.stop();
    await poolA.end();
    await poolB.end();
  }, 150_000);

  test("one of three controllers holds a singleton; kill -9 of the holder hands it over", async () => {
    const { url } = db;
    const key = 0x7e57_0001;
    const holder = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./leaderHolder.ts", import.meta.url)), url, String(key)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on("data", (d: Buffer) => d.toString().includes("held") && resolve());
        holder.once("exit", (code) => reject(new Error(`holder exited with ${code}`)));
      });
      const others = [new PgLeader(url, key, "a"), new PgLeader(url, key, "b")];
      expect(await Promise.all(others.map((l) => l.holds()))).toEqual([false, false]);
      const killedAt = Date.now();
      holder.kill("SIGKILL");
      let holders: boolean[] = [];
      for (;;) {
        holders = await Promise.all(others.map((l) => l.holds()));
        if (holders.some(Boolean)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(`singleton handed over ${Date.now() - killedAt} ms after kill -9`);
      expect(holders.filter(Boolean)).toHaveLength(1);
      // and it stays with the one that took it
      expect(await Promise.all(others.map((l) => l.holds()))).toEqual(holders);
      await Promise.all(others.map((l) => l.stop()));
    } finally {
      holder.kill("SIGKILL");
    }
  }, 120_000);
});
