import type { Agent, Deployment, Job, Release, RunSpec, Schedule } from "@deploybot/protocol";

export type { Agent, Deployment, Job, Release, Schedule };

/** `GET /v1/apps`: what apps.yaml says of an app, with its current release. */
export interface App {
  name: string;
  repo: string;
  url: string;
  branch: string;
  deployOnPush: boolean;
  hosts: string[];
  image: string | null;
  /** `image`, else the controller's registry; null: each host builds it, nothing is pushed */
  imageRepository: string | null;
  run: RunSpec;
  /** served by the host proxy (controllers with routing; absent on older ones) */
  domains?: string[];
  tls?: "auto" | "internal" | "off";
  replicas?: number;
  currentRelease: Release | null;
  /** per host: what should run and what does (controllers with desired state; absent on older ones) */
  status?: AppHostStatus[];
}

/** `status` of an app: the desired state the controller keeps and what the agent last reported. */
export interface AppHostStatus {
  host: string;
  online: boolean;
  desired: { release: string | null; replicas: number; state: string; updatedAt: string } | null;
  actual: {
    releases: string[];
    containers: number;
    running: number;
    healthy: number;
    restarts: number;
    lastExitCode: number | null;
    lastReason: string | null;
    since: string | null;
    nextRestartAt: string | null;
  };
}

/** A container an agent reports in its heartbeat (`managedContainer` in the protocol). */
export interface HostContainer {
  id: string;
  name?: string;
  app?: string;
  job?: string;
  release?: string;
  image?: string;
  state?: string;
}

export interface Delivery {
  deliveryId: string;
  event: string;
  repo: string | null;
  ref: string | null;
  sha: string | null;
  outcome: string;
  reason: string;
  deploymentId: string | null;
  receivedAt: string;
}

export interface ApiTokenRow {
  id: string;
  name: string;
  scope: "admin" | "deploy" | "read";
  /** the apps it is limited to; null: every app */
  apps?: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface SecretName {
  key: string;
  updatedAt: string;
}

/** `routes` of `GET /v1/apps/{name}`: one host proxy's route for the app, as its agent last reported it. */
export interface HostRoute {
  host: string;
  online: boolean;
  healthy: number;
  domains: string[];
  tls: string;
  upstreams: Array<{ container: string; address: string; state: string; health: string; release?: string }>;
  /** the certificate the host proxy serves (agents before it report none) */
  certificate?: { issuer: string; validTo: string; renewalDueAt: string };
  /** why the host's last certificate order failed, until one succeeds */
  certificateError?: string;
}
