/**
 * The agent update rollout limit with several controllers: the slots are rows, so controllers on
 * one database offer at most DEPLOYBOT_AGENT_UPDATE_CONCURRENCY updates together, not each.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { testConfig } from "../../src/config";
import type { Db } from "../../src/db/client";
import { agents, agentUpdateSlots } from "../../src/db/schema";
import { AgentDistribution } from "../../src/services/agentDist";
import { AgentUpdates } from "../../src/services/agentUpdates";
import { eq } from "drizzle-orm";
import { onBothEngines } from "./database";

const LIMIT = 2;
const AGENTS = 12;

onBothEngines("agent update slots shared by the controllers of one database", (engine, open) => {
  describe(`agent update slots (${engine})`, () => {
    let db: Db;
    let now = 1_000_000;
    // three controllers: each its own AgentUpdates (its own memory), one database
    let controllers: AgentUpdates[];
    const fleet = Array.from({ length: AGENTS }, (_, i) => ({ id: `agt_upd_${engine}_${i}`, version: "0.1.0", capabilities: {} }));

    beforeAll(async () => {
      db = open();
      const dir = mkdtempSync(join(tmpdir(), "deploybot-dist-"));
      writeFileSync(join(dir, "manifest.json"), JSON.stringify({ version: "0.2.0", node: ">=20.19", files: { "deploybot-agent.mjs": { sha256: "a".repeat(64), size: 1 } } }));
      const deps = { db, config: testConfig({ agentUpdateConcurrency: LIMIT }), clock: () => now, logger: pino({ level: "silent" }) };
      controllers = [0, 1, 2].map(() => new AgentUpdates(deps, new AgentDistribution(dir)));
      for (const a of fleet) await db.insert(agents).values({ id: a.id, hostname: `${a.id}-host`, version: a.version, registeredAt: 0 });
    });

    test("idle agents heartbeating to three controllers at once: at most LIMIT offered in all", async () => {
      const answers = await Promise.all(fleet.map((a, i) => controllers[i % 3]!.offer(a, "idle", false)));
      const offered = fleet.filter((_a, i) => answers[i] !== null).map((a) => a.id);
      expect(offered).toHaveLength(LIMIT);
      expect((await db.select().from(agentUpdateSlots)).map((s) => s.agentId).sort()).toEqual([...offered].sort());
      // a holder asking another controller keeps its slot; the others still get nothing
      const holder = fleet.find((a) => a.id === offered[0])!;
      expect(await controllers[2]!.offer(holder, "idle", false)).toMatchObject({ version: "0.2.0" });
      const waiting = fleet.filter((a) => !offered.includes(a.id));
      expect((await Promise.all(waiting.map((a, i) => controllers[i % 3]!.offer(a, "idle", false)))).filter((x) => x !== null)).toEqual([]);
    });

    test("a holder back on the new version frees its slot for the next agent, whichever controller it asks", async () => {
      const slots = await db.select().from(agentUpdateSlots);
      const back = slots[0]!.agentId;
      await db.update(agents).set({ version: "0.2.0" }).where(eq(agents.id, back));
      fleet.find((a) => a.id === back)!.version = "0.2.0";
      const waiting = fleet.filter((a) => !slots.some((s) => s.agentId === a.id));
      const answers = await Promise.all(waiting.map((a, i) => controllers[(i + 1) % 3]!.offer(a, "idle", false)));
      expect(answers.filter((x) => x !== null)).toHaveLength(1);
      expect(await db.select().from(agentUpdateSlots)).toHaveLength(LIMIT);
    });

    test("slots of agents that never came back free after the window", async () => {
      now += 6 * 60_000;
      const held = new Set((await db.select().from(agentUpdateSlots)).map((s) => s.agentId));
      const waiting = fleet.filter((a) => !held.has(a.id) && a.version === "0.1.0");
      const answers = await Promise.all(waiting.map((a, i) => controllers[i % 3]!.offer(a, "idle", false)));
      expect(answers.filter((x) => x !== null)).toHaveLength(LIMIT);
    });
  });
});
