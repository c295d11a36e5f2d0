import { type AcmeAccount, type JobSpec, type ProxySpec, type RunSpec, runSpec, type TlsMode } from "@deploybot/protocol";

/**
 * Everything a release needs to run as it ran: the container (`run`) and how it is reached
 * (domains, proxy, replicas, tls). Stored with every release, so a rollback brings back the
 * routing it had, not today's.
 */
export type DeployableConfig = {
  run: RunSpec;
  domains: string[];
  proxy?: ProxySpec;
  replicas: number;
  tls: TlsMode;
};

export function deployableConfig(app: { run: RunSpec; domains: string[]; proxy?: ProxySpec; replicas: number; tls: TlsMode }): DeployableConfig {
  return { run: app.run, domains: app.domains, ...(app.proxy ? { proxy: app.proxy } : {}), replicas: app.replicas, tls: app.tls };
}

/**
 * A release's stored config. Releases made before routing existed stored the run spec alone
 * (no `run` key); they read as one replica without domains, which is how they ran.
 */
export function releaseConfig(stored: unknown): DeployableConfig {
  const value = (stored ?? {}) as Record<string, unknown>;
  if ("run" in value && typeof value.run === "object") {
    const c = value as unknown as DeployableConfig;
    return { run: c.run, domains: c.domains ?? [], ...(c.proxy ? { proxy: c.proxy } : {}), replicas: c.replicas ?? 1, tls: c.tls ?? "auto" };
  }
  return { run: runSpec.parse(value), domains: [], replicas: 1, tls: "off" };
}

/** The deploy job's share of the config; the ACME account goes along only for `tls: auto`. */
export function deploySpecFields(config: DeployableConfig, acme: AcmeAccount | undefined): Partial<JobSpec> {
  if (config.domains.length === 0) return { run: config.run, ...(config.replicas > 1 ? { replicas: config.replicas } : {}) };
  return {
    run: config.run,
    domains: config.domains,
    ...(config.proxy ? { proxy: config.proxy } : {}),
    replicas: config.replicas,
    tls: config.tls,
    ...(config.tls === "auto" && acme ? { acme } : {}),
  };
}
