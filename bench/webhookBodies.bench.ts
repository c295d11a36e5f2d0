/**
 * `pnpm bench:webhook-bodies`: 30 concurrent unauthenticated 25 MB bodies on
 * POST /v1/webhooks/github (a well-formed but wrong signature), against this checkout's controller
 * and a baseline's (BENCH_BASELINE_REF, default the last main commit before bodies were verified
 * while they stream), in one run. Each controller runs alone in its own child process; reported:
 * its RSS before and at peak (VmHWM), /healthz latency while the bodies arrive, the answers.
 * Writes bench/results/<date>-webhook-bodies.md.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { join } from "node:path";
import { checkoutBaseline, codeVersion, ROOT, removeBaseline, startChild, stopChild } from "./child";

const BODIES = 30;
const BODY_BYTES = 25 * 1024 * 1024;
const CHUNK = Buffer.alloc(256 * 1024, 0x61);
const BASELINE_REF = process.env.BENCH_BASELINE_REF ?? "3f631de";
const SECRET = "bench-webhook-secret";

interface Run {
  label: string;
  rssBeforeMb: number;
  rssPeakMb: number;
  healthz: { n: number; p50: number; p99: number; max: number };
  answers: Record<string, number>;
  seconds: number;
}

const rssOf = (pid: number, field: "VmRSS" | "VmHWM") => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
  return Number.parseInt(line?.split(/\s+/)[1] ?? "0", 10) / 1024;
};

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "GET" }, (res) => {
      res.resume();
      res.on("error", reject);
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

/** One unsigned body streamed from a constant chunk, so the sender holds no copy of it. */
function sendBadBody(port: number, i: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: "/v1/webhooks/github",
      method: "POST",
      agent: false,
      headers: {
        "content-type": "application/json",
        "content-length": String(BODY_BYTES),
        "x-github-event": "push",
        "x-github-delivery": `bench-${i}-${Date.now()}`,
        "x-hub-signature-256": `sha256=${"0".repeat(64)}`,
      },
    });
    let settled = false;
    const done = (what: string) => {
      if (!settled) resolve(what);
      settled = true;
    };
    req.on("response", (res) => {
      res.on("error", (err) => done(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        let code = "";
        try {
          code = JSON.parse(text).error?.code ?? "";
        } catch {}
        done(`${res.statusCode} ${code}`.trim());
      });
    });
    req.on("error", (err) => done(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    let sent = 0;
    const pump = () => {
      while (sent < BODY_BYTES && !req.destroyed) {
        const n = Math.min(CHUNK.length, BODY_BYTES - sent);
        sent += n;
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? 0;

async function measure(label: string, srcDir: string, env: Record<string, string> = {}): Promise<Run> {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-webhooks-"));
  const { child, port } = await startChild(dir, { DEPLOYBOT_WEBHOOK_SECRET: SECRET, BENCH_CONTROLLER_SRC: srcDir, ...env });
  try {
    // warm up the route and the allocator: a few small bodies first
    for (let i = 0; i < 5; i++) await get(port, "/healthz");
    await new Promise((r) => setTimeout(r, 1000));
    const pid = child.pid!;
    const rssBeforeMb = rssOf(pid, "VmRSS");
    const latencies: number[] = [];
    let loading = true;
    const prober = (async () => {
      while (loading) {
        const t = performance.now();
        // a failed probe counts as the time it took to fail
        await get(port, "/healthz").catch(() => 0);
        latencies.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: BODIES }, (_, i) => sendBadBody(port, i)));
    const seconds = (performance.now() - started) / 1000;
    loading = false;
    await prober;
    const answers: Record<string, number> = {};
    for (const o of outcomes) answers[o] = (answers[o] ?? 0) + 1;
    const sorted = [...latencies].sort((a, b) => a - b);
    return {
      label,
      rssBeforeMb,
      rssPeakMb: rssOf(pid, "VmHWM"),
      healthz: { n: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? 0 },
      answers,
      seconds,
    };
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

const baselineDir = checkoutBaseline(BASELINE_REF);
const runs: Run[] = [];
try {
  // interleaved, twice each, so a busy neighbour does not favour one side
  for (let round = 0; round < 2; round++) {
    runs.push(await measure(`baseline ${BASELINE_REF}`, baselineDir));
    runs.push(await measure("this checkout", join(ROOT, "apps/controller/src")));
    // every body admitted: what the 1 MB in-memory bound alone does
    runs.push(await measure("this checkout, DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT=30", join(ROOT, "apps/controller/src"), { DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT: "30" }));
  }
} finally {
  removeBaseline(baselineDir);
}

const fmt = (n: number) => n.toFixed(1);
const lines = [
  `# Webhook bodies: ${BODIES} concurrent unsigned ${BODY_BYTES / 1024 / 1024} MB bodies`,
  "",
  `${new Date().toISOString()} · code ${codeVersion()} · baseline ${BASELINE_REF} · ${os.cpus().length} cores · load average ${os.loadavg()[0]!.toFixed(1)}`,
  "",
  "| controller | RSS before (MB) | RSS peak (MB) | /healthz p50 / p99 / max (ms) during | probes | answers | seconds |",
  "|---|---|---|---|---|---|---|",
  ...runs.map(
    (r) =>
      `| ${r.label} | ${fmt(r.rssBeforeMb)} | ${fmt(r.rssPeakMb)} | ${fmt(r.healthz.p50)} / ${fmt(r.healthz.p99)} / ${fmt(r.healthz.max)} | ${r.healthz.n} | ${Object.entries(r.answers)
        .map(([k, v]) => `${v}× ${k}`)
        .join(", ")} | ${fmt(r.seconds)} |`,
  ),
  "",
];
console.log(lines.join("\n"));
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(join(ROOT, "bench/results", `${new Date().toISOString().slice(0, 10)}-webhook-bodies.md`), lines.join("\n"));
