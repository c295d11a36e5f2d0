/**
 * `pnpm bench:sse`: what many live log viewers cost the controller. A real controller in a
 * child process; one job's 2,000-line log appended in batches of 100, first with nobody
 * watching, then with 200 SSE subscribers on `GET /v1/logs/stream?job=` — server CPU and
 * memory in the same run, so the figure is a difference, not an absolute.
 * Writes bench/results/<date>-sse.md. Loopback only, bounded in count and time.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { ADMIN, JOIN, ROOT, startChild, stopChild, waitHealthy } from "./child";
import { Client, processCpuSeconds } from "./load";

const SUBSCRIBERS = Number(process.env.BENCH_SSE_SUBSCRIBERS ?? 200);
const LINES = 2_000;
const BATCH = 100;

const rssMiB = (pid: number) => {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : Number.NaN;
};

async function main() {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-sse-bench-"));
  const { child, port } = await startChild(dir);
  const pid = child.pid!;
  const client = new Client("127.0.0.1", port, 8);
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const reply = await client.request(method, path, token, body);
    if (reply.status >= 300) throw new Error(`${method} ${path}: ${reply.status} ${reply.body}`);
    return JSON.parse(reply.body);
  };
  try {
    await waitHealthy(client);
    const agent = await call("POST", "/v1/agents/register", JOIN, { hostname: "web-1", capabilities: { volumes: true } });
    const token = agent.token as string;
    /** claims a fresh job for web-1 and returns a function that appends its whole log */
    const runningJob = async (ref: string) => {
      await call("POST", "/v1/jobs", ADMIN, { repo: "acme/web", ref, host: "web-1" });
      const { job } = await call("POST", `/v1/agents/${agent.agent.id}/heartbeat`, token, {});
      await call("POST", `/v1/jobs/${job.id}/status`, token, { leaseId: job.leaseId, status: "running" });
      const appendAll = async () => {
        for (let offset = 0; offset < LINES; offset += BATCH) {
          const entries = Array.from({ length: BATCH }, (_, i) => ({
            ts: new Date().toISOString(),
            stream: "stdout",
            line: `step ${offset + i}: ${"x".repeat(80)}`,
          }));
          await call("POST", `/v1/jobs/${job.id}/logs`, token, { leaseId: job.leaseId, offset, entries });
        }
      };
      const finish = () => call("POST", `/v1/jobs/${job.id}/status`, token, { leaseId: job.leaseId, status: "succeeded", logLines: LINES });
      return { id: job.id as string, appendAll, finish };
    };

    // Baseline: the same appends with nobody watching.
    const quiet = await runningJob("quiet");
    let cpu0 = processCpuSeconds(pid)!;
    await quiet.appendAll();
    const baselineCpu = processCpuSeconds(pid)! - cpu0;
    await quiet.finish();

    // 200 subscribers of one job.
    const watched = await runningJob("watched");
    const rssBefore = rssMiB(pid);
    cpu0 = processCpuSeconds(pid)!;
    let received = 0;
    const streams = Array.from({ length: SUBSCRIBERS }, async () => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/logs/stream?job=${watched.id}`, { headers: { authorization: `Bearer ${ADMIN}` } });
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        const events = buffer.split("\n\n");
        buffer = events.pop()!; // an event split across chunks waits for its end
        for (const e of events) if (e.includes("\nevent: log\n")) received++;
      }
    });
    await new Promise((r) => setTimeout(r, 1000));
    const connectCpu = processCpuSeconds(pid)! - cpu0;
    const rssConnected = rssMiB(pid);
    cpu0 = processCpuSeconds(pid)!;
    const started = performance.now();
    await watched.appendAll();
    const deadline = Date.now() + 60_000;
    while (received < SUBSCRIBERS * LINES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const deliveredMs = performance.now() - started;
    const streamingCpu = processCpuSeconds(pid)! - cpu0;
    const rssPeak = rssMiB(pid);
    await watched.finish();
    await Promise.all(streams);

    const perLinePerSubscriberUs = ((streamingCpu - baselineCpu) * 1e6) / (LINES * SUBSCRIBERS);
    const rows = [
      ["appends of 2,000 lines, nobody watching (baseline)", `${(baselineCpu * 1000).toFixed(0)} ms`, "—"],
      [`${SUBSCRIBERS} subscribers connect`, `${(connectCpu * 1000).toFixed(0)} ms`, `RSS +${(rssConnected - rssBefore).toFixed(1)} MiB (${(((rssConnected - rssBefore) * 1024) / SUBSCRIBERS).toFixed(0)} KiB per stream)`],
      [
        `same appends, ${SUBSCRIBERS} subscribers (${(SUBSCRIBERS * LINES).toLocaleString("en")} events, delivered in ${(deliveredMs / 1000).toFixed(2)} s)`,
        `${(streamingCpu * 1000).toFixed(0)} ms`,
        `RSS ${rssPeak.toFixed(0)} MiB`,
      ],
    ];
    const table = [
      "| step | controller CPU | memory |",
      "|---|---:|---|",
      ...rows.map((r) => `| ${r.join(" | ")} |`),
      "",
      `Cost of watching: ${perLinePerSubscriberUs.toFixed(2)} µs of controller CPU per line per subscriber (above the baseline); every one of ${SUBSCRIBERS} subscribers received all ${LINES.toLocaleString("en")} lines: ${received === SUBSCRIBERS * LINES ? "yes" : `no (${received})`}.`,
    ].join("\n");
    const report = `# Live log streams, ${new Date().toISOString()}\n\nMachine: ${os.cpus()[0]?.model.trim()} x ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}. Controller in a child process (SQLite file, log level silent); subscribers are fetch streams in the bench process on 127.0.0.1.\n\n${table}\n`;
    console.log(report);
    mkdirSync(join(ROOT, "bench/results"), { recursive: true });
    const file = join(ROOT, `bench/results/${new Date().toISOString().slice(0, 10)}-sse.md`);
    writeFileSync(file, report);
    console.error(`wrote ${file}`);
    if (received !== SUBSCRIBERS * LINES) process.exitCode = 1;
  } finally {
    client.close();
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
