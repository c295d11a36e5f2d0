/**
 * The write facade and the services' query code on both engines: the same drizzle builders over
 * schema.ts's tables, on SQLite and on the test PostgreSQL cluster (pgFacade.ts).
 */
import { eq } from "drizzle-orm";
import { expect, test } from "vitest";
import type { Db } from "../../src/db/client";
import { agents, apiTokens, secrets } from "../../src/db/schema";
import pino from "pino";
import { testConfig } from "../../src/config";
import { parseAppsConfig } from "../../src/services/appsConfig";
import { ApiTokens } from "../../src/services/auth";
import type { Deps } from "../../src/services/deps";
import { IdempotencyKeys, IdempotencyKeyTaken } from "../../src/services/idempotency";
import { DbJobLeases } from "../../src/services/jobTransitions";
import { jobs } from "../../src/db/schema";
import { newJob } from "./jobFixtures";
import { JoinTokens } from "../../src/services/joinTokens";
import { Sealer } from "../../src/services/sealer";
import { SecretStore } from "../../src/services/secrets";
import { APPS_YAML } from "../appsYaml";
import { onBothEngines } from "./database";

const token = (id: string) => ({ id, name: id, scope: "read", hash: `hash-${id}`, createdAt: 1 });

function contract(engine: "sqlite" | "postgres", open: () => Db) {
  test(`${engine}: JSON, booleans and millisecond timestamps read back as written`, async () => {
    const db = open();
    await db.insert(agents).values({ id: `agt_${engine}`, hostname: `host-${engine}`, version: "1", labels: ["gpu", "linux"], capabilities: { volumes: true }, revoked: true, registeredAt: 1_764_000_000_123 });
    const [row] = await db.select().from(agents).where(eq(agents.id, `agt_${engine}`));
    expect(row).toMatchObject({ labels: ["gpu", "linux"], capabilities: { volumes: true }, revoked: true, online: false, registeredAt: 1_764_000_000_123, containers: [] });
    const partial = await db.select({ labels: agents.labels, revoked: agents.revoked }).from(agents).where(eq(agents.revoked, true));
    expect(partial).toEqual([{ labels: ["gpu", "linux"], revoked: true }]);
  });

  test(`${engine}: a write commits, a throw rolls back, and the body's own reads see its writes`, async () => {
    const db = open();
    const seen = await db.write(async () => {
      await db.insert(apiTokens).values(token(`tok_${engine}_a`));
      return (await db.select().from(apiTokens).where(eq(apiTokens.id, `tok_${engine}_a`))).length;
    });
    expect(seen).toBe(1);
    await expect(
      db.write(async () => {
        await db.insert(apiTokens).values(token(`tok_${engine}_b`));
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    const ids = (await db.select({ id: apiTokens.id }).from(apiTokens)).map((r) => r.id).filter((id) => id.startsWith(`tok_${engine}`));
    expect(ids).toEqual([`tok_${engine}_a`]);
  });

  test(`${engine}: upserts and returning`, async () => {
    const db = open();
    const row = { app: "web", key: `K_${engine}`, value: "v1", updatedAt: 1 };
    await db.insert(secrets).values(row).onConflictDoUpdate({ target: [secrets.app, secrets.key], set: { value: "v2", updatedAt: 2 } });
    await db.insert(secrets).values(row).onConflictDoUpdate({ target: [secrets.app, secrets.key], set: { value: "v2", updatedAt: 2 } });
    const none = await db.insert(secrets).values(row).onConflictDoNothing().returning({ key: secrets.key });
    expect(none).toEqual([]);
    const [stored] = await db.select().from(secrets).where(eq(secrets.key, `K_${engine}`));
    expect(stored).toMatchObject({ value: "v2", updatedAt: 2 });
  });

  test(`${engine}: a service (API tokens) runs unchanged`, async () => {
    const db = open();
    const tokens = new ApiTokens(db, undefined, () => 5_000_000);
    const made = await tokens.create(`ci-${engine}`, "deploy", ["web", "api"]);
    expect(await tokens.authenticate(made.token)).toEqual({ kind: "user", tokenId: made.id, scope: "deploy", apps: ["api", "web"] });
    expect((await tokens.list()).map((t) => t.name)).toContain(`ci-${engine}`);
    await tokens.revoke(made.id);
    expect(await tokens.authenticate(made.token)).toBeNull();
  });

  test(`${engine}: services run unchanged — join tokens, secrets, Idempotency-Keys`, async () => {
    const db = open();
    const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
    const deps = { db, config: testConfig(), clock: () => 7_000_000, logger: pino({ level: "silent" }), apps: () => apps } as unknown as Deps;

    const joins = new JoinTokens(deps);
    const join = await joins.create({ hostname: `host-${engine}`, singleUse: true, ttlSeconds: 60, createdBy: "test" });
    expect(await joins.check(join.token)).toEqual({ id: join.id, hostname: `host-${engine}` });
    await joins.consume(join.id, `host-${engine}`);
    await expect(joins.consume(join.id, `host-${engine}`)).rejects.toThrow("already used");
    expect(await joins.check(join.token)).toBeNull();

    const secrets = new SecretStore(deps, "k".repeat(43));
    await secrets.put("web", "DATABASE_URL", `postgres://${engine}`);
    expect(await secrets.valuesFor("web", ["DATABASE_URL", "MISSING"])).toEqual({ DATABASE_URL: `postgres://${engine}` });
    await expect(secrets.requireSet("web", ["MISSING"])).rejects.toThrow("no value is set");
    await secrets.remove("web", "DATABASE_URL");
    await expect(secrets.remove("web", "DATABASE_URL")).rejects.toThrow();

    const keys = new IdempotencyKeys(db, () => 7_000_000, new Sealer("k".repeat(43), "idempotent-answers"));
    const claim = { principal: `tok_${engine}`, key: "k1", route: "POST /v1/x", requestHash: "h" };
    await keys.take(claim);
    await expect(keys.take(claim)).rejects.toBeInstanceOf(IdempotencyKeyTaken);
    expect(await keys.lookup(claim)).toEqual({ requestHash: "h", status: 0, body: "", aliveAt: 7_000_000 });
    // an in-flight key: renewed while its request runs, taken over once it was not for the lease
    const renewed = new IdempotencyKeys(db, () => 7_020_000, new Sealer("k".repeat(43), "idempotent-answers"));
    await renewed.keepAlive(claim);
    expect(await keys.lookup(claim)).toEqual({ requestHash: "h", status: 0, body: "", aliveAt: 7_020_000 });
    const dead = { ...claim, key: "k-dead" };
    await keys.take(dead);
    expect(await renewed.takeOver(dead)).toBe(false);
    const afterLease = new IdempotencyKeys(db, () => 7_000_000 + 30_001, new Sealer("k".repeat(43), "idempotent-answers"));
    expect(await afterLease.takeOver(claim)).toBe(false);
    expect(await afterLease.takeOver(dead)).toBe(true);
    expect(await keys.lookup(dead)).toBeUndefined();
    await keys.complete(claim, 201, "{}");
    expect(await keys.lookup(claim)).toEqual({ requestHash: "h", status: 201, body: "{}", aliveAt: 7_020_000 });
    expect(await keys.record({ ...claim, key: "k2" }, 422, "{}")).toBe(true);
    expect(await keys.record({ ...claim, key: "k2" }, 422, "{}")).toBe(false);
    const later = new IdempotencyKeys(db, () => 7_000_000 + 25 * 3600 * 1000, new Sealer("k".repeat(43), "idempotent-answers"));
    expect(await later.sweep()).toBeGreaterThanOrEqual(2);
    expect(await keys.lookup(claim)).toBeUndefined();
  });

  test(`${engine}: lease bookkeeping (DbJobLeases) — held jobs, renewals, states, re-arming`, async () => {
    const db = open();
    const agent = `agt_l_${engine}`;
    const held = { ...newJob({ host: "web-1" }), status: "running", agentId: agent, leaseId: "lse_1", leaseExpiresAt: 1_000, cancelRequested: true };
    const pending = newJob({ host: "web-1" });
    await db.insert(agents).values({ id: agent, hostname: `host-l-${engine}`, version: "1", registeredAt: 1 });
    await db.insert(jobs).values([held, { ...pending, status: "pending" }]);
    const leases = new DbJobLeases(db);
    expect((await leases.heldBy(agent)).map((j) => [j.id, j.status, j.cancelRequested, j.spec])).toEqual([[held.id, "running", true, held.spec]]);
    await leases.renewLease(held.id, 2_000);
    await leases.renewHeld(agent, [held.id, pending.id], 3_000);
    expect((await leases.heldBy(agent))[0]?.leaseExpiresAt).toBe(3_000);
    expect(await leases.states([held.id, pending.id, "job_missing"])).toEqual(
      expect.arrayContaining([
        { id: held.id, status: "running", agentId: agent, cancelRequested: true },
        { id: pending.id, status: "pending", agentId: null, cancelRequested: false },
      ]),
    );
    expect(await leases.rearmLeases(2_500)).toBe(0);
    expect(await leases.rearmLeases(60_000)).toBeGreaterThanOrEqual(1);
    expect((await leases.heldBy(agent))[0]?.leaseExpiresAt).toBe(60_000);
  });
}

onBothEngines("the services' queries on PostgreSQL", contract, (pg) => {
  test("postgres: a body's statements run on its transaction's connection, not on another of the pool", async () => {
    // with a pool of 4 and the row locked by the body, a statement routed to another connection would wait forever
    await pg().insert(apiTokens).values(token("tok_lock"));
    await pg().write(async () => {
      await pg().update(apiTokens).set({ name: "locked" }).where(eq(apiTokens.id, "tok_lock"));
      await pg().update(apiTokens).set({ name: "again" }).where(eq(apiTokens.id, "tok_lock"));
    });
    const [row] = await pg().select().from(apiTokens).where(eq(apiTokens.id, "tok_lock"));
    expect(row?.name).toBe("again");
  });
});
