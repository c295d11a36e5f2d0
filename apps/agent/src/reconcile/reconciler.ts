import type { AppStatus, DesiredApp } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { sleep } from "../backoff";
import { probeOnce } from "../docker/healthCheck";
import { LABELS, listManagedInfo, stopAndRemove } from "../docker/managedContainers";
import type { MountPolicy } from "../docker/volumes";
import type { HostProxy } from "../proxy";
import type { AgentState } from "../state";
import type { AppEventQueue } from "./appEvents";
import type { DesiredStore } from "./desiredStore";
import { exitReason, RESTART_BACKOFF, restartDelayMs, restartsAfter } from "./policy";
import { createReplica, ofRelease, type ServingContainer, servingContainers } from "./replicas";

/** What reconcile remembers of one container across passes and agent restarts. */
interface ContainerRecord {
  app: string;
  /** consecutive exits; the backoff grows with it and is forgotten after 10 min up */
  failures: number;
  restarts: number;
  /** FinishedAt of the exit already counted */
  seenExit?: string;
  nextRestartAt?: number;
  /** why reconcile stopped it itself (unhealthy), reported instead of the exit code */
  stopReason?: string;
  healthFailures: number;
  healthy?: boolean;
  everHealthy?: boolean;
  nextProbeAt?: number;
}

interface AppRecord {
  release: string | null;
  restarts: number;
  lastExitCode: number | null;
  lastReason: string | null;
  since: string | null;
  createFailures: number;
  nextCreateAt?: number;
}

interface Records {
  containers: Record<string, ContainerRecord>;
  apps: Record<string, AppRecord>;
}

export interface ReconcilerOptions {
  docker: Dockerode;
  store: DesiredStore;
  events: AppEventQueue;
  state: AgentState;
  logger: Logger;
  /**
   * The app and job of the job running now (reconcile never fights a deploy), and how many jobs
   * this agent has started: one that began after a listing makes the listing stale.
   */
  busy: () => { app: string | null; jobId: string | null; started: number };
  intervalMs: number;
  /** the host proxy: containers of apps with domains join its network and its routes */
  proxy?: HostProxy;
  /** what apps may mount from this host (DEPLOYBOT_AGENT_BIND_ROOTS) */
  mountPolicy?: MountPolicy;
  backoff?: { baseMs: number; capMs: number; resetAfterMs: number };
}

const FILE = "reconcile.json";
const DEFAULT_PERIOD_S = 10;
const DEFAULT_PROBE_TIMEOUT_S = 2;
const DEFAULT_THRESHOLD = 3;

/**
 * Makes the engine match the desired state, on a timer and at start, from the cached state
 * alone (the controller may be away): exited containers come back with exponential backoff,
 * missing ones are created from the release's image and config, containers the state does not
 * name are removed, running ones are health-checked. Only this agent's managed containers are
 * looked at; every action is queued as an event with its reason.
 */
export class Reconciler {
  private records: Records;
  private saved = "";
  private statuses = new Map<string, AppStatus>();
  private readonly stopped = new AbortController();
  private wake = new AbortController();
  private running: Promise<void> | null = null;
  /** the app a pass is acting on now; a job of that app waits for it (see settled) */
  private acting: { app: string; done: Promise<void> } | null = null;
  private readonly backoff;

  constructor(private readonly o: ReconcilerOptions) {
    this.backoff = o.backoff ?? RESTART_BACKOFF;
    this.records = o.state.read<Records>(FILE) ?? { containers: {}, apps: {} };
    this.saved = JSON.stringify(this.records);
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.running;
  }

  /**
   * Resolves once no pass is acting on `app`. A job of the app awaits it before it touches the
   * engine, so reconcile and a deploy never change one app's containers at once: a pass that
   * listed the old container, then found the deploy's release in the desired state, created a
   * second container beside the deploy's and removed the deploy's at the next pass.
   */
  async settled(app: string, signal?: AbortSignal): Promise<void> {
    // a job cancelled (or timed out) while it waits stops waiting: its end must not hang on a pass
    const aborted = signal ? new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true })) : null;
    while (this.acting?.app === app && !signal?.aborted) await (aborted ? Promise.race([this.acting.done, aborted]) : this.acting.done);
  }

  /** Run a pass now (a job ended, the desired state changed). */
  nudge(): void {
    this.wake.abort();
    this.wake = new AbortController();
  }

  /**
   * Every app's status. With `all` (the listing a heartbeat reports as its containers) it is
   * counted on that listing, with what the passes recorded (health, restarts): the status a pass
   * computed describes the containers of that pass, and a heartbeat sent right after a job
   * (start, deploy) reported the new containers beside the old status ("1 up, 0 healthy") until
   * the next heartbeat. A container no pass has probed yet counts as healthy, as in a pass: a
   * deploy or start only leaves one that passed its health check.
   * `ended`: the job whose final status this heartbeat carries. It is still the agent's job until
   * the controller has the report, but its containers are the app's now: left out, the heartbeat
   * that reported a deploy said "0 up, 0 healthy" beside a listing with the new container, and
   * `deploybot ps` showed the app degraded until the next one.
   */
  status(all?: ServingContainer[], ended?: string): AppStatus[] {
    if (!all) return [...this.statuses.values()];
    const busy = this.o.busy();
    const inProgress = busy.jobId !== null && busy.jobId !== ended ? busy.jobId : null;
    return [...this.appsOf(all)].map((app) => this.statusOf(app, servingContainers(all, app, inProgress)));
  }

  /** The apps a pass looks at: those of the desired state and those with managed containers. */
  private appsOf(all: ServingContainer[]): Set<string> {
    return new Set([...this.o.store.apps().map((a) => a.app), ...all.map((c) => c.Labels?.[LABELS.app]).filter((a): a is string => !!a)]);
  }

  private async loop(): Promise<void> {
    while (!this.stopped.signal.aborted) {
      try {
        await this.pass();
      } catch (err) {
        // the engine is away (dockerd restarting): try again next tick
        this.o.logger.warn({ err: (err as Error).message }, "reconcile pass failed");
      }
      await sleep(this.o.intervalMs, AbortSignal.any([this.stopped.signal, this.wake.signal]));
    }
  }

  /** One look at the engine and every action it calls for. */
  async pass(): Promise<void> {
    const { docker, store } = this.o;
    let listedAt = this.o.busy().started;
    let all = await listManagedInfo(docker);
    const statuses = new Map<string, AppStatus>();
    for (const app of this.appsOf(all)) {
      let done!: () => void;
      this.acting = { app, done: new Promise<void>((resolve) => (done = resolve)) };
      try {
        // From here a job of this app waits (settled); one started before is seen below.
        const busy = this.o.busy();
        if (busy.started !== listedAt) {
          // a job began since the listing (and may have ended): it changed what runs
          all = await listManagedInfo(docker);
          listedAt = busy.started;
        }
        const containers = servingContainers(all, app, busy.jobId);
        if (app !== busy.app && store.known) await this.reconcileApp(app, store.get(app), containers);
        statuses.set(app, this.statusOf(app, containers));
      } finally {
        this.acting = null;
        done();
      }
    }
    this.statuses = statuses;
    const live = new Set(all.map((c) => c.Id));
    for (const id of Object.keys(this.records.containers)) if (!live.has(id)) delete this.records.containers[id];
    this.save();
  }

  private async reconcileApp(app: string, entry: DesiredApp | undefined, containers: ServingContainer[]): Promise<void> {
    if (!entry || entry.state === "removed") {
      const reason = entry ? "the app was removed from this host" : "no desired state of this host names the app";
      for (const c of containers) await this.remove(app, c, reason, entry);
      if (!entry) delete this.records.apps[app];
      return;
    }
    const rec = this.appRecord(app, entry.release);
    const current = ofRelease(containers, entry.release);
    for (const c of containers.filter((c) => !current.includes(c))) {
      await this.remove(app, c, `release ${c.Labels?.[LABELS.release] ?? "?"} is not the desired release ${entry.release}`, entry);
    }
    if (entry.state === "stopped") {
      for (const c of current.filter((c) => c.State === "running")) {
        await this.o.docker.getContainer(c.Id).stop({ t: 10 }).catch(() => undefined);
        this.o.events.push({ app, kind: "stopped", reason: "the app is stopped on this host (deploybot start brings it back)", container: name(c) });
      }
      return;
    }
    // Too many (scaled down, or a replica came back): the ones not running go first.
    const keep = [...current].sort((a, b) => Number(b.State === "running") - Number(a.State === "running") || b.Created - a.Created);
    for (const c of keep.splice(entry.replicas)) await this.remove(app, c, `more containers than the ${entry.replicas} desired`, entry);
    for (const c of keep) {
      if (c.State === "running") await this.checkHealth(app, entry, c);
      else await this.bringBack(app, entry, c);
    }
    const missing = entry.replicas - keep.length;
    if (missing > 0 && Date.now() >= (rec.nextCreateAt ?? 0)) {
      for (let i = 0; i < missing; i++) {
        try {
          const id = await createReplica(this.o.docker, entry, this.routeOf(entry), this.o.mountPolicy);
          rec.createFailures = 0;
          rec.nextCreateAt = undefined;
          this.o.events.push({ app, kind: "recreated", reason: `${keep.length + i} of ${entry.replicas} containers existed; created one from release ${entry.release}`, container: id.slice(0, 12) });
        } catch (err) {
          rec.createFailures++;
          const delay = restartDelayMs(rec.createFailures, this.backoff);
          rec.nextCreateAt = Date.now() + delay;
          this.noteReason(rec, null, `could not create a container: ${(err as Error).message}`);
          this.o.events.push({ app, kind: "start_failed", reason: `could not create a container: ${(err as Error).message}; next try in ${delay / 1000} s` });
          break;
        }
      }
    }
  }

  /** A container of the desired release that is not running: restart it after its backoff. */
  private async bringBack(app: string, entry: DesiredApp, c: ServingContainer): Promise<void> {
    const container = this.o.docker.getContainer(c.Id);
    if (c.State === "created") {
      await container.start().catch(() => undefined);
      return;
    }
    if (c.State === "dead") {
      await this.remove(app, c, "the engine reports the container dead", entry);
      return;
    }
    if (c.State !== "exited") return; // paused, restarting, removing: someone else's doing
    const info = await container.inspect();
    const rec = this.containerRecord(app, c.Id);
    const appRec = this.appRecord(app, entry.release);
    const now = Date.now();
    if (rec.seenExit !== info.State.FinishedAt) {
      rec.seenExit = info.State.FinishedAt;
      const upMs = Date.parse(info.State.FinishedAt) - Date.parse(info.State.StartedAt);
      if (upMs >= this.backoff.resetAfterMs) rec.failures = 0;
      const reason = rec.stopReason ?? exitReason(info.State);
      const restart = rec.stopReason !== undefined || restartsAfter(entry.run?.restart, info.State.ExitCode);
      rec.stopReason = undefined;
      this.noteReason(appRec, info.State.ExitCode, reason, info.State.FinishedAt);
      if (!restart) {
        rec.nextRestartAt = undefined;
        this.o.events.push({ app, kind: "exited", reason: `${reason}; run.restart is '${entry.run?.restart}': left stopped`, container: name(c), exitCode: info.State.ExitCode });
        return;
      }
      rec.failures++;
      const delay = restartDelayMs(rec.failures, this.backoff);
      rec.nextRestartAt = now + delay;
      const loop = rec.failures > 1 ? ` (exit ${rec.failures} in a row: crash loop backoff)` : "";
      this.o.events.push({ app, kind: "exited", reason: `${reason}; restarting in ${delay / 1000} s${loop}`, container: name(c), exitCode: info.State.ExitCode });
    }
    if (rec.nextRestartAt === undefined || now < rec.nextRestartAt) return;
    rec.nextRestartAt = undefined;
    try {
      await container.start();
      rec.restarts++;
      appRec.restarts++;
      rec.healthFailures = 0;
      rec.everHealthy = false;
      rec.nextProbeAt = undefined;
      appRec.since = new Date().toISOString();
      // a restarted container may come back with another address on the proxy's network
      if (this.routeOf(entry)) await this.o.proxy?.converge().catch((err: Error) => this.o.logger.warn({ app, err: err.message }, "re-reading routes failed"));
      this.o.events.push({ app, kind: "restarted", reason: `restart ${appRec.restarts} after: ${appRec.lastReason ?? "an exit"}`, container: name(c) });
    } catch (err) {
      rec.failures++;
      const delay = restartDelayMs(rec.failures, this.backoff);
      rec.nextRestartAt = now + delay;
      this.o.events.push({ app, kind: "start_failed", reason: `${(err as Error).message}; next try in ${delay / 1000} s`, container: name(c) });
    }
  }

  /** The periodic health check: `failure_threshold` failures in a row stop the container, and backoff brings it back. */
  private async checkHealth(app: string, entry: DesiredApp, c: ServingContainer): Promise<void> {
    const rec = this.containerRecord(app, c.Id);
    const check = entry.run?.healthcheck;
    const period = check?.period_seconds ?? DEFAULT_PERIOD_S;
    if (!check || period === 0) {
      rec.healthy = true;
      return;
    }
    const now = Date.now();
    if (now < (rec.nextProbeAt ?? 0)) return;
    rec.nextProbeAt = now + period * 1000;
    const result = await probeOnce(this.o.docker, c.Id, check, (check.probe_timeout_seconds ?? DEFAULT_PROBE_TIMEOUT_S) * 1000).catch((err: Error) => ({ ok: false as const, reason: err.message }));
    if (result.ok) {
      rec.healthFailures = 0;
      rec.healthy = true;
      rec.everHealthy = true;
      return;
    }
    // A container still starting gets the deploy's health timeout before failures count.
    const startedAt = Date.parse((await this.o.docker.getContainer(c.Id).inspect().catch(() => null))?.State.StartedAt ?? "");
    if (!rec.everHealthy && now - startedAt < check.timeout_seconds * 1000) return;
    rec.healthy = false;
    rec.healthFailures++;
    const threshold = check.failure_threshold ?? DEFAULT_THRESHOLD;
    if (rec.healthFailures < threshold) return;
    rec.healthFailures = 0;
    rec.everHealthy = false;
    rec.stopReason = `unhealthy: ${threshold} health checks in a row failed (last: ${result.reason})`;
    this.o.events.push({ app, kind: "unhealthy", reason: `${rec.stopReason}; stopping it to restart`, container: name(c) });
    await this.o.docker.getContainer(c.Id).stop({ t: 10 }).catch(() => undefined);
  }

  /** The proxy when the app has domains and this agent routes it. */
  private routeOf(entry: DesiredApp | undefined): HostProxy | undefined {
    return entry?.route && this.o.proxy ? this.o.proxy : undefined;
  }

  private async remove(app: string, c: ServingContainer, reason: string, entry?: DesiredApp): Promise<void> {
    if (this.o.proxy?.table.get(app)?.upstreams.some((u) => u.container === c.Id)) {
      await this.o.proxy.removeUpstream(app, c.Id, entry?.route?.proxy.drain_seconds ?? 0).catch(() => undefined);
    }
    await stopAndRemove(this.o.docker, c.Id, 10);
    delete this.records.containers[c.Id];
    this.o.events.push({ app, kind: "removed", reason, container: name(c) });
  }

  private statusOf(app: string, containers: ServingContainer[]): AppStatus {
    const entry = this.o.store.get(app);
    const current = entry ? ofRelease(containers, entry.release) : containers;
    const rec = this.records.apps[app];
    const running = current.filter((c) => c.State === "running");
    const waits = current.map((c) => this.records.containers[c.Id]?.nextRestartAt).filter((t): t is number => t !== undefined);
    return {
      app,
      restarts: rec?.restarts ?? 0,
      lastExitCode: rec?.lastExitCode ?? null,
      lastReason: rec?.lastReason ?? null,
      since: rec?.since ?? null,
      nextRestartAt: waits.length > 0 ? new Date(Math.min(...waits)).toISOString() : null,
      running: running.length,
      healthy: running.filter((c) => this.records.containers[c.Id]?.healthy !== false).length,
    };
  }

  private noteReason(rec: AppRecord, exitCode: number | null, reason: string, at = new Date().toISOString()) {
    rec.lastExitCode = exitCode;
    rec.lastReason = reason;
    rec.since = at;
  }

  private containerRecord(app: string, id: string): ContainerRecord {
    this.records.containers[id] ??= { app, failures: 0, restarts: 0, healthFailures: 0 };
    return this.records.containers[id];
  }

  /** Restart counts belong to a release: a new deploy starts from zero. */
  private appRecord(app: string, release: string | null): AppRecord {
    const existing = this.records.apps[app];
    if (existing && existing.release === release) return existing;
    const fresh: AppRecord = { release, restarts: 0, lastExitCode: null, lastReason: null, since: null, createFailures: 0 };
    this.records.apps[app] = fresh;
    return fresh;
  }

  private save() {
    const text = JSON.stringify(this.records);
    if (text === this.saved) return;
    this.o.state.write(FILE, this.records);
    this.saved = text;
  }
}

const name = (c: ServingContainer) => c.Names?.[0]?.replace(/^\//, "") ?? c.Id.slice(0, 12);
