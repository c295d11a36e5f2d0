/**
 * `pnpm bench:events`: what live `GET /v1/events` subscribers cost per change, in process:
 * EventStreams over a SQLite outbox file (WAL), sinks that accept every write at once, 4,000
 * job.changed rows appended one transaction each, a turn apart (as changes arrive). CPU µs per
 * change with 0 subscribers and with BENCH_SUBSCRIBERS (20), interleaved over BENCH_PASSES (3);
 * the difference divided by the subscribers is what one costs. Prints; writes nothing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { openDb } from "../apps/controller/src/db/client";
import type { Deps } from "../apps/controller/src/services/deps";
import { EventStreams } from "../apps/controller/src/services/eventStream";
import { SqliteOutbox } from "../apps/controller/src/services/outbox";

const SUBSCRIBERS = Number(process.env.BENCH_SUBSCRIBERS ?? 20);
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
const CHANGES = 4_000;

const event = (i: number) => ({
  id: `job_${String(i).padStart(8, "0")}`,
  kind: "build",
  app: "web",
  status: "succeeded",
  transition: "finished",
  host: "bench-0",
  labels: null,
  agentId: "agt_bench",
  deploymentId: null,
  attempts: 1,
  cancelRequested: false,
  error: null,
  expectedLogLines: null,
  createdAtMs: 1_764_240_000_000 + i,
  assignedAtMs: 1_764_240_000_100 + i,
  startedAtMs: null,
  finishedAtMs: 1_764_240_000_200 + i,
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

async function pass(subscribers: number): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-events-"));
  const db = openDb(join(dir, "bench.db"));
  const outbox = new SqliteOutbox(db, Date.now);
  const streams = new EventStreams({ outbox } as unknown as Deps, { pingMs: 60_000, page: 500 });
  const sinks = Array.from({ length: subscribers }, () => {
    const aborts: Array<() => void> = [];
    return {
      aborted: false,
      written: 0,
      async write(chunk: string) {
        this.written += chunk.length;
      },
      onAbort: (fn: () => void) => void aborts.push(fn),
      abort() {
        this.aborted = true;
        for (const fn of aborts) fn();
      },
    };
  });
  const serving = await Promise.all(sinks.map(() => streams.serve({} as never, undefined)));
  const done = serving.map((serve, i) => serve(sinks[i] as never));
  await turn();
  const started = process.cpuUsage();
  for (let i = 0; i < CHANGES; i++) {
    const e = event(i);
    db.$client.transaction(() => outbox.appendNow("job.changed", { app: "web", subject: e.id }, e))();
    await turn(); // the wake-up
    await turn(); // the streams' reads and writes
    // the drainer's cursor passes the rows every so often, as in the server
    if (i % 500 === 499) await outbox.setCursor("consequences", Number.MAX_SAFE_INTEGER);
  }
  const used = process.cpuUsage(started);
  for (const s of sinks) s.abort();
  await Promise.all(done);
  if (sinks.some((s) => s.written === 0)) throw new Error("a subscriber received nothing");
  db.$client.close();
  rmSync(dir, { recursive: true, force: true });
  return (used.user + used.system) / CHANGES;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const none: number[] = [];
const some: number[] = [];
for (let p = 1; p <= PASSES; p++) {
  none.push(await pass(0));
  some.push(await pass(SUBSCRIBERS));
  console.log(`pass ${p}/${PASSES}: ${none.at(-1)!.toFixed(1)} / ${some.at(-1)!.toFixed(1)} CPU µs per change (0 / ${SUBSCRIBERS} subscribers)`);
}
const [n, s] = [median(none), median(some)];
console.log(`CPU µs per change: ${n.toFixed(1)} with no subscriber, ${s.toFixed(1)} with ${SUBSCRIBERS}: ${((s - n) / SUBSCRIBERS).toFixed(1)} µs per subscriber (load ${os.loadavg()[0]!.toFixed(1)})`);
