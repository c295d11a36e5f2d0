/** The agent's Docker side, as the daemon sees it. */
export { cleanupJob, findJobContainer, listManagedContainers, type ManagedContainer, scopeToHost } from "../docker/managedContainers";
export { executeJob } from "./executeJob";
export { CANCELLED, type JobContext, type JobLog, type JobOutcome, type LogStream } from "./types";
export { type RollOutContext, type RollOutOutcome, type RollOutPlan, rollOut } from "./rollOut";
