/**
 * A small closed-loop HTTP load generator on node:http with keep-alive: a fixed number of
 * connections, each sending its next request as soon as the previous answer is read.
 */
import { readFileSync } from "node:fs";
import http from "node:http";

export interface Reply {
  status: number;
  body: string;
}

export class Client {
  private readonly agent: http.Agent;

  constructor(
    private readonly host: string,
    private readonly port: number,
    connections: number,
  ) {
    // maxSockets caps the pool, so "64 connections" is exactly 64 sockets reused throughout.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  }

  request(method: string, path: string, token?: string, body?: unknown): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (payload !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ host: this.host, port: this.port, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface Stats {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
  /** share of one core the load generator used; near 100% means the client, not the server, was the limit */
  clientCpu: number;
  /** share of one core the controller process used (Linux /proc), or null */
  serverCpu: number | null;
  firstError?: string;
}

/** Nearest-rank percentile of an ascending array, in ms. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** CPU seconds (user + system) a process has used so far; Linux only. */
export function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    // fields after the parenthesised command name; utime and stime are the 12th and 13th of them
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/** Measures a window: wall time, client CPU and server CPU, around `work`. */
export async function measured<T>(serverPid: number | undefined, work: () => Promise<T>) {
  const server0 = processCpuSeconds(serverPid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await work();
  const seconds = (performance.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  const server1 = processCpuSeconds(serverPid);
  return {
    result,
    seconds,
    clientCpu: (client.user + client.system) / 1e6 / seconds,
    serverCpu: server0 === null || server1 === null ? null : (server1 - server0) / seconds,
  };
}

/** Collects latencies and errors over one or more measured windows, then summarises them. */
export class Recorder {
  private readonly latencies: number[] = [];
  private errors = 0;
  private firstError: string | undefined;
  private seconds = 0;
  private clientCpuSeconds = 0;
  private serverCpuSeconds: number | null = 0;

  record(reply: Reply, ms: number): boolean {
    if (reply.status >= 200 && reply.status < 300) {
      this.latencies.push(ms);
      return true;
    }
    this.errors++;
    this.firstError ??= `${reply.status} ${reply.body.slice(0, 200)}`;
    return false;
  }

  addWindow(w: { seconds: number; clientCpu: number; serverCpu: number | null }): void {
    this.seconds += w.seconds;
    this.clientCpuSeconds += w.clientCpu * w.seconds;
    this.serverCpuSeconds = w.serverCpu === null || this.serverCpuSeconds === null ? null : this.serverCpuSeconds + w.serverCpu * w.seconds;
  }

  stats(): Stats {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      requests: sorted.length,
      errors: this.errors,
      seconds: this.seconds,
      perSecond: sorted.length / this.seconds,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted[sorted.length - 1] ?? Number.NaN,
      clientCpu: this.clientCpuSeconds / this.seconds,
      serverCpu: this.serverCpuSeconds === null ? null : this.serverCpuSeconds / this.seconds,
      ...(this.firstError ? { firstError: this.firstError } : {}),
    };
  }
}

/**
 * Closed loop for a fixed time: `connections` workers call `send` back to back. Only requests
 * that start after the warm-up and before the end are counted.
 */
export async function runFor(opts: {
  connections: number;
  warmupMs: number;
  durationMs: number;
  serverPid: number | undefined;
  send: () => Promise<Reply>;
}): Promise<Stats> {
  const rec = new Recorder();
  const worker = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const t0 = performance.now();
      const reply = await opts.send();
      if (record) rec.record(reply, performance.now() - t0);
    }
  };
  const all = (until: number, record: boolean) => Promise.all(Array.from({ length: opts.connections }, () => worker(until, record)));
  await all(performance.now() + opts.warmupMs, false);
  rec.addWindow(await measured(opts.serverPid, () => all(performance.now() + opts.durationMs, true)));
  return rec.stats();
}

/** Runs `send` once per item with at most `connections` in flight, into `rec` (one window). */
export async function runEach<T>(opts: {
  items: readonly T[];
  connections: number;
  serverPid: number | undefined;
  rec: Recorder;
  send: (item: T) => Promise<Reply>;
  onReply?: (item: T, reply: Reply) => void;
}): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < opts.items.length) {
      const item = opts.items[next++]!;
      const t0 = performance.now();
      const reply = await opts.send(item);
      if (opts.rec.record(reply, performance.now() - t0)) opts.onReply?.(item, reply);
    }
  };
  opts.rec.addWindow(await measured(opts.serverPid, () => Promise.all(Array.from({ length: opts.connections }, worker))));
}

/**
 * Open loop at a fixed rate (requests leave on schedule whether or not earlier ones answered),
 * so latency is the server's own and not the queue a closed loop builds in front of it.
 */
export async function runAtRate(opts: { perSecond: number; durationMs: number; serverPid: number | undefined; send: () => Promise<Reply> }): Promise<Stats> {
  const rec = new Recorder();
  const tickMs = 10;
  const window = await measured(opts.serverPid, async () => {
    const inFlight: Promise<void>[] = [];
    const start = performance.now();
    let sent = 0;
    while (performance.now() - start < opts.durationMs) {
      // catch up to the schedule: timers are late under load, the schedule is not
      const due = Math.floor(((performance.now() - start) / 1000) * opts.perSecond);
      for (; sent < due; sent++) {
        const t0 = performance.now();
        inFlight.push(opts.send().then((reply) => void rec.record(reply, performance.now() - t0)));
      }
      await new Promise((r) => setTimeout(r, tickMs));
    }
    await Promise.all(inFlight);
  });
  rec.addWindow(window);
  return rec.stats();
}
