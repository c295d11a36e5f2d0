import { AgentService } from "./agents";
import { AgentTokens, ApiTokens } from "./auth";
import { DeploymentService } from "./deployments";
import type { Deps } from "./deps";
import { GitRefs } from "./gitRefs";
import { ImageService } from "./images";
import { JobLogService } from "./jobLogs";
import { JobService } from "./jobs";
import { LeaseService } from "./leases";
import { IngestRedaction } from "./redaction";
import { RunService } from "./runs";
import { Scheduler, type SchedulerHooks } from "./scheduler";
import { SecretStore } from "./secrets";
import { connectGitHub } from "./webhooks";

export type Services = ReturnType<typeof createServices>;

export function createServices(deps: Deps, secretKey: string, schedulerHooks: SchedulerHooks = {}) {
  const agentTokens = new AgentTokens(secretKey);
  const secrets = new SecretStore(deps, secretKey);
  // A job's secrets go only to an agent of a host the app is configured for: a job that reached
  // another host (a label target, a renamed host) gets none, and the agent then fails it naming the key.
  const leases = new LeaseService(deps, (app, names, host) =>
    deps.apps().byName(app)?.hosts.includes(host) ? secrets.valuesFor(app, names) : {},
  );
  const jobs = new JobService(deps, leases, secrets);
  const redaction = new IngestRedaction(deps, secrets);
  const deployments = new DeploymentService(deps, jobs, secrets);
  const runs = new RunService(deps, jobs, leases, deployments.catalog);
  const gitHub = connectGitHub(deps, deployments);
  const gitRefs = new GitRefs(deps, gitHub.github);
  return {
    runs,
    scheduler: new Scheduler(deps, runs, jobs, schedulerHooks),
    secrets,
    deployments,
    ...gitHub,
    gitRefs,
    images: new ImageService(deps, jobs, gitRefs, deployments),
    agentTokens,
    apiTokens: new ApiTokens(deps.db, deps.config.adminToken, deps.clock),
    leases,
    agents: new AgentService(deps, agentTokens, leases),
    jobs,
    redaction,
    jobLogs: new JobLogService(deps, leases, redaction),
  };
}
