import { AgentService } from "./agents";
import { AgentTokens, ApiTokens } from "./auth";
import { DeploymentService } from "./deployments";
import type { Deps } from "./deps";
import { JobLogService } from "./jobLogs";
import { JobService } from "./jobs";
import { LeaseService } from "./leases";
import { SecretStore } from "./secrets";
import { connectGitHub } from "./webhooks";

export type Services = ReturnType<typeof createServices>;

export function createServices(deps: Deps, secretKey: string) {
  const agentTokens = new AgentTokens(secretKey);
  const secrets = new SecretStore(deps, secretKey);
  const leases = new LeaseService(deps, (app, names) => secrets.valuesFor(app, names));
  const jobs = new JobService(deps, leases);
  const deployments = new DeploymentService(deps, jobs);
  return {
    secrets,
    deployments,
    ...connectGitHub(deps, deployments),
    agentTokens,
    apiTokens: new ApiTokens(deps.db, deps.config.adminToken, deps.clock),
    leases,
    agents: new AgentService(deps, agentTokens, leases),
    jobs,
    jobLogs: new JobLogService(deps, leases),
  };
}
