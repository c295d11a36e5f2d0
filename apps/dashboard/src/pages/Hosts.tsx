import { useMemo, useState } from "preact/hooks";
import { Badge, Empty, Failure, GridTable, JobLink, Loading, Page, Time } from "../components/ui";
import { get } from "../lib/api";
import { useResource } from "../lib/live";
import { useLocation } from "../lib/router";
import type { Agent, HostContainer } from "../lib/types";

const loadHosts = () => get<{ hosts: Agent[] }>("/v1/hosts").then((r) => r.hosts);

const matches = (h: Agent, f: string) =>
  h.hostname.toLowerCase().includes(f) || h.version.toLowerCase().includes(f) || h.labels.some((l) => l.toLowerCase().includes(f)) || (h.containers as HostContainer[]).some((c) => c.app?.includes(f));

/** Every registered host, filtered in the page: `GET /v1/hosts` answers the whole list at once. */
export function HostsPage() {
  const { query } = useLocation();
  const { data, error } = useResource(loadHosts, []);
  const [filter, setFilter] = useState(query.get("q") ?? "");
  const [status, setStatus] = useState(query.get("status") ?? "all");
  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    return (data ?? []).filter((h) => (status === "all" || (status === "online") === h.online) && (!f || matches(h, f)));
  }, [data, filter, status]);

  return (
    <Page title="Hosts">
      <Failure error={error} />
      <div class="filters">
        <label for="host-filter">Filter</label>
        <input id="host-filter" type="search" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} placeholder="name, label, version or app" />
        <label for="host-status">Status</label>
        <select id="host-status" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
          <option value="all">all</option>
          <option value="online">online</option>
          <option value="offline">offline</option>
        </select>
        {data ? (
          <span class="dim" data-testid="hosts-count">
            {shown.length} of {data.length}
          </span>
        ) : null}
      </div>
      {!data ? (
        <Loading what="hosts" />
      ) : shown.length === 0 ? (
        <Empty>{data.length === 0 ? "No host has registered yet: install an agent (see the README)." : "No host matches the filter."}</Empty>
      ) : (
        <GridTable>
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Status</th>
              <th scope="col">Labels</th>
              <th scope="col">Agent</th>
              <th scope="col">Containers</th>
              <th scope="col">Current job</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((h) => (
              <tr key={h.id}>
                <th scope="row">{h.hostname}</th>
                <td>
                  <Badge status={h.online ? "online" : "offline"} /> {h.online && h.state !== "idle" ? <Badge status={h.state} /> : null}
                </td>
                <td>{h.labels.length ? h.labels.join(", ") : <span class="dim">—</span>}</td>
                <td class="mono">{h.version}</td>
                <td>
                  {(h.containers as HostContainer[]).length === 0 ? (
                    <span class="dim">none</span>
                  ) : (
                    <ul class="plain">
                      {(h.containers as HostContainer[]).map((c) => (
                        <li key={c.id}>
                          {c.app ? <a href={`/apps/${encodeURIComponent(c.app)}`}>{c.app}</a> : (c.name ?? c.id.slice(0, 12))} <Badge status={c.state ?? "unknown"} />
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  <JobLink id={h.currentJobId} />
                </td>
                <td>
                  <Time iso={h.lastHeartbeatAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </GridTable>
      )}
    </Page>
  );
}
