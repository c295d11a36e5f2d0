import { createHmac } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { SignedBodyReader } from "../src/services/signedBody";

const SECRET = "It's a Secret to Everybody";
const MB = 1024 * 1024;
const sign = (body: Buffer) => `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
const limits = { maxBytes: 25 * MB, maxInFlight: 2, memoryBytes: MB };
const spoolFiles = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`deploybot-webhook-${process.pid}-`));

/** A body sent in 64 KB chunks; `holdAt` bytes in, it waits until `release()`; `pulls` counts reads. */
function slowBody(total: number, holdAt = Number.POSITIVE_INFINITY) {
  let sent = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reachedHold!: () => void;
  const held = new Promise<void>((r) => (reachedHold = r));
  const state = { pulls: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      state.pulls++;
      if (sent >= holdAt) {
        reachedHold();
        await released;
      }
      if (sent >= total) return controller.close();
      const n = Math.min(64 * 1024, total - sent);
      controller.enqueue(new Uint8Array(n).fill(0x61));
      sent += n;
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { stream, release, held, state };
}

describe("webhook bodies are verified while they stream", () => {
  test("a bad signature on a 25 MB body is refused; past 1 MB the unverified bytes wait on disk, not in memory, and are removed", async () => {
    const reader = new SignedBodyReader(limits);
    const body = slowBody(25 * MB, 12 * MB);
    const refused = reader.read(body.stream, SECRET, `sha256=${"0".repeat(64)}`);
    await body.held;
    // 12 MB in: 1 MB in memory at most, the rest in this request's temp file
    const [spool] = spoolFiles();
    expect(spool).toBeDefined();
    expect(statSync(join(tmpdir(), spool!)).size).toBeGreaterThanOrEqual(10 * MB);
    body.release();
    await expect(refused).rejects.toMatchObject({ status: 401, code: "invalid_signature" });
    expect(spoolFiles()).toEqual([]);
    expect(reader.reading).toBe(0);
  });

  test("a missing or malformed signature is refused before a byte of the body is read", async () => {
    const reader = new SignedBodyReader(limits);
    for (const signature of [undefined, "", "sha1=abc", `sha256=${"z".repeat(64)}`, `sha256=${"0".repeat(63)}`]) {
      const body = slowBody(MB);
      await expect(reader.read(body.stream, SECRET, signature)).rejects.toMatchObject({ status: 401, code: "invalid_signature" });
      expect(body.state.pulls).toBeLessThanOrEqual(1); // a ReadableStream pulls once on creation to fill its queue
    }
  });

  test("a signed body comes back byte for byte, from memory or from its temp file", async () => {
    const reader = new SignedBodyReader(limits);
    for (const size of [0, 1000, 3 * MB + 17]) {
      const bytes = Buffer.alloc(size, 0x61);
      const got = await reader.read(slowBody(size).stream, SECRET, sign(bytes));
      expect(got.equals(bytes)).toBe(true);
    }
    const text = '{"zen":"Keep it logically awesome. ü"}';
    expect((await reader.read(text, SECRET, sign(Buffer.from(text)))).toString("utf8")).toBe(text);
    expect(spoolFiles()).toEqual([]);
  });

  test("past the size limit reading stops with a 413", async () => {
    const reader = new SignedBodyReader({ ...limits, maxBytes: 2 * MB });
    const body = slowBody(10 * MB);
    await expect(reader.read(body.stream, SECRET, `sha256=${"0".repeat(64)}`)).rejects.toMatchObject({ status: 413, code: "payload_too_large" });
    expect(body.state.cancelled).toBe(true);
    expect(spoolFiles()).toEqual([]);
  });

  test("beyond the bound on bodies in flight a request is refused with 503 before its body is read", async () => {
    const reader = new SignedBodyReader(limits);
    const held = [slowBody(2 * MB, MB), slowBody(2 * MB, MB)];
    const reading = held.map((b) => reader.read(b.stream, SECRET, `sha256=${"0".repeat(64)}`).catch((err: unknown) => err));
    await Promise.all(held.map((b) => b.held));
    expect(reader.reading).toBe(2);
    const third = slowBody(MB);
    await expect(reader.read(third.stream, SECRET, `sha256=${"0".repeat(64)}`)).rejects.toMatchObject({
      status: 503,
      code: "webhook_busy",
      details: { retryAfterSeconds: 5 },
    });
    expect(third.state.pulls).toBeLessThanOrEqual(1);
    for (const b of held) b.release();
    for (const r of reading) expect(await r).toMatchObject({ status: 401 });
    expect(reader.reading).toBe(0);
  });
});
