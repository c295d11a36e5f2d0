import http from "node:http";

export interface LoadSample {
  /** ms since the load started */
  at: number;
  ms: number;
  ok: boolean;
  /** sent on a reused keep-alive connection (else on a new one) */
  keepAlive: boolean;
  status?: number;
  error?: string;
  body?: string;
}

export interface LoadRun {
  samples: LoadSample[];
  /** stops sending, waits for the answers still due, and returns every sample */
  stop(): Promise<LoadSample[]>;
}

/**
 * A fixed-rate HTTP load against 127.0.0.1:port with a Host header: half the requests reuse
 * keep-alive connections, half open a new one (what browsers and API clients mix). Strict: no
 * retry, so every refused connection, reset or non-2xx answer counts as a failure.
 */
export function startLoad(options: { port: number; host: string; path?: string; ratePerSecond: number; timeoutMs?: number }): LoadRun {
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const started = Date.now();
  const samples: LoadSample[] = [];
  const pending = new Set<Promise<void>>();
  const interval = 1000 / options.ratePerSecond;
  let sent = 0;
  let stopped = false;
  const fire = () => {
    const at = Date.now() - started;
    const agent = sent++ % 2 === 0 ? keepAlive : false;
    const p = new Promise<void>((resolve) => {
      const t0 = performance.now();
      const done = (s: Omit<LoadSample, "at" | "ms" | "keepAlive">) => {
        samples.push({ at, ms: performance.now() - t0, keepAlive: agent !== false, ...s });
        resolve();
      };
      const req = http.get(
        { host: "127.0.0.1", port: options.port, path: options.path ?? "/", headers: { host: options.host }, agent, timeout: options.timeoutMs ?? 10_000 },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            body += c;
          });
          res.on("end", () => done({ ok: res.statusCode === 200, status: res.statusCode, body: body.trim() }));
          res.on("error", (err) => done({ ok: false, error: err.message }));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  // Scheduled against the clock, so a slow tick is caught up rather than lost (fixed rate).
  const timer = setInterval(() => {
    const due = Math.floor((Date.now() - started) / interval);
    while (!stopped && sent < due) fire();
  }, Math.max(1, Math.floor(interval / 2)));
  return {
    samples,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.all([...pending]);
      keepAlive.destroy();
      return samples;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export const failures = (samples: LoadSample[]): LoadSample[] => samples.filter((s) => !s.ok);
