/**
 * Live app logs across controllers: container output an agent ships to controller A reaches a
 * reader following the app on controller B (NOTIFY after the commit), small batches in the
 * notice, large ones read back from app_logs by host and id range; A's readers hear each line once.
 */
import type { AppLogLine } from "@deploybot/protocol";
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { testConfig } from "../../src/config";
import { openPgDb } from "../../src/db/pgFacade";
import { agents } from "../../src/db/schema";
import { AppLogService } from "../../src/services/appLogs";
import type { Deps } from "../../src/services/deps";
import { PgAppLogRelay } from "../../src/services/pgAppLogRelay";

const silent = pino({ level: "silent" });

describePostgres("app logs across controllers on PostgreSQL", () => {
  test("lines stored through controller A reach a follower on controller B once, small and large batches alike", async () => {
    const fresh = await freshDatabase();
    const [dbA, dbB] = [await openPgDb(fresh.url, { max: 2 }), await openPgDb(fresh.url, { max: 2 })];
    try {
      const controller = (db: typeof dbA) => {
        const logs = new AppLogService({ db, config: testConfig(), clock: Date.now, logger: silent } as unknown as Deps);
        return { logs, relay: new PgAppLogRelay(db.$pg, logs, silent) };
      };
      const [a, b] = [controller(dbA), controller(dbB)];
      await Promise.all([a.relay.start(), b.relay.start()]);
      await dbA.insert(agents).values({ id: "agt_applogs", hostname: "web-1", version: "1.0.0", registeredAt: 0 });

      const heardOnB: AppLogLine[] = [];
      const heardOnA: AppLogLine[] = [];
      b.logs.subscribe("web", undefined, (lines) => heardOnB.push(...lines));
      a.logs.subscribe("web", undefined, (lines) => heardOnA.push(...lines));
      const entry = (i: number, text: string) => ({ app: "web", container: "web-1-abc", ts: new Date().toISOString(), stream: "stdout" as const, line: `${text} ${i}` });
      const small = [entry(0, "hello"), entry(1, "world")];
      const large = Array.from({ length: 40 }, (_, i) => entry(2 + i, "x".repeat(400)));
      const agent = { id: "agt_applogs", hostname: "web-1" };
      let offset = await a.logs.append(agent, 0, small);
      offset = await a.logs.append(agent, offset, large);
      expect(offset).toBe(42);

      const deadline = Date.now() + 60_000;
      while (heardOnB.length < 42 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const expected = [...small, ...large].map((e) => e.line);
      expect(heardOnB.map((l) => l.line)).toEqual(expected);
      expect(heardOnB.every((l) => l.host === "web-1" && l.container === "web-1-abc")).toBe(true);
      // B heard what is stored, with the stored ids (a reader's Last-Event-ID works on either)
      expect(heardOnB.map((l) => l.id)).toEqual((await b.logs.read("web", {})).map((l) => l.id));
      // A's own readers heard each line once (its own notices are not handed back to it)
      await new Promise((r) => setTimeout(r, 300));
      expect(heardOnA.map((l) => l.line)).toEqual(expected);
      await Promise.all([a.relay.stop(), b.relay.stop()]);
    } finally {
      await Promise.all([dbA.close(), dbB.close()]);
      await fresh.drop();
    }
  }, 120_000);
});
