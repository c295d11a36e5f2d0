import type { JobChangedEvent } from "@deploybot/protocol";
import { AgentService } from "./agents";
import { AppLogService } from "./appLogs";
import { AppOperationService } from "./appOperations";
import { AppStateService } from "./appStates";
import { AgentTokens, ApiTokens } from "./auth";
import { DatabaseBackups } from "./backups";
import { DeploymentService } from "./deployments";
import { AgentDistribution } from "./agentDist";
import { AgentUpdates } from "./agentUpdates";
import type { Deps } from "./deps";
import { GitRefs } from "./gitRefs";
import { ImageService } from "./images";
import { Drainer } from "./drainer";
import { IdempotencyKeys } from "./idempotency";
import { JobLogService } from "./jobLogs";
import { JoinTokens } from "./joinTokens";
import { JobService } from "./jobs";
import { JobState } from "./jobState";
import { SqliteJobStore } from "./jobStore";
import { SqliteJobTransitions } from "./jobTransitions";
import { PgJobTransitions } from "./pgJobState";
import type { PgFacadeDb } from "../db/pgFacade";
import { LeaseService } from "./leases";
import { NOTIFYING_TYPES, NotificationService } from "./notifications";
import { IngestRedaction } from "./redaction";
import { RouteReports } from "./routing";
import { RunService } from "./runs";
import { Scheduler, type SchedulerHooks } from "./scheduler";
import { SecretStore } from "./secrets";
import { Sealer } from "./sealer";
import { connectGitHub } from "./webhooks";

export type Services = ReturnType<typeof createServices>;

export function createServices(deps: Deps, secretKey: string, schedulerHooks: SchedulerHooks = {}, opts: { drainerSignals?: "inline" | "follower" } = {}) {
  const agentTokens = new AgentTokens(secretKey);
  const secrets = new SecretStore(deps, secretKey);
  // the one place the engine shows: each has its own job state behind the same interface
  const jobState =
    deps.db.engine === "sqlite"
      ? new SqliteJobTransitions(new JobState(deps, new SqliteJobStore(deps.db), deps.outbox))
      : new PgJobTransitions(deps.db as PgFacadeDb, deps);
  // A job's secrets go only to an agent of a host the app is configured for: a job that reached
  // another host (a label target, a renamed host) gets none, and the agent then fails it naming the key.
  const leases = new LeaseService(deps, jobState, async (app, names, host) =>
    deps.apps().byName(app)?.hosts.includes(host) ? await secrets.valuesFor(app, names) : {},
  );
  const jobs = new JobService(deps, jobState, secrets);
  const redaction = new IngestRedaction(deps, secrets);
  const joinTokens = new JoinTokens(deps);
  const deployments = new DeploymentService(deps, jobs, jobState, secrets);
  const runs = new RunService(deps, jobs, leases, deployments.catalog);
  const gitHub = connectGitHub(deps, deployments);
  const agentDist = new AgentDistribution(deps.config.agentDist);
  const gitRefs = new GitRefs(deps, gitHub.github);
  const images = new ImageService(deps, jobs, gitRefs, deployments);
  const drainer = new Drainer(deps, { signals: opts.drainerSignals ?? "inline" });
  const idempotencyKeys = new IdempotencyKeys(deps.db, deps.clock, new Sealer(secretKey, "idempotent-answers"));
  const secretsForHost = async (app: string, names: readonly string[], host: string) =>
    deps.apps().byName(app)?.hosts.includes(host) ? await secrets.valuesFor(app, names) : {};
  const appStates = new AppStateService(deps, (id) => jobs.getRow(id), secretsForHost);
  const notifications = new NotificationService(deps, redaction);
  registerConsequences(deps, drainer, { deployments, images, runs, appStates, commitStatuses: gitHub.commitStatuses, notifications });
  drainer.follow();
  const agentService = new AgentService(deps, agentTokens, leases, appStates, joinTokens);
  return {
    backups: new DatabaseBackups(deps.db.engine === "sqlite" ? deps.config.dbPath : null, deps.logger),
    runs,
    scheduler: new Scheduler(deps, runs, jobs, schedulerHooks),
    secrets,
    deployments,
    ...gitHub,
    gitRefs,
    agentDist,
    agentUpdates: new AgentUpdates(deps, agentDist),
    images,
    agentTokens,
    apiTokens: new ApiTokens(deps.db, deps.config.adminToken, deps.clock),
    idempotencyKeys,
    jobState,
    leases,
    joinTokens,
    appStates,
    appLogs: new AppLogService(deps, redaction),
    agents: agentService,
    routes: new RouteReports(deps, agentService),
    appOperations: new AppOperationService(deps, jobs, appStates, agentService),
    jobs,
    redaction,
    jobLogs: new JobLogService(deps, leases, redaction),
    drainer,
    notifications,
    /** every minute: expired idempotency keys, outbox rows past the retention that were applied */
    async housekeeping() {
      const keys = await idempotencyKeys.sweep();
      const events = await deps.outbox.prune(deps.config.eventsRetentionMs, await drainer.appliedUpTo());
      // ended deliveries are kept as long as the events they were made from
      const deliveries = await notifications.prune(deps.config.eventsRetentionMs);
      if (keys + events + deliveries > 0) deps.logger.debug({ keys, events, deliveries }, "housekeeping");
    },
  };
}

/**
 * What follows from each kind of change. A feature adds its own here (see README, "Adding an
 * event type and a consequence"); the drainer applies them in outbox order.
 */
function registerConsequences(
  deps: Deps,
  drainer: Drainer,
  s: {
    deployments: DeploymentService;
    images: ImageService;
    runs: RunService;
    appStates: AppStateService;
    commitStatuses: ReturnType<typeof connectGitHub>["commitStatuses"];
    notifications: NotificationService;
  },
) {
  drainer.register({
    name: "run-progress",
    types: ["job.changed"],
    kind: "db",
    apply: (e) => s.runs.applyJobChange(e.data as JobChangedEvent),
  });
  // first: a host's desired state (app.desired) changes before its deployment reads succeeded
  drainer.register({
    name: "desired-state",
    types: ["job.changed"],
    kind: "db",
    apply: (e) => s.appStates.applyJobChange(e.data as JobChangedEvent),
  });
  drainer.register({
    name: "deployment-progress",
    types: ["job.changed"],
    kind: "db",
    apply: (e) => s.deployments.applyJobChange(e.data as JobChangedEvent),
  });
  drainer.register({
    name: "image-status",
    types: ["job.changed"],
    kind: "db",
    apply: (e) => s.images.applyJobChange(e.data as JobChangedEvent),
  });
  drainer.register({
    name: "wake-agents",
    types: ["job.changed"],
    kind: "signal",
    apply: (e) => deps.notifier.jobChanged(e.data as JobChangedEvent),
  });
  drainer.register({
    name: "log-streams",
    types: ["job.changed"],
    kind: "signal",
    apply: (e) => deps.events.jobChanged(e.data as JobChangedEvent),
  });
  // a delivery row per interested target, in the drainer's transaction; sent after the commit
  drainer.register({ name: "notifications", types: NOTIFYING_TYPES, kind: "db", apply: (e) => s.notifications.enqueue(e) });
  drainer.register({ name: "send-notifications", types: NOTIFYING_TYPES, kind: "signal", apply: () => s.notifications.kick() });
  if (s.commitStatuses.enabled) {
    drainer.register({
      name: "commit-status",
      types: ["deployment.changed"],
      kind: "external",
      apply: (e) => s.commitStatuses.report(e),
    });
  }
}
