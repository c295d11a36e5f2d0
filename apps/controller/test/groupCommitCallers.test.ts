import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import { createApp } from "../src/app";
import { testConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { parseAppsConfig } from "../src/services/appsConfig";
import { JobState } from "../src/services/jobState";
import { SqliteJobStore } from "../src/services/jobStore";
import { SqliteJobTransitions } from "../src/services/jobTransitions";
import { APPS_YAML } from "./appsYaml";

/**
 * Group commit's grouping rule by caller (services/groupCommit.ts): one agent's transitions run
 * at once one after the other; a group forms only when another agent asks in a turn already
 * taken. A second connection sees what is committed.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setup(jobCount: number) {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-group-callers-"));
  dirs.push(dir);
  const path = join(dir, "deploybot.db");
  const db = openDb(path, { init: true });
  const config = testConfig({});
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const { deps } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
  const state = new JobState(deps, new SqliteJobStore(deps.db), deps.outbox);
  const transitions = new SqliteJobTransitions(state);
  const sqlite = db.$client;
  sqlite.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_a', 'host-a', 'test', 0), ('agt_b', 'host-b', 'test', 0)").run();
  const ids: string[] = [];
  for (let i = 0; i < jobCount; i++) {
    const { row } = state.queue(
      {
        id: `job_${String(i).padStart(4, "0")}`,
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
  const statusOf = (id: string) => reader.prepare("SELECT status FROM jobs WHERE id = ?").pluck().get(id) as string;
  const close = () => {
    reader.close();
    sqlite.close();
  };
  return { state, transitions, ids, statusOf, close };
}

const agentA = { id: "agt_a", hostname: "host-a", labels: [], capabilities: { volumes: true } };
const agentB = { id: "agt_b", hostname: "host-b", labels: [], capabilities: { volumes: true } };

describe("group commit: one caller's transitions follow each other at once", () => {
  test("one agent's claim, then its finish, in one turn: each committed before its answer, no group", async () => {
    const t = setup(6);
    for (let i = 0; i < 3; i++) {
      const job = await t.transitions.claim(agentA, 30_000);
      expect(job && t.statusOf(job.id)).toBe("assigned");
      const finishing = t.transitions.finish(job!.id, job!.leaseId!, { status: "succeeded" }, agentA.id);
      // ran at once: committed before the caller even awaits it
      expect(t.statusOf(job!.id)).toBe("succeeded");
      expect((await finishing)?.status).toBe("succeeded");
    }
    expect(t.state.group.stats).toEqual({ groups: 0, members: 0 });
    t.close();
  });

  test("another agent in a turn already taken is grouped, and so is the first agent's next one while it waits", async () => {
    const t = setup(6);
    const a = await t.transitions.claim(agentA, 30_000); // takes this turn for agent A
    const b = t.transitions.claim(agentB, 30_000); // another caller: waits for the group
    expect(t.statusOf(t.ids[1]!)).toBe("pending");
    // A's own next transition: something waits, so it joins the group instead of jumping ahead
    const aFinish = t.transitions.finish(a!.id, a!.leaseId!, { status: "succeeded" }, agentA.id);
    expect(t.statusOf(a!.id)).toBe("assigned");
    expect((await b)?.id).toBe(t.ids[1]);
    expect((await aFinish)?.status).toBe("succeeded");
    expect(t.statusOf(a!.id)).toBe("succeeded");
    expect(t.state.group.stats).toEqual({ groups: 1, members: 2 });
    t.close();
  });

  test("a finish under another agent's lease changes nothing, at once or grouped", async () => {
    const t = setup(4);
    const a = await t.transitions.claim(agentA, 30_000);
    // agent B names A's job and lease: refused (undefined) and A's job stays assigned
    expect(await t.transitions.finish(a!.id, a!.leaseId!, { status: "failed" }, agentB.id)).toBeUndefined();
    expect(t.statusOf(a!.id)).toBe("assigned");
    t.close();
  });
});
