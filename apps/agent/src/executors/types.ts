import type { ClaimedJob, RegistryCredentials } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { MountPolicy } from "../docker/volumes";
import type { HostProxy } from "../proxy/hostProxy";
import type { DesiredStore } from "../reconcile/desiredStore";

export type LogStream = "stdout" | "stderr" | "system";
export type JobLog = (stream: LogStream, line: string) => void;

/** Everything an executor may touch. The daemon owns redaction, spooling and timeouts. */
export interface JobContext {
  docker: Dockerode;
  /** parent of per-job work dirs; the executor creates and removes `<workRoot>/<jobId>` */
  workRoot: string;
  /** survives jobs: git mirrors per app live here so a redeploy only fetches what changed */
  cacheRoot: string;
  log: JobLog;
  /** aborted on cancel or timeout: in-flight docker calls are cut and the job's containers removed */
  signal: AbortSignal;
  /** the agent's own registry credentials, matched by registry host when the job carries none */
  registries?: RegistryCredentials[];
  /** the host's proxy (absent when the agent runs none): routed deploys go through it */
  proxy?: HostProxy;
  /** the host's desired state: app operations read and change it (absent in executor-only tests) */
  desired?: DesiredStore;
  /** told every image layer a build of this job commits, so a cut build's layers can be found and removed later */
  recordLayer?: (imageId: string) => void;
  /** what apps may mount from this host (absent: named volumes only, no bind) */
  mountPolicy?: MountPolicy;
}

/** Expected failures are values (STYLE.md rule 16); `error: "cancelled"` means the signal fired. */
export type JobOutcome =
  | { ok: true; result: Record<string, unknown>; resultFile?: ResultFileContent }
  | {
      ok: false;
      error: string;
      result?: Record<string, unknown>;
      resultFile?: ResultFileContent;
      /** the job's containers that serve the app after all (a rollback that could not finish): cancel cleanup leaves them */
      keepContainers?: string[];
    };

/** A run's result file, uploaded on its own (`PUT /v1/jobs/{id}/result`) before the final status. */
export interface ResultFileContent {
  path: string;
  size: number;
  content: Buffer;
  truncated: boolean;
}

export type { ClaimedJob, RegistryCredentials };

export const CANCELLED = "cancelled";
