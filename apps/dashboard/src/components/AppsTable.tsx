import { appHealth } from "../lib/health";
import { useSession } from "../lib/session";
import type { Agent, App } from "../lib/types";
import { Badge, Empty, GridTable, version } from "./ui";

/** The hosts an app runs on: its status rows when the controller keeps desired state, else apps.yaml's list. */
const hostsOf = (app: App) => app.status?.map((s) => s.host) ?? app.hosts;

/** Apps with their current release and their state on each of their hosts. */
export function AppsTable({ apps, hosts }: { apps: App[]; hosts: Map<string, Agent> }) {
  const { apps: limitedTo } = useSession();
  if (apps.length === 0) {
    return <Empty>{limitedTo ? `No app this token may see (it is limited to ${limitedTo.join(", ")}).` : "No apps: add them to apps.yaml and reload the controller."}</Empty>;
  }
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">App</th>
          <th scope="col">Current release</th>
          <th scope="col">On its hosts</th>
        </tr>
      </thead>
      <tbody>
        {apps.map((app) => (
          <tr key={app.name}>
            <th scope="row">
              <a href={`/apps/${encodeURIComponent(app.name)}`}>{app.name}</a>
            </th>
            <td class="mono">{app.currentRelease ? version(app.currentRelease.version) : <span class="dim">never deployed</span>}</td>
            <td>
              {hostsOf(app).length === 0 ? <span class="dim">no hosts</span> : null}
              <ul class="chips">
                {hostsOf(app).map((h) => (
                  <li key={h}>
                    {h} <Badge status={appHealth(app, hosts.get(h), h)} />
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
