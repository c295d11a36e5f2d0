import { eq } from "drizzle-orm";
import { describe, expect, test } from "vitest";
import { openDb } from "../src/db/client";
import { TransactionYieldedError } from "../src/db/facade";
import { apiTokens } from "../src/db/schema";

const token = (id: string) => ({ id, name: id, scope: "read", hash: `hash-${id}`, createdAt: 1 });
const ids = async (db: ReturnType<typeof openDb>) => (await db.select({ id: apiTokens.id }).from(apiTokens).orderBy(apiTokens.id)).map((r) => r.id);

describe("the SQLite write facade", () => {
  test("a body commits when it resolves and rolls back when it throws", async () => {
    const db = openDb(":memory:");
    await db.write(async (tx) => {
      await tx.insert(apiTokens).values(token("tok_a"));
    });
    await expect(
      db.write(async (tx) => {
        await tx.insert(apiTokens).values(token("tok_b"));
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    expect(await ids(db)).toEqual(["tok_a"]);
  });

  test("a body that awaits something other than the database is rolled back and fails", async () => {
    const db = openDb(":memory:");
    const write = db.write(async (tx) => {
      await tx.insert(apiTokens).values(token("tok_a"));
      await new Promise((r) => setTimeout(r, 5));
    });
    await expect(write).rejects.toBeInstanceOf(TransactionYieldedError);
    expect(db.$client.inTransaction).toBe(false);
    expect(await ids(db)).toEqual([]);
  });

  test("a statement of another request never lands in an open transaction that then rolls back", async () => {
    const db = openDb(":memory:");
    // Both chains are runnable in the same turn, as two requests resumed together are: the
    // plain insert must not join the transaction that fails.
    const failing = db.write(async (tx) => {
      await tx.insert(apiTokens).values(token("tok_rolled_back"));
      await tx.select().from(apiTokens);
      await tx.select().from(apiTokens);
      throw new Error("refused");
    });
    const plain = (async () => {
      await null;
      await db.insert(apiTokens).values(token("tok_plain"));
    })();
    await expect(failing).rejects.toThrow("refused");
    await plain;
    expect(await ids(db)).toEqual(["tok_plain"]);
  });

  test("concurrent writes run one after another, in the order they were asked for", async () => {
    const db = openDb(":memory:");
    await db.insert(apiTokens).values({ ...token("tok_counter"), lastUsedAt: 0 });
    const bump = (n: number) =>
      db.write(async (tx) => {
        const [row] = await tx.select().from(apiTokens).where(eq(apiTokens.id, "tok_counter"));
        await tx.update(apiTokens).set({ lastUsedAt: row!.lastUsedAt! + 1, name: `bump-${n}` }).where(eq(apiTokens.id, "tok_counter"));
        return row!.lastUsedAt! + 1;
      });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i)));
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const [row] = await db.select().from(apiTokens).where(eq(apiTokens.id, "tok_counter"));
    expect(row).toMatchObject({ lastUsedAt: 20, name: "bump-19" });
  });

  test("a savepoint undoes only its own writes", async () => {
    const db = openDb(":memory:");
    await db.write(async (tx) => {
      await tx.insert(apiTokens).values(token("tok_kept"));
      await expect(
        db.savepoint(async () => {
          await tx.insert(apiTokens).values(token("tok_undone"));
          throw new Error("one consequence failed");
        }),
      ).rejects.toThrow("one consequence failed");
    });
    expect(await ids(db)).toEqual(["tok_kept"]);
  });
});
