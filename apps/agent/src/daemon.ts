import { jobsRun } from "./metrics";
import { randomUUID } from "node:crypto";
import { arch, cpus, platform, totalmem } from "node:os";
import { join } from "node:path";
import { type ClaimedJob, FEATURES, type FinishedAnswer, type FinishedReport, type HeartbeatResponse, type HostVolume, PROTOCOL_VERSION } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { backoffMs, sleep } from "./backoff";
import type { AgentConfig } from "./config";
import { ControllerClient, ControllerError, isRetryable } from "./controllerClient";
import { LABELS, listManagedInfo, toManaged } from "./docker/managedContainers";
import { findJobContainer, scopeToHost } from "./executors";
import { JobRunner, type RunnerDeps } from "./jobRunner";
import { AppLogShipper } from "./appLogs/appLogShipper";
import { JobLogSpool } from "./logSpool";
import { HostProxy } from "./proxy";
import { AppEventQueue } from "./reconcile/appEvents";
import { DesiredStore } from "./reconcile/desiredStore";
import { Reconciler } from "./reconcile/reconciler";
import { Redactor } from "./redact";
import { localIoReason } from "./diskFull";
import { removeLeftovers } from "./leftovers";
import { AgentState } from "./state";
import { measureVolumes, type MountPolicy } from "./docker/volumes";
import { RESTART_EXIT_CODE, selfUpdate } from "./selfUpdate";
import { AGENT_VERSION } from "./version";

export { AGENT_VERSION };

const VOLUME_MEASURE_MS = 5 * 60 * 1000;

/**
 * The agent's life: register, heartbeat (long-polling while idle), take at most one job per
 * heartbeat, run it, report it. Outbound HTTP only; a controller outage is waited out, never fatal.
 */
export class AgentDaemon {
  private readonly client: ControllerClient;
  private readonly state: AgentState;
  private agentId = "";
  private intervalSeconds = 10;
  private current: JobRunner | null = null;
  private draining = false;
  /** jobs adopted since start: reconcile re-lists the engine when a job began after its listing */
  private jobsStarted = 0;
  /** what the process exits with: RESTART_EXIT_CODE after a self-update, for systemd to restart it */
  exitCode = 0;
  private readonly stopped = new AbortController();
  private spools: JobLogSpool[] = [];
  /** the host proxy for apps with domains; null with DEPLOYBOT_PROXY=off */
  readonly proxy: HostProxy | null;
  /** aborted to cut the current sleep or long-poll short (a job ended, a drain began) */
  private wakeup = new AbortController();
  private readonly desired: DesiredStore;
  /** the host's named volumes as last measured; null: measure at the next heartbeat (start, after a job) */
  private volumes: { list: HostVolume[]; at: number } | null = null;
  /** binds only below DEPLOYBOT_AGENT_BIND_ROOTS, never into the agent's own state (its token, cached secrets) */
  private get mountPolicy(): MountPolicy {
    return { bindRoots: this.config.bindRoots, protectedPaths: [this.config.stateDir] };
  }
  private readonly appEvents: AppEventQueue;
  private readonly reconciler: Reconciler;
  private readonly appLogs: AppLogShipper | null;
  /** set when the controller refused the desired-state fields (a controller from before them) */
  private legacyHeartbeat = false;
  /** what the controller answering last can do beyond protocol v1 (`features` in its answers) */
  private controllerFeatures = new Set<string>();
  /** the current job's final status, waiting for the next heartbeat to carry it */
  private pendingFinal: { report: FinishedReport; settle: (answer: FinishedAnswer | null) => void } | null = null;

  private nudge() {
    this.wakeup.abort();
    this.wakeup = new AbortController();
  }

  constructor(
    private readonly config: AgentConfig,
    private readonly docker: Dockerode,
    private readonly logger: Logger,
    /** shared with the agent's own log, so job secrets learnt here are masked there too */
    private readonly redactor = new Redactor(),
  ) {
    this.client = new ControllerClient(config.urls, ({ from, to, reason }) => logger.warn({ from, to, reason }, "switched to another controller"));
    this.state = new AgentState(config.stateDir);
    // Containers from before the host label: this host's apps and the job it holds are its own.
    scopeToHost(config.hostname, (labels) => {
      const app = labels[LABELS.app];
      const job = this.current?.job ?? this.state.loadHeldJob();
      return (!!app && (this.desired.get(app) !== undefined || job?.app === app)) || (!!job && labels[LABELS.job] === job.id);
    });
    this.redactor.add(config.joinToken, ...config.registries.map((r) => r.password));
    const p = config.proxy;
    this.proxy =
      p.supervision === "off"
        ? null
        : new HostProxy({
            docker,
            stateDir: config.stateDir,
            network: p.network,
            bindAddress: p.bindAddress,
            httpPort: p.httpPort,
            httpsPort: p.httpsPort,
            supervision: p.supervision,
            haproxyBin: p.haproxyBin,
            ...(p.acmeCaCertFile ? { acmeCaCertFile: p.acmeCaCertFile } : {}),
            log: (line) => logger.info(line),
          });
    this.desired = new DesiredStore(this.state);
    this.redactDesiredSecrets();
    this.appLogs = config.shipAppLogs ? new AppLogShipper(docker, this.client, this.state, this.redactor, logger.child({ component: "app-logs" })) : null;
    this.appEvents = new AppEventQueue(this.state, logger.child({ component: "reconcile" }));
    this.reconciler = new Reconciler({
      docker,
      store: this.desired,
      events: this.appEvents,
      state: this.state,
      logger: logger.child({ component: "reconcile" }),
      intervalMs: config.reconcileIntervalSeconds * 1000,
      ...(this.proxy ? { proxy: this.proxy } : {}),
      mountPolicy: this.mountPolicy,
      busy: () => {
        // before recovery has adopted it, a job held on disk still owns its app
        const job = this.current?.job ?? this.state.loadHeldJob();
        return { app: job?.app ?? null, jobId: job?.id ?? null, started: this.jobsStarted };
      },
    });
  }

  /** App containers' output leaves the host redacted of every secret value the apps run with. */
  private redactDesiredSecrets() {
    for (const app of this.desired.apps()) this.redactor.add(...Object.values(app.secretEnv ?? {}));
  }

  /**
   * The heartbeat body; without the desired-state fields for a controller that refuses them.
   * `finished` (the held job's final status) describes the agent after the report, while
   * `status` and `heldJobIds` still describe it before: a controller that cannot read the report
   * sees a busy agent and hands it nothing.
   */
  private async heartbeatBody() {
    const finished = this.finishedToSend();
    // one listing for the containers and the apps' status, so the two agree
    const listed = await listManagedInfo(this.docker).catch(() => null);
    const base = {
      protocolVersion: PROTOCOL_VERSION,
      status: this.draining ? "draining" : this.current ? "busy" : "idle",
      heldJobIds: this.current ? [this.current.job.id] : [],
      containers: listed?.map(toManaged) ?? [],
      ...(this.proxy && this.proxy.table.all().length > 0 ? { routes: await this.proxy.routes().catch(() => []) } : {}),
      ...(finished ? { finished } : {}),
    };
    if (this.legacyHeartbeat) return base;
    return {
      ...base,
      desiredVersion: this.desired.version,
      appEvents: this.appEvents.unsent(),
      appStatus: this.reconciler.status(listed ?? undefined, finished?.jobId),
      volumes: await this.hostVolumes(),
    };
  }

  /** Volume sizes walk every volume (`/system/df`): measured every 5 minutes and after each job, not per heartbeat. */
  private async hostVolumes(): Promise<HostVolume[]> {
    if (!this.volumes || Date.now() - this.volumes.at > VOLUME_MEASURE_MS) {
      const list = await measureVolumes(this.docker).catch(() => this.volumes?.list ?? []);
      this.volumes = { list, at: Date.now() };
    }
    return this.volumes.list;
  }

  /** The pending final report, if the controller said it reads one; else it goes back to the status route. */
  private finishedToSend(): FinishedReport | undefined {
    const pending = this.pendingFinal;
    if (!pending) return undefined;
    if (this.controllerFeatures.has(FEATURES.finishedInHeartbeat)) return pending.report;
    this.settleFinal(null);
    return undefined;
  }

  private settleFinal(answer: FinishedAnswer | null) {
    const pending = this.pendingFinal;
    this.pendingFinal = null;
    pending?.settle(answer);
  }

  /** JobRunner's way to report its end in the next heartbeat (see RunnerDeps.finishInHeartbeat). */
  private finishInHeartbeat(report: FinishedReport): Promise<FinishedAnswer | null> {
    if (!this.controllerFeatures.has(FEATURES.finishedInHeartbeat) || this.stopped.signal.aborted) return Promise.resolve(null);
    this.settleFinal(null); // never two: a report still waiting goes to the status route
    const answer = new Promise<FinishedAnswer | null>((settle) => {
      this.pendingFinal = { report, settle };
    });
    this.nudge();
    return answer;
  }

  private applyHeartbeatAnswer(res: HeartbeatResponse) {
    if (res.appEventsAcked !== undefined) this.appEvents.ack(res.appEventsAcked);
    if (res.desired) {
      this.desired.applyRemote(res.desired);
      this.redactDesiredSecrets();
      this.logger.info({ version: res.desired.version, apps: res.desired.apps.length }, "desired state received");
      this.reconciler.nudge();
    }
  }

  /** A deploy that succeeded here is what this host should run from now on. */
  private jobSucceeded(job: ClaimedJob, result: Record<string, unknown>) {
    if (job.kind !== "deploy") return;
    this.desired.setLocal(job.app, job.id, {
      release: typeof result.release === "string" ? result.release : (job.spec.release ?? null),
      image: typeof result.image === "string" ? result.image : null,
      run: job.spec.run ?? null,
      secretEnv: job.spec.secretEnv,
      // a deploy runs apps.yaml's replicas; `deploybot scale` changes them until the next deploy
      replicas: job.spec.replicas ?? 1,
      route:
        job.spec.domains && job.spec.domains.length > 0 && job.spec.proxy
          ? { domains: job.spec.domains, proxy: job.spec.proxy, tls: job.spec.tls ?? "auto", ...(job.spec.acme ? { acme: job.spec.acme } : {}) }
          : null,
      state: "running",
    });
  }

  /**
   * Routes come back before anything else: the table on disk is applied (HAProxy started or
   * reloaded, addresses re-read from the engine), then a watchdog restores them whenever
   * HAProxy stops answering. A proxy that cannot start is logged, never fatal for the agent.
   */
  private async startProxy(): Promise<void> {
    const proxy = this.proxy;
    if (!proxy) return;
    if (proxy.table.all().length > 0) {
      await proxy.converge().catch((err: Error) => this.logger.error({ err: err.message }, "restoring routes failed"));
    }
    void proxy.watch(this.stopped.signal);
    void proxy.renewLoop(this.stopped.signal);
  }

  private get spoolDir() {
    return join(this.config.stateDir, "spool");
  }

  /** Retries `fn` with backoff while the controller is away; 4xx answers are thrown. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryable(err) || this.stopped.signal.aborted) throw err;
        // At most one heartbeat interval between tries: a controller back from a restart gives
        // held jobs one lease (3 intervals) to be reported, and an agent asleep in a 30 s backoff
        // after a 30 s outage missed it — the job ended `lost` though it succeeded here.
        const wait = backoffMs(attempt, 500, this.retryCapMs());
        this.logger.warn({ what, err: (err as Error).message, retryInMs: Math.round(wait) }, "controller call failed; retrying");
        await sleep(wait, this.stopped.signal);
      }
    }
  }

  private retryCapMs(): number {
    return Math.min(30_000, this.intervalSeconds * 1000);
  }

  /** A job's log spool; its upload retries wait at most one heartbeat interval, as every call here. */
  private spoolFor(jobId: string, leaseId: string, onCancelRequested?: () => void): JobLogSpool {
    return new JobLogSpool(this.spoolDir, jobId, leaseId, this.client, this.redactor, this.logger, onCancelRequested, () => this.retryCapMs());
  }

  private async capabilities() {
    const engine = await this.docker.version().catch(() => null);
    return { engineVersion: engine?.Version, arch: arch(), os: platform(), cpus: cpus().length, memoryBytes: totalmem(), autoUpdate: this.config.autoUpdate, volumes: true, appLogs: this.config.shipAppLogs };
  }

  async register(): Promise<void> {
    const held = this.state.loadHeldJob();
    const capabilities = await this.capabilities();
    const body = {
      hostname: this.config.hostname,
      labels: this.config.labels,
      version: AGENT_VERSION,
      capabilities,
      heldJobIds: held ? [held.id] : [],
      protocolVersion: PROTOCOL_VERSION,
    };
    // One Idempotency-Key per registration, the same on each of its retries: when an answer is
    // lost on the way back, the retry gets that answer replayed instead of presenting a
    // single-use join token the first attempt already spent (a 401, and a host that never joins).
    const registerWith = (token: string) => {
      const headers = { "idempotency-key": `register-${randomUUID()}` };
      return this.retrying("register", () =>
        this.client.post<{ agent: { id: string }; token: string; heartbeatIntervalSeconds: number; features?: string[] }>("/v1/agents/register", body, {
        token,
        headers,
      }),
      );
    };
    // Our own token first: an agent keeps working after the join token is rotated. A refused
    // (expired, rotated, revoked) token falls back to the join token.
    const saved = this.state.loadIdentity();
    let res: Awaited<ReturnType<typeof registerWith>> | null = null;
    if (saved?.hostname === this.config.hostname) {
      res = await registerWith(saved.token).catch((err) => {
        if (err instanceof ControllerError && (err.status === 401 || err.status === 403)) return null;
        throw err;
      });
    }
    res ??= await registerWith(this.config.joinToken);
    this.agentId = res.agent.id;
    this.client.token = res.token;
    this.intervalSeconds = res.heartbeatIntervalSeconds;
    this.controllerFeatures = new Set(res.features ?? []);
    this.state.saveIdentity({ agentId: res.agent.id, token: res.token, hostname: this.config.hostname });
    this.logger.info({ agentId: this.agentId }, "registered");
  }

  /** The jobs this agent holds now: the running one, else the one recorded on disk before a restart. */
  private heldJobIds(): Set<string> {
    const job = this.current?.job ?? this.state.loadHeldJob();
    return new Set(job ? [job.id] : []);
  }

  /**
   * Removes what jobs no longer held left behind (leftovers.ts). Its file part runs before this
   * returns, so no job claimed afterwards can lose its fresh work dir or spool to it.
   */
  private sweepLeftovers(): Promise<unknown> {
    return removeLeftovers(this.docker, this.config.stateDir, () => this.heldJobIds(), this.logger.child({ component: "leftovers" }));
  }

  async run(): Promise<void> {
    // First, before anything writes: a state disk filled by a crashed job's leftovers gets its space back.
    await this.sweepLeftovers();
    await this.startProxy();
    // Reconcile first: apps come back from the cached state even while the controller is away.
    this.reconciler.start();
    this.appLogs?.start(() => (this.agentId ? `/v1/agents/${this.agentId}` : null));
    await this.register();
    await this.recover();
    while (!this.stopped.signal.aborted) {
      if (this.draining && !this.current) break;
      const idle = !this.current && !this.draining;
      let res: HeartbeatResponse;
      let sent: FinishedReport | undefined;
      try {
        res = await this.retrying("heartbeat", async () => {
          const body = await this.heartbeatBody();
          sent = body.finished;
          return this.client.post<HeartbeatResponse>(
            `/v1/agents/${this.agentId}/heartbeat${idle && this.config.pollWaitSeconds > 0 ? `?wait=${this.config.pollWaitSeconds}` : ""}`,
            body,
            { timeoutMs: (this.config.pollWaitSeconds + 15) * 1000, signal: this.stopped.signal },
          );
        });
      } catch (err) {
        if (err instanceof ControllerError && err.status === 401) {
          this.logger.warn("agent token refused; registering again");
          await this.register();
          continue;
        }
        if (this.stopped.signal.aborted) break;
        if (err instanceof ControllerError && err.status === 400 && !this.legacyHeartbeat) {
          this.logger.warn({ err: err.message }, "controller refuses the desired-state fields (older version?); heartbeating without them");
          this.legacyHeartbeat = true;
          continue;
        }
        this.logger.error({ err: (err as Error).message }, "heartbeat refused");
        await sleep(backoffMs(3), this.stopped.signal);
        continue;
      }
      this.intervalSeconds = res.heartbeatIntervalSeconds;
      // a controller that names no features (an older one behind the same URL) gets none used
      this.controllerFeatures = new Set(res.features ?? []);
      this.applyHeartbeatAnswer(res);
      const reporting = sent && this.pendingFinal?.report === sent ? this.current : null;
      if (reporting) {
        // no `finished` in the answer: the controller did not read it, the status route reports it
        this.settleFinal(res.finished?.jobId === sent!.jobId ? res.finished : null);
      }
      if (this.current && res.cancelJobIds.includes(this.current.job.id)) this.current.cancel("cancel requested");
      if (res.job) {
        // the job just reported clears its record on disk first: the next one's record stays
        if (reporting) await reporting.finished;
        this.start(res.job);
        continue; // heartbeat again at once: the controller learns we hold it
      }
      if (this.pendingFinal) continue; // reported while this heartbeat was on its way: carry it now
      // An update only between jobs: never while one runs, never while draining.
      if (res.update && idle && !this.current && this.config.autoUpdate) {
        const outcome = await selfUpdate(res.update, {
          download: (path) => this.client.download(path, { timeoutMs: 120_000 }),
          stateDir: this.config.stateDir,
          trialSeconds: this.config.updateTrialSeconds,
          logger: this.logger,
        });
        if (outcome === "restart") {
          this.exitCode = RESTART_EXIT_CODE;
          break;
        }
        // the trial registered with our identity, which rotated our token: take it back
        await this.register();
        continue;
      }
      if (!idle || this.config.pollWaitSeconds === 0) {
        // ±20% jitter so a fleet restarted together does not heartbeat in lockstep
        await sleep(this.intervalSeconds * 1000 * (0.8 + Math.random() * 0.4), AbortSignal.any([this.wakeup.signal, this.stopped.signal]));
      }
    }
    this.settleFinal(null);
    if (this.draining) await this.lastHeartbeat();
    await Promise.all(this.spools.map((s) => s.close(10_000)));
    await this.reconciler.stop();
    await this.appLogs?.stop();
    this.logger.info("stopped");
  }

  private start(job: ClaimedJob) {
    this.logger.info({ jobId: job.id, kind: job.kind, app: job.app }, "job claimed");
    this.redactor.add(job.spec.registry?.password, ...Object.values(job.spec.secretEnv ?? {}));
    let localError: string | undefined;
    try {
      this.state.saveHeldJob({
        id: job.id,
        leaseId: job.leaseId,
        kind: job.kind,
        app: job.app,
        startedAt: Date.now(),
        ...(job.kind === "run" && job.spec.run?.result_file ? { resultFile: job.spec.run.result_file } : {}),
      });
    } catch (err) {
      localError = localIoReason(err, this.config.stateDir);
    }
    const spool = this.spoolFor(job.id, job.leaseId, () => this.current?.cancel("cancel requested"));
    this.adopt(JobRunner.start(job, this.runnerDeps(job.id, spool), localError ?? spool.ioError ?? undefined));
  }

  private runnerDeps(jobId: string, spool: JobLogSpool): RunnerDeps {
    return {
      docker: this.docker,
      client: this.client,
      spool,
      state: this.state,
      logger: this.logger.child({ jobId }),
      stateDir: this.config.stateDir,
      registries: this.config.registries,
      ...(this.proxy ? { proxy: this.proxy } : {}),
      retrying: (what, fn) => this.retrying(what, fn),
      redactor: this.redactor,
      desired: this.desired,
      mountPolicy: this.mountPolicy,
      succeeded: (job, result) => this.jobSucceeded(job, result),
      settled: (app, signal) => this.reconciler.settled(app, signal),
      finishInHeartbeat: (report) => this.finishInHeartbeat(report),
    };
  }

  /** The runner is the current job until it has reported its end; then the loop wakes. */
  private adopt(runner: JobRunner): void {
    this.current = runner;
    this.jobsStarted++;
    runner.finished.then(() => {
      jobsRun.inc({ kind: runner.job.kind });
      if (this.current === runner) this.current = null;
      void this.sweepLeftovers();
      this.volumes = null; // a deploy may have created a volume, a remove purged one
      this.nudge();
      this.reconciler.nudge();
    });
  }

  /**
   * After a crash: resume uploading spooled logs, finish reporting a job that had ended, and
   * for a job cut off mid-way either re-attach to its container or fail it at once with why.
   */
  private async recover(): Promise<void> {
    const held = this.state.loadHeldJob();
    for (const left of JobLogSpool.leftovers(this.spoolDir)) {
      if (left.jobId === held?.id) continue;
      const spool = this.spoolFor(left.jobId, left.leaseId);
      // no line will be added: uploaded (or refused), it removes itself instead of polling for ever
      void spool.close();
      this.spools.push(spool);
    }
    if (!held) return;
    const spool = this.spoolFor(held.id, held.leaseId);
    const container = held.final ? null : await findJobContainer(this.docker, held.id).catch(() => null);
    this.adopt(JobRunner.recovered(held, container, this.runnerDeps(held.id, spool)));
  }

  /**
   * Drained: one last heartbeat says so (an idle agent stops mid long-poll, a busy one may have
   * ended its job between heartbeats), so `hosts` shows `draining` until the host goes offline.
   * Best effort: a controller that is away is not waited for.
   */
  private async lastHeartbeat() {
    if (!this.agentId) return;
    try {
      await this.client.post(`/v1/agents/${this.agentId}/heartbeat`, await this.heartbeatBody(), { timeoutMs: 5000 });
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "last heartbeat not delivered");
    }
  }

  /** SIGTERM: take no new job, let the current one finish within the drain time, flush, stop. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.logger.info({ job: this.current?.job.id ?? null }, "draining");
    // heartbeat now rather than after the interval: the controller shows the host draining at once
    this.nudge();
    const job = this.current;
    if (job) {
      const timer = setTimeout(() => job.cancel("agent shutting down"), this.config.drainTimeoutSeconds * 1000);
      await job.finished;
      clearTimeout(timer);
    }
    this.stopped.abort();
  }
}
