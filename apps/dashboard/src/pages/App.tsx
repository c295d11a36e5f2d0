import { useMemo, useState } from "preact/hooks";
import { AppOperations } from "../components/AppOperations";
import { DeployForm } from "../components/DeployForm";
import { LogView } from "../components/LogView";
import { DeploymentsTable } from "../components/DeploymentsTable";
import { SchedulesSection } from "../components/Schedules";
import { Badge, Empty, Failure, GridTable, Loading, Page, shortImage, Time, version } from "../components/ui";
import { type ApiFailure, api, get } from "../lib/api";
import { appHealth, idleState, indexHosts } from "../lib/health";
import { useResource } from "../lib/live";
import { navigate } from "../lib/router";
import { useCan } from "../lib/session";
import type { Agent, App, Deployment, HostContainer, HostRoute, Release, SecretName } from "../lib/types";

interface AppData {
  app: App;
  releases: Release[];
  /** controllers whose agents report their proxy's routes */
  routes?: HostRoute[];
  hosts: Agent[];
  deployments: Deployment[];
}

function Releases({ app, releases }: { app: App; releases: Release[] }) {
  const mayDeploy = useCan("deploy", app.name);
  const [confirm, setConfirm] = useState<string | null>(null);
  const [error, setError] = useState<ApiFailure | undefined>();
  const current = releases.find((r) => r.current);

  const rollback = async (release?: string) => {
    setError(undefined);
    try {
      const { deployment } = await api<{ deployment: Deployment }>("POST", `/v1/apps/${encodeURIComponent(app.name)}/rollback`, release ? { release } : {});
      navigate(`/deployments/${deployment.id}`);
    } catch (err) {
      setError(err as ApiFailure);
      setConfirm(null);
    }
  };

  if (releases.length === 0) return <Empty>No release yet: the first successful build makes one.</Empty>;
  return (
    <>
      <Failure error={error} />
      <GridTable>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Image</th>
            <th scope="col">Status</th>
            <th scope="col">Trigger</th>
            <th scope="col">Created</th>
            {mayDeploy ? <th scope="col">Action</th> : null}
          </tr>
        </thead>
        <tbody>
          {releases.map((r) => (
            <tr key={r.id} class={r.current ? "current" : undefined} data-testid={`release-${version(r.version)}`}>
              <th scope="row" class="mono" title={r.version}>
                {version(r.version)} {r.current ? <span class="tag">current</span> : null}
              </th>
              <td class="mono small" title={r.digest ? `${r.imageTag ?? ""} ${r.digest}` : (r.imageTag ?? undefined)}>
                {r.imageTag ? shortImage(r.imageTag).replace(/:([0-9a-f]{12})[0-9a-f]{28}$/, ":$1") : "—"}
              </td>
              <td>
                <Badge status={r.status} />
              </td>
              <td>{r.trigger}</td>
              <td>
                <Time iso={r.createdAt} />
              </td>
              {mayDeploy ? (
                <td>
                  {r.current || r.status !== "success" ? null : confirm === r.id ? (
                    <>
                      <button type="button" class="danger" onClick={() => rollback(r.id)}>
                        Confirm roll back to {version(r.version)}
                      </button>{" "}
                      <button type="button" class="link" onClick={() => setConfirm(null)}>
                        Keep {current ? version(current.version) : "current"}
                      </button>
                    </>
                  ) : (
                    <button type="button" class="secondary" onClick={() => setConfirm(r.id)}>
                      Roll back to {version(r.version)}
                    </button>
                  )}
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </GridTable>
    </>
  );
}

/** Hosts where `deploybot scale` (or Scale below) set another count than apps.yaml's, which the next deploy restores. */
function Scaled({ app }: { app: App }) {
  const scaled = (app.status ?? []).filter((st) => st.desired && st.desired.state === "running" && st.desired.replicas !== (app.replicas ?? 1));
  if (scaled.length === 0) return null;
  return <span class="small"> · scaled to {scaled.map((st) => `${st.desired?.replicas} on ${st.host}`).join(", ")} until the next deploy</span>;
}

/** Per host, from the controller's desired state and the agent's report (controllers that keep one). */
function DesiredStates({ app, releases }: { app: App; releases: Release[] }) {
  const name = (id: string | null) => (id ? version(releases.find((r) => r.id === id)?.version ?? id) : "—");
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">Host</th>
          <th scope="col">Should be</th>
          <th scope="col">Is</th>
          <th scope="col">Restarts</th>
          <th scope="col">Last exit</th>
        </tr>
      </thead>
      <tbody>
        {(app.status ?? []).map((st) => {
          const running = st.actual.running > 0;
          return (
            <tr key={st.host} data-testid={`host-state-${st.host}`}>
              <th scope="row">
                {st.host} {st.online ? null : <Badge status="offline" />}
              </th>
              <td>
                {st.desired ? (
                  <>
                    <Badge status={st.desired.state} /> <span class="mono small">{name(st.desired.release)}</span>
                    {st.desired.replicas !== 1 || st.desired.replicas !== (app.replicas ?? 1) ? <span class="small"> × {st.desired.replicas}</span> : null}
                  </>
                ) : (
                  <span class="dim">nothing deployed</span>
                )}
              </td>
              <td>
                <Badge status={running ? "running" : idleState(st.actual.containers, st.desired?.state ?? null)} />{" "}
                <span class="small">
                  {st.actual.running}/{st.actual.containers} running{st.actual.healthy ? `, ${st.actual.healthy} healthy` : ""}
                </span>{" "}
                <span class="mono small">{st.actual.releases.map(name).join(", ")}</span>
              </td>
              <td>
                {st.actual.restarts}
                {st.actual.nextRestartAt ? (
                  <span class="small dim">
                    {" "}
                    next <Time iso={st.actual.nextRestartAt} />
                  </span>
                ) : null}
              </td>
              <td class="small">
                {st.actual.lastExitCode ?? "—"}
                {st.actual.lastReason ? <span class="dim"> {st.actual.lastReason}</span> : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </GridTable>
  );
}

/** Per host, from the containers each agent last reported (controllers without desired state). */
function HostStates({ app, hosts, releases }: { app: App; hosts: Agent[]; releases: Release[] }) {
  const byName = useMemo(() => indexHosts(hosts), [hosts]);
  if (app.status) return <DesiredStates app={app} releases={releases} />;
  if (app.hosts.length === 0) return <Empty>This app names no hosts in apps.yaml.</Empty>;
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">Host</th>
          <th scope="col">State</th>
          <th scope="col">Release running</th>
          <th scope="col">Last heartbeat</th>
        </tr>
      </thead>
      <tbody>
        {app.hosts.map((name) => {
          const host = byName.get(name);
          const container = (host?.containers as HostContainer[] | undefined)?.find((c) => c.app === app.name && c.state === "running");
          return (
            <tr key={name} data-testid={`host-state-${name}`}>
              <th scope="row">{name}</th>
              <td>
                <Badge status={appHealth(app, host)} />
              </td>
              <td class="mono small" title={container?.release}>
                {container?.release ? version(releases.find((r) => r.id === container.release)?.version ?? container.release) : (container?.image ?? "—")}
              </td>
              <td>{host ? <Time iso={host.lastHeartbeatAt} /> : <span class="dim">never registered</span>}</td>
            </tr>
          );
        })}
      </tbody>
    </GridTable>
  );
}

const day = (iso: string) => iso.slice(0, 10);

/** The route's TLS mode, the certificate the host serves (issuer, end, renewal) and why its last order failed. */
function Certificate({ route }: { route: HostRoute }) {
  const cert = route.certificate;
  const now = Date.now();
  return (
    <>
      {route.tls}
      {cert ? (
        <div class="small">
          {Date.parse(cert.validTo) <= now ? <Badge status="expired" /> : Date.parse(cert.renewalDueAt) <= now ? <Badge status="renewal due" /> : null} until{" "}
          <time datetime={cert.validTo} title={new Date(cert.validTo).toLocaleString()}>
            {day(cert.validTo)}
          </time>{" "}
          <span class="dim">
            · {cert.issuer} · renews from {day(cert.renewalDueAt)}
          </span>
        </div>
      ) : route.tls !== "off" ? (
        <div class="small dim">no certificate reported yet</div>
      ) : null}
      {route.certificateError ? <div class="small err-text">last order failed: {route.certificateError}</div> : null}
    </>
  );
}

/** Each host proxy's route for the app: which containers take traffic and whether its checks pass. */
function Routes({ routes, releases }: { routes: HostRoute[]; releases: Release[] }) {
  if (routes.length === 0) return <Empty>No host proxy reports a route for this app yet (the first deploy creates them).</Empty>;
  const name = (id?: string) => (id ? version(releases.find((r) => r.id === id)?.version ?? id) : "—");
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">Host</th>
          <th scope="col">TLS</th>
          <th scope="col">Healthy</th>
          <th scope="col">Upstreams</th>
        </tr>
      </thead>
      <tbody>
        {routes.map((r) => (
          <tr key={r.host} data-testid={`route-${r.host}`}>
            <th scope="row">
              {r.host} {r.online ? null : <Badge status="offline" />}
            </th>
            <td data-testid={`certificate-${r.host}`}>
              <Certificate route={r} />
            </td>
            <td>
              {r.healthy} of {r.upstreams.length}
            </td>
            <td>
              <ul class="plain">
                {r.upstreams.map((u) => (
                  <li key={u.container} class="small">
                    <span class="mono">{u.container.slice(0, 12)}</span> {u.address} <Badge status={u.state === "ready" ? "ready" : u.state} /> <Badge status={u.health === "up" ? "healthy" : u.health} />{" "}
                    <span class="mono dim">{name(u.release)}</span>
                  </li>
                ))}
              </ul>
            </td>
          </tr>
        ))}
      </tbody>
    </GridTable>
  );
}

function SecretNames({ app }: { app: string }) {
  const { data, error } = useResource(() => get<{ secrets: SecretName[] }>(`/v1/apps/${encodeURIComponent(app)}/secrets`).then((r) => r.secrets), [app]);
  return (
    <>
      <Failure error={error} />
      {!data ? null : data.length === 0 ? (
        <Empty>No secrets stored for this app.</Empty>
      ) : (
        <ul class="chips">
          {data.map((s) => (
            <li key={s.key} class="mono">
              {s.key} <span class="dim small">set <Time iso={s.updatedAt} /></span>
            </li>
          ))}
        </ul>
      )}
      <p class="small dim">
        Values are never shown. Set or remove them on <a href="/settings">Tokens &amp; secrets</a>.
      </p>
    </>
  );
}

export function AppPage({ name }: { name: string }) {
  const mayDeploy = useCan("deploy", name);
  const isAdmin = useCan("admin");
  const { data, error, reload } = useResource(async (): Promise<AppData> => {
    const enc = encodeURIComponent(name);
    const [a, h, d] = await Promise.all([
      get<{ app: App; releases: Release[]; routes?: HostRoute[] }>(`/v1/apps/${enc}`),
      get<{ hosts: Agent[] }>("/v1/hosts"),
      get<{ deployments: Deployment[] }>(`/v1/deployments?app=${enc}&limit=10`),
    ]);
    return { app: a.app, releases: a.releases, routes: a.routes, hosts: h.hosts, deployments: d.deployments };
  }, [name]);

  return (
    <Page title={`App ${name}`}>
      <Failure error={error} />
      {!data ? (
        error ? null : <Loading what="the app" />
      ) : (
        <>
          <dl class="facts">
            <dt>Repository</dt>
            <dd class="mono">{data.app.repo}</dd>
            <dt>Branch</dt>
            <dd class="mono">{data.app.branch}</dd>
            <dt>Deploy on push</dt>
            <dd>{data.app.deployOnPush ? "yes" : "no"}</dd>
            <dt>Image</dt>
            <dd class="mono" data-testid="image-repository">
              {data.app.imageRepository ?? <span class="dim">none: each host builds it (set image, or DEPLOYBOT_REGISTRY_URL on the controller, to build once)</span>}
            </dd>
            {data.app.domains && data.app.domains.length > 0 ? (
              <>
                <dt>Domains</dt>
                <dd>
                  <ul class="plain" data-testid="domains">
                    {data.app.domains.map((d) => (
                      <li key={d} class="mono">
                        {data.app.tls === "off" ? "http" : "https"}://{d}
                      </li>
                    ))}
                  </ul>
                </dd>
                <dt>TLS</dt>
                <dd>
                  {data.app.tls === "auto" ? "certificates from ACME (the agent's proxy orders and renews them)" : data.app.tls === "internal" ? "the proxy's own certificate authority" : "off: plain HTTP"}
                  {data.app.tls !== "off" ? <span class="dim small"> · each host's certificate is under Routes</span> : null}
                </dd>
                <dt>Replicas</dt>
                <dd data-testid="replicas">
                  {data.app.replicas ?? 1} per host in apps.yaml
                  <Scaled app={data.app} />
                </dd>
              </>
            ) : null}
            <dt>Current release</dt>
            <dd class="mono" data-testid="current-release">
              {data.app.currentRelease ? version(data.app.currentRelease.version) : "none"}
            </dd>
          </dl>

          {data.routes && data.app.domains && data.app.domains.length > 0 ? (
            <section aria-labelledby="routes">
              <h2 id="routes">Routes</h2>
              <Routes routes={data.routes} releases={data.releases} />
            </section>
          ) : null}

          <section aria-labelledby="on-hosts">
            <h2 id="on-hosts">On its hosts</h2>
            <HostStates app={data.app} hosts={data.hosts} releases={data.releases} />
            {data.app.status && mayDeploy ? <AppOperations app={data.app} onDone={reload} /> : null}
          </section>

          {mayDeploy ? <DeployForm app={data.app} /> : null}

          <section aria-labelledby="releases">
            <h2 id="releases">Releases</h2>
            <Releases app={data.app} releases={data.releases} />
          </section>

          <section aria-labelledby="deps">
            <h2 id="deps">Deployments</h2>
            <DeploymentsTable deployments={data.deployments} showApp={false} />
          </section>

          {data.app.status ? (
            <section aria-labelledby="runtime-logs">
              <h2 id="runtime-logs">Runtime logs</h2>
              <LogView path={`/v1/apps/${encodeURIComponent(data.app.name)}/logs?follow=1`} id={`app-${data.app.name}`} label={`Output of ${data.app.name}'s containers`} showHost />
            </section>
          ) : null}

          <section aria-labelledby="schedules">
            <h2 id="schedules">Schedules and runs</h2>
            <SchedulesSection app={data.app.name} />
          </section>

          {isAdmin ? (
            <section aria-labelledby="secrets">
              <h2 id="secrets">Secrets</h2>
              <SecretNames app={data.app.name} />
            </section>
          ) : null}
        </>
      )}
    </Page>
  );
}
