import type { Deployment } from "../lib/types";
import { Badge, DeployedWhat, Empty, GridTable, Time } from "./ui";

export function DeploymentsTable({ deployments, showApp = true }: { deployments: Deployment[]; showApp?: boolean }) {
  if (deployments.length === 0) return <Empty>No deployments yet.</Empty>;
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">Deployment</th>
          {showApp ? <th scope="col">App</th> : null}
          <th scope="col">What</th>
          <th scope="col">Trigger</th>
          <th scope="col">Status</th>
          <th scope="col">Started</th>
        </tr>
      </thead>
      <tbody>
        {deployments.map((d) => (
          <tr key={d.id}>
            <td>
              <a href={`/deployments/${d.id}`} class="mono">
                {d.id.slice(-8)}
              </a>
            </td>
            {showApp ? (
              <td>
                <a href={`/apps/${encodeURIComponent(d.app)}`}>{d.app}</a>
              </td>
            ) : null}
            <td>
              <DeployedWhat d={d} />
            </td>
            <td>{d.trigger}</td>
            <td>
              <Badge status={d.status} />
              {d.error ? <div class="small err-text">{d.error}</div> : null}
            </td>
            <td>
              <Time iso={d.createdAt} />
            </td>
          </tr>
        ))}
      </tbody>
    </GridTable>
  );
}
