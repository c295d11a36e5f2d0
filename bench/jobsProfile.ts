/**
 * `pnpm bench:jobs:profile`: a CPU profile of deploybot's in-process claim + finish cycles only
 * (the setup, 20,000 queued jobs by default, is outside it), written as a .cpuprofile for
 * Chrome DevTools or speedscope. BENCH_CALLERS (1), BENCH_GROUP_COMMIT (1), BENCH_JOBS (20000),
 * BENCH_PATH (heartbeat: the production path, the heartbeat route's handler with the finished job
 * and the next claim in one heartbeat; calls: claimNextJob + reportStatus), BENCH_PROFILE_OUT (a
 * file in the temp dir).
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import { join } from "node:path";
import { prepareDeploybot } from "./jobsDeploybot";

const jobs = Number(process.env.BENCH_JOBS ?? 20_000);
const callers = Number(process.env.BENCH_CALLERS ?? 1);
const groupCommit = process.env.BENCH_GROUP_COMMIT !== "0";
const path = process.env.BENCH_PATH === "calls" ? "calls" : "heartbeat";
const out = process.env.BENCH_PROFILE_OUT ?? join(os.tmpdir(), `deploybot-jobs-${path}-${callers}-${groupCommit ? "on" : "off"}.cpuprofile`);

const system = await prepareDeploybot({ jobs, callers, groupCommit, capabilities: { volumes: true }, path });
const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 100 });
await session.post("Profiler.start");
const rate = await system.run();
const { profile } = await session.post("Profiler.stop");
session.disconnect();
system.close();
writeFileSync(out, JSON.stringify(profile));
console.log(JSON.stringify({ path, callers, groupCommit, jobs, cyclesPerSecond: Math.round(rate.wall), perCpuSecond: Math.round(rate.cpu), groupSize: system.groupSize(), profile: out }));
