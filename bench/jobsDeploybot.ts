/**
 * deploybot's side of `bench/jobs.bench.ts`, set up apart from the timed cycles so a profile
 * (`bench/jobsProfile.ts`) can cover the cycles alone: the same calls a heartbeat's claim and a
 * status report make, by `callers` agents at once (each on its own host, its jobs queued round
 * robin).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { ClaimedJob, HeartbeatRequest } from "../packages/protocol/src";
import pino from "pino";
import { APPS_YAML } from "../apps/controller/test/appsYaml";
import type { AgentCaller } from "../apps/controller/src/services/agents";
import { ROOT } from "./child";

export { checkoutBaseline, removeBaseline } from "./child";

const DRAIN_EVERY = 100;

/** Cycles per wall-clock second, and per second of this process's CPU (user + system). */
export type Rate = { wall: number; cpu: number };

/**
 * Starts a clock for `n` cycles. The CPU rate is the steadier figure on a shared machine: the
 * wall rate falls with whatever CPU the other processes leave us, the CPU one much less.
 */
export function stopwatch(n: number): () => Rate {
  const started = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    return { wall: n / seconds, cpu: n / ((used.user + used.system) / 1e6) };
  };
}

export type Prepared = {
  /** runs every cycle */
  run(): Promise<Rate>;
  /** transitions per COMMIT in the groups of the run (0: no group formed) */
  groupSize(): number;
  close(): void;
};

export function tempDir(): string {
  return mkdtempSync(join(os.tmpdir(), "deploybot-bench-jobs-"));
}

/** This checkout's controller sources; a baseline's are checked out beside them (checkoutBaseline). */
export const CURRENT_SRC = join(ROOT, "apps/controller/src");


export async function prepareDeploybot(opts: {
  /** the controller sources to run (CURRENT_SRC, or a baseline's) */
  src?: string;
  jobs: number;
  callers: number;
  groupCommit: boolean;
  /** BENCH_OLD_AGENT=1: agents without the volumes capability (the filtered probes) */
  capabilities: Record<string, unknown>;
  /**
   * "calls" (default): LeaseService.claimNextJob + reportStatus, the two calls of the older
   * protocol (a heartbeat's claim, a status report). "heartbeat": the production path of a
   * current agent, what the heartbeat route runs for an agent that reports its finished job in the
   * heartbeat and takes the next one in the answer — finishInHeartbeat, AgentService.heartbeat
   * (wait 0) and the update offer, with the caller identity the route's auth passes (read once
   * here: the per-request token check belongs to the middleware, as /healthz's does not).
   */
  path?: "calls" | "heartbeat";
}): Promise<Prepared> {
  const { jobs, callers, groupCommit, capabilities } = opts;
  const path = opts.path ?? "calls";
  const src = opts.src ?? CURRENT_SRC;
  const { createApp } = (await import(join(src, "app.ts"))) as typeof import("../apps/controller/src/app");
  const { testConfig } = (await import(join(src, "config.ts"))) as typeof import("../apps/controller/src/config");
  const { openDb } = (await import(join(src, "db/client.ts"))) as typeof import("../apps/controller/src/db/client");
  const { parseAppsConfig } = (await import(join(src, "services/appsConfig.ts"))) as typeof import("../apps/controller/src/services/appsConfig");
  const { finishInHeartbeat } = (await import(join(src, "services/jobReports.ts"))) as typeof import("../apps/controller/src/services/jobReports");
  const dir = tempDir();
  const db = openDb(join(dir, "bench.db"));
  const config = testConfig({ groupCommit });
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const { services, deps } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
  const agents: Array<{ id: string; hostname: string; labels: string[]; capabilities: Record<string, unknown> }> = [];
  const callerOf: AgentCaller[] = [];
  for (let k = 0; k < callers; k++) {
    const hostname = `bench-${k}`;
    const { agent } = await services.agents.register({ hostname, labels: [], version: "bench", capabilities, heldJobIds: [] }, { grant: { kind: "join" } });
    agents.push({ id: agent.id, hostname, labels: [], capabilities });
    // what the route's auth middleware puts in the context (token version 1 after a first registration)
    if (path === "heartbeat") callerOf.push(await services.agents.authenticate(agent.id, 1));
  }
  await db.write(async () => {
    for (let i = 0; i < jobs; i++) {
      await services.jobs.create({
        spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } },
        target: { host: `bench-${i % callers}` },
        dedupe: false,
      });
    }
  });
  await services.drainer.drain();
  db.$client.exec("ANALYZE");
  const cycles = async (k: number) => {
    const who = agents[k]!;
    for (let i = k; i < jobs; i += callers) {
      const job = await services.leases.claimNextJob(who);
      if (!job) throw new Error(`deploybot: no job to claim at ${i}`);
      await services.leases.reportStatus(who.id, job.id, { leaseId: job.leaseId, status: "succeeded" });
      // one caller never yields to the event loop, so the drainer (which follows the outbox on the
      // next turn) is kicked here; with many callers it runs on its own, as in the server. kick(),
      // not drain(): a drain() beside the outbox's own kick read the same rows and applied every
      // consequence twice (4 image and 4 job-time lookups per cycle instead of 2, counted).
      if (callers === 1 && i % DRAIN_EVERY === DRAIN_EVERY - 1) await services.drainer.kick();
    }
  };
  // A current agent's heartbeat body (daemon.ts heartbeatBody) on a host with no apps: no
  // containers, desired-state version 0, nothing to acknowledge.
  const beat = (held: ClaimedJob | null): HeartbeatRequest => ({
    protocolVersion: 1,
    status: held ? "busy" : "idle",
    heldJobIds: held ? [held.id] : [],
    containers: [],
    desiredVersion: 0,
    appEvents: [],
    appStatus: [],
    ...(held ? { finished: { jobId: held.id, leaseId: held.leaseId, status: "succeeded" as const, logLines: 0 } } : {}),
  });
  const heartbeats = async (k: number) => {
    const who = callerOf[k]!;
    let held: ClaimedJob | null = null;
    // one heartbeat more than jobs: the first only claims, the last only finishes
    for (let i = k - callers; i < jobs; i += callers) {
      // the route's handler, in order (routes/agents.ts). BENCH_NO_PAIR=1: without the caller
      // identity finishInHeartbeat finishes in a transaction of its own and the heartbeat's round
      // claims in another, as before the pair (an A/B of the pair on the same code)
      const { heartbeat: body, finished, claimed } = await finishInHeartbeat(services, who.id, beat(held), process.env.BENCH_NO_PAIR === "1" ? undefined : who);
      if (held && !finished?.accepted) throw new Error(`deploybot: the report of ${held.id} was refused: ${JSON.stringify(finished)}`);
      const answer = await services.agents.heartbeat(who, body, 0, undefined, claimed);
      await services.agentUpdates.offer(who, body.status, answer.job !== null);
      held = answer.job;
      if (i + callers < jobs && !held) throw new Error(`deploybot: no job handed out at ${i + callers}`);
      if (callers === 1 && i % DRAIN_EVERY === DRAIN_EVERY - 1) await services.drainer.kick();
    }
  };
  const loop = path === "heartbeat" ? heartbeats : cycles;
  const group = services.jobState.state.group.stats;
  return {
    async run() {
      group.groups = 0;
      group.members = 0;
      const stop = stopwatch(jobs);
      await Promise.all(agents.map((_, k) => loop(k)));
      await services.drainer.idle();
      const rate = stop();
      const left = db.$client.prepare("SELECT count(*) FROM jobs WHERE status <> 'succeeded'").pluck().get();
      const applied = (await services.drainer.appliedUpTo()) === (await deps.outbox.latestId());
      if (left !== 0 || !applied) throw new Error(`deploybot: ${left} jobs not finished, outbox applied: ${applied}`);
      return rate;
    },
    groupSize: () => (group.groups === 0 ? 0 : group.members / group.groups),
    close() {
      services.drainer.stop();
      db.$client.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
