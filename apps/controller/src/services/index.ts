import { AgentService } from "./agents";
import { AgentTokens, ApiTokens } from "./auth";
import type { Deps } from "./deps";
import { JobLogService } from "./jobLogs";
import { JobService } from "./jobs";
import { LeaseService } from "./leases";

export type Services = ReturnType<typeof createServices>;

export function createServices(deps: Deps, secretKey: string) {
  const agentTokens = new AgentTokens(secretKey);
  const leases = new LeaseService(deps);
  return {
    agentTokens,
    apiTokens: new ApiTokens(deps.db, deps.config.adminToken, deps.clock),
    leases,
    agents: new AgentService(deps, agentTokens, leases),
    jobs: new JobService(deps, leases),
    jobLogs: new JobLogService(deps, leases),
  };
}
