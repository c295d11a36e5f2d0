import { useEffect, useMemo } from "preact/hooks";
import { AppsTable } from "../components/AppsTable";
import { DeploymentsTable } from "../components/DeploymentsTable";
import { Badge, Failure, Loading, Page, Time } from "../components/ui";
import { get } from "../lib/api";
import { indexHosts } from "../lib/health";
import { useResource } from "../lib/live";
import type { Agent, App, Deployment, Schedule } from "../lib/types";

interface OverviewData {
  hosts: Agent[];
  apps: App[];
  deployments: Deployment[];
  failingSchedules: Schedule[];
}

const FAILED_RUN = ["failed", "lost", "timed_out"];

const plural = (n: number, word: string) => (n === 1 ? word : `${word}s`);

const loadOverview = async (): Promise<OverviewData> => {
  const [h, a, d, s] = await Promise.all([
    get<{ hosts: Agent[] }>("/v1/hosts"),
    get<{ apps: App[] }>("/v1/apps"),
    get<{ deployments: Deployment[] }>("/v1/deployments?limit=10"),
    get<{ schedules: Schedule[] }>("/v1/schedules").catch(() => ({ schedules: [] as Schedule[] })),
  ]);
  const failingSchedules = s.schedules.filter((x) => x.lastRun && FAILED_RUN.includes(x.lastRun.status));
  return { hosts: h.hosts, apps: a.apps, deployments: d.deployments, failingSchedules };
};

export function Overview() {
  const { data, error } = useResource(loadOverview, []);
  const hosts = useMemo(() => indexHosts(data?.hosts ?? []), [data]);
  const offline = useMemo(() => (data?.hosts ?? []).filter((h) => !h.online), [data]);

  useEffect(() => {
    // the browser test reads this mark: navigation start to the first complete overview
    if (data && performance.getEntriesByName("overview-ready").length === 0) performance.mark("overview-ready");
  }, [data]);

  return (
    <Page title="Overview">
      <Failure error={error} />
      {!data ? (
        <Loading what="the overview" />
      ) : (
        <>
          <section aria-labelledby="sum" class="summary">
            <h2 id="sum" class="visually-hidden">
              Summary
            </h2>
            <div class="card">
              <span class="big" data-testid="hosts-online">
                {data.hosts.length - offline.length}
              </span>{" "}
              {plural(data.hosts.length - offline.length, "host")} online
            </div>
            <div class={`card ${offline.length ? "warn" : ""}`}>
              <span class="big" data-testid="hosts-offline">
                {offline.length}
              </span>{" "}
              offline
            </div>
            <div class="card">
              <span class="big">{data.apps.length}</span> {plural(data.apps.length, "app")}
            </div>
            <div class="card">
              <span class="big">{data.deployments.filter((d) => d.status === "failed").length}</span> of the last {data.deployments.length} deployments failed
            </div>
          </section>

          {offline.length > 0 ? (
            <section aria-labelledby="off">
              <h2 id="off">Offline hosts</h2>
              <ul class="chips">
                {offline.slice(0, 50).map((h) => (
                  <li key={h.id}>
                    {h.hostname} <span class="dim small">last seen <Time iso={h.lastHeartbeatAt} /></span>
                  </li>
                ))}
              </ul>
              {offline.length > 50 ? (
                <p>
                  <a href="/hosts?status=offline">All {offline.length} offline hosts</a>
                </p>
              ) : null}
            </section>
          ) : null}

          {data.failingSchedules.length > 0 ? (
            <section aria-labelledby="failing">
              <h2 id="failing">Failing schedules</h2>
              <ul class="plain">
                {data.failingSchedules.map((x) => (
                  <li key={`${x.app}/${x.name}`}>
                    <a href={`/apps/${encodeURIComponent(x.app)}`}>{x.app}</a> <span class="mono">{x.name}</span> <Badge status={x.lastRun!.status} />{" "}
                    <span class="dim small">
                      <Time iso={x.lastRun!.finishedAt ?? x.lastRun!.createdAt} />
                      {x.lastRun!.exitCode !== null ? `, exit code ${x.lastRun!.exitCode}` : ""}
                    </span>
                  </li>
                ))}
              </ul>
            </section>
          ) : null}

          <section aria-labelledby="recent">
            <h2 id="recent">Recent deployments</h2>
            <DeploymentsTable deployments={data.deployments} />
          </section>

          <section aria-labelledby="apps">
            <h2 id="apps">Apps</h2>
            <AppsTable apps={data.apps} hosts={hosts} />
          </section>
        </>
      )}
    </Page>
  );
}
