import { useMemo, useState } from "preact/hooks";
import { AppsTable } from "../components/AppsTable";
import { Failure, Loading, Page } from "../components/ui";
import { get } from "../lib/api";
import { indexHosts } from "../lib/health";
import { useResource } from "../lib/live";
import type { Agent, App } from "../lib/types";

const loadApps = async () => {
  const [a, h] = await Promise.all([get<{ apps: App[] }>("/v1/apps"), get<{ hosts: Agent[] }>("/v1/hosts")]);
  return { apps: a.apps, hosts: h.hosts };
};

export function AppsPage() {
  const { data, error } = useResource(loadApps, []);
  const [filter, setFilter] = useState("");
  const hosts = useMemo(() => indexHosts(data?.hosts ?? []), [data]);
  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    return (data?.apps ?? []).filter((a) => !f || a.name.toLowerCase().includes(f) || a.repo.toLowerCase().includes(f) || a.hosts.some((h) => h.includes(f)));
  }, [data, filter]);
  return (
    <Page title="Apps">
      <Failure error={error} />
      <div class="filters">
        <label for="app-filter">Filter</label>
        <input id="app-filter" type="search" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} placeholder="name, repo or host" />
        {data ? <span class="dim">{shown.length} of {data.apps.length}</span> : null}
      </div>
      {data ? <AppsTable apps={shown} hosts={hosts} /> : <Loading what="apps" />}
    </Page>
  );
}
