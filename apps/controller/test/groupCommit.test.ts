import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import { createApp } from "../src/app";
import { type Config, testConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { parseAppsConfig } from "../src/services/appsConfig";
import { JobState } from "../src/services/jobState";
import { SqliteJobStore } from "../src/services/jobStore";
import { SqliteJobTransitions } from "../src/services/jobTransitions";
import { APPS_YAML } from "./appsYaml";

/**
 * Group commit (services/groupCommit.ts) on a real database file: a second connection, as
 * another process would, sees only what was committed.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setup(jobCount = 4, overrides: Partial<Config> = {}) {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-group-"));
  dirs.push(dir);
  const path = join(dir, "deploybot.db");
  const db = openDb(path, { init: true });
  const config = testConfig(overrides);
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const logLines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(line) });
  const { deps } = createApp({ db, config, logger, apps: () => apps, secretKey: config.secretKey! });
  // the synchronous job-state module itself, as the services' SQLite transitions wrap it
  const state = new JobState(deps, new SqliteJobStore(deps.db), deps.outbox);
  const sqlite = db.$client;
  sqlite.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_a', 'host-a', 'test', 0), ('agt_b', 'host-b', 'test', 0)").run();
  const ids: string[] = [];
  for (let i = 0; i < jobCount; i++) {
    const { row } = state.queue(
      {
        id: `job_${String(i).padStart(4, "0")}`, // ids order the queue: job_0000 is the oldest
        kind: "build",
        app: "web",
        targetHost: i % 2 === 0 ? "host-a" : "host-b",
        spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } },
        maxAttempts: 3,
        timeoutSeconds: 60,
        queueDeadline: Date.now() + 3_600_000,
        createdAt: Date.now(),
      },
      null,
    );
    ids.push(row.id);
  }
  const reader = new Database(path, { readonly: true });
  const statusOf = (id: string) => (reader.prepare("SELECT status FROM jobs WHERE id = ?").pluck().get(id) as string);
  const outboxCount = () => reader.prepare("SELECT count(*) FROM outbox").pluck().get() as number;
  const close = () => {
    reader.close();
    sqlite.close();
  };
  return { state, sqlite, ids, statusOf, outboxCount, logLines, close, dir };
}

const agentA = { id: "agt_a", hostname: "host-a", labels: [], capabilities: { volumes: true } };
const agentB = { id: "agt_b", hostname: "host-b", labels: [], capabilities: { volumes: true } };

describe("group commit of job transitions", () => {
  test("a lone transition runs at once in its own transaction", async () => {
    const t = setup();
    const claimed = t.state.group.run(() => t.state.claim(agentA, 30_000));
    // before any await: already committed, nothing grouped
    expect(t.statusOf(t.ids[0]!)).toBe("assigned");
    expect((await claimed)?.id).toBe(t.ids[0]);
    expect(t.state.group.stats).toEqual({ groups: 0, members: 0 });
    t.close();
  });

  test("the transitions of one turn after the first share one commit, and each answer waits for it", async () => {
    const t = setup();
    const seenAtAnswer: string[] = [];
    const answers = [agentA, agentB, agentA, agentB].map((agent) =>
      t.state.group.run(() => t.state.claim(agent, 30_000)).then((row) => {
        // what another connection sees the moment the caller hears of its claim
        seenAtAnswer.push(t.statusOf(row!.id));
        return row!.id;
      }),
    );
    // the first ran at once; the other three wait for the group
    expect(t.ids.map(t.statusOf)).toEqual(["assigned", "pending", "pending", "pending"]);
    const claimedIds = await Promise.all(answers);
    expect(new Set(claimedIds)).toEqual(new Set(t.ids));
    expect(seenAtAnswer).toEqual(["assigned", "assigned", "assigned", "assigned"]);
    expect(t.state.group.stats).toEqual({ groups: 1, members: 3 });
    // every transition kept its own outbox row
    expect(t.outboxCount()).toBe(4 + 4);
    t.close();
  });

  test("a transition that throws is undone alone; the others of its group commit", async () => {
    const t = setup();
    await t.state.group.run(() => t.state.claim(agentA, 30_000)); // takes this turn's lone slot
    const first = t.state.group.run(() => t.state.claim(agentA, 30_000));
    const failing = t.state.group.run(() => {
      t.sqlite.prepare("UPDATE jobs SET error = 'half-done' WHERE id = ?").run(t.ids[3]);
      throw new Error("refused halfway");
    });
    const last = t.state.group.run(() => t.state.claim(agentB, 30_000));
    await expect(failing).rejects.toThrow("refused halfway");
    expect((await first)?.id).toBe(t.ids[2]);
    expect((await last)?.id).toBe(t.ids[1]);
    expect(t.sqlite.prepare("SELECT error FROM jobs WHERE id = ?").pluck().get(t.ids[3])).toBeNull();
    expect(t.statusOf(t.ids[3]!)).toBe("pending");
    t.close();
  });

  test("a commit that fails refuses every transition of the group and leaves nothing behind", async () => {
    const t = setup();
    await t.state.group.run(() => t.state.claim(agentA, 30_000));
    const outboxBefore = t.outboxCount();
    const grouped = [
      t.state.group.run(() => t.state.claim(agentB, 30_000)),
      // foreign keys are checked at COMMIT from here on, and this claim names an agent that does
      // not exist: the statement passes, the COMMIT fails
      t.state.group.run(() => {
        t.sqlite.pragma("defer_foreign_keys = ON");
        return t.state.claim({ ...agentA, id: "agt_missing" }, 30_000);
      }),
      t.state.group.run(() => t.state.claim(agentB, 30_000)),
    ];
    const outcomes = await Promise.allSettled(grouped);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected", "rejected"]);
    for (const o of outcomes) expect(String((o as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    expect([t.ids[1], t.ids[2], t.ids[3]].map((id) => t.statusOf(id!))).toEqual(["pending", "pending", "pending"]);
    expect(t.outboxCount()).toBe(outboxBefore);
    expect(t.sqlite.inTransaction).toBe(false);
    expect(t.logLines.some((l) => l.includes("failed to commit"))).toBe(true);
    // and the next transition works as before
    expect((await t.state.group.run(() => t.state.claim(agentB, 30_000)))?.id).toBe(t.ids[1]);
    t.close();
  });

  test("other work in the same turn never joins a group: its writes, a VACUUM INTO and a PRAGMA run on their own", async () => {
    const t = setup();
    await t.state.group.run(() => t.state.claim(agentA, 30_000));
    const grouped = [
      t.state.group.run(() => {
        t.sqlite.pragma("defer_foreign_keys = ON");
        return t.state.claim({ ...agentA, id: "agt_missing" }, 30_000); // this group's COMMIT will fail
      }),
      t.state.group.run(() => t.state.claim(agentB, 30_000)),
    ];
    // the same turn, while the group waits: none of this may end up inside its transaction
    expect(t.sqlite.inTransaction).toBe(false);
    t.sqlite.prepare("INSERT INTO outbox_cursors (name, last_id, updated_at) VALUES ('bystander', 7, 0)").run();
    t.sqlite.exec(`VACUUM INTO '${join(t.dir, "copy.db")}'`); // refused inside a transaction
    expect(t.sqlite.pragma("journal_mode", { simple: true })).toBe("wal");
    const outcomes = await Promise.allSettled(grouped);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    // the bystander's write was its own and stays
    expect(t.sqlite.prepare("SELECT last_id FROM outbox_cursors WHERE name = 'bystander'").pluck().get()).toBe(7);
    t.close();
  });

  test("inside a caller's own transaction a transition runs at once, as part of it", async () => {
    const t = setup();
    await t.state.group.run(() => t.state.claim(agentA, 30_000));
    let inner: Promise<unknown> | undefined;
    t.sqlite.transaction(() => {
      inner = t.state.group.run(() => t.state.claim(agentB, 30_000));
      expect(t.sqlite.prepare("SELECT status FROM jobs WHERE id = ?").pluck().get(t.ids[1])).toBe("assigned");
    })();
    expect(((await inner) as { id: string }).id).toBe(t.ids[1]);
    expect(t.state.group.stats).toEqual({ groups: 0, members: 0 });
    t.close();
  });

  test("DEPLOYBOT_GROUP_COMMIT=0: every transition commits on its own, at once", async () => {
    const t = setup(4, { groupCommit: false });
    const answers = [agentA, agentB, agentA, agentB].map((agent) => t.state.group.run(() => t.state.claim(agent, 30_000)));
    expect(t.ids.map(t.statusOf)).toEqual(["assigned", "assigned", "assigned", "assigned"]);
    await Promise.all(answers);
    expect(t.state.group.stats).toEqual({ groups: 0, members: 0 });
    t.close();
  });

  test("through the transitions: an empty queue answers at once outside any group; agents racing for one candidate each get their own job", async () => {
    const t = setup(2);
    const transitions = new SqliteJobTransitions(t.state);
    t.sqlite.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_p1', 'pool-1', 'test', 0), ('agt_p2', 'pool-2', 'test', 0), ('agt_idle', 'idle', 'test', 0)").run();
    const labelled: string[] = [];
    for (const n of [0, 1]) {
      const { row } = t.state.queue(
        {
          id: `job_pool_${n}`,
          kind: "build",
          app: "web",
          targetLabels: ["pool"],
          spec: { kind: "build", app: "web", source: { type: "image", image: `pool-${n}` } },
          maxAttempts: 3,
          timeoutSeconds: 60,
          queueDeadline: Date.now() + 3_600_000,
          createdAt: Date.now(),
        },
        null,
      );
      labelled.push(row.id);
    }
    await transitions.claim(agentA, 30_000); // takes this turn's lone slot
    const idle = transitions.claim({ id: "agt_idle", hostname: "idle", labels: [], capabilities: { volumes: true } }, 30_000);
    // both probe the same oldest pool job before their group runs
    const pool = [1, 2].map((n) => transitions.claim({ id: `agt_p${n}`, hostname: `pool-${n}`, labels: ["pool"], capabilities: { volumes: true } }, 30_000));
    expect(await idle).toBeNull();
    const got = await Promise.all(pool);
    expect(new Set(got.map((r) => r?.id))).toEqual(new Set(labelled));
    // the idle agent's claim wrote nothing and joined no group: only the two pool claims did
    expect(t.state.group.stats).toEqual({ groups: 1, members: 2 });
    t.close();
  });
});

// The grouping rule by caller: one agent's transitions run at once one after the other; a group
// forms only when another agent asks in a turn already taken.
describe("group commit: one caller's transitions follow each other at once", () => {
  test("one agent's claim, then its finish, in one turn: each committed before its answer, no group", async () => {
    const t = setup(6);
    const transitions = new SqliteJobTransitions(t.state);
    for (let i = 0; i < 3; i++) {
      const job = await transitions.claim(agentA, 30_000);
      expect(job && t.statusOf(job.id)).toBe("assigned");
      const finishing = transitions.finish(job!.id, job!.leaseId!, { status: "succeeded" }, agentA.id);
      // ran at once: committed before the caller even awaits it
      expect(t.statusOf(job!.id)).toBe("succeeded");
      expect((await finishing)?.status).toBe("succeeded");
    }
    expect(t.state.group.stats).toEqual({ groups: 0, members: 0 });
    t.close();
  });

  test("another agent in a turn already taken is grouped, and so is the first agent's next one while it waits", async () => {
    const t = setup(6);
    const transitions = new SqliteJobTransitions(t.state);
    const a = await transitions.claim(agentA, 30_000); // takes this turn for agent A
    const b = transitions.claim(agentB, 30_000); // another caller: waits for the group
    expect(t.statusOf(t.ids[1]!)).toBe("pending");
    // A's own next transition: something waits, so it joins the group instead of jumping ahead
    const aFinish = transitions.finish(a!.id, a!.leaseId!, { status: "succeeded" }, agentA.id);
    expect(t.statusOf(a!.id)).toBe("assigned");
    expect((await b)?.id).toBe(t.ids[1]);
    expect((await aFinish)?.status).toBe("succeeded");
    expect(t.statusOf(a!.id)).toBe("succeeded");
    expect(t.state.group.stats).toEqual({ groups: 1, members: 2 });
    t.close();
  });

  test("a finish under another agent's lease changes nothing, at once or grouped", async () => {
    const t = setup(4);
    const transitions = new SqliteJobTransitions(t.state);
    const a = await transitions.claim(agentA, 30_000);
    // agent B names A's job and lease: refused (undefined) and A's job stays assigned
    expect(await transitions.finish(a!.id, a!.leaseId!, { status: "failed" }, agentB.id)).toBeUndefined();
    expect(t.statusOf(a!.id)).toBe("assigned");
    t.close();
  });
});
