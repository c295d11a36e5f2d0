import { Badge, Empty, Failure, GridTable, Loading, Page, Time } from "../components/ui";
import { get } from "../lib/api";
import { useResource } from "../lib/live";
import type { Delivery } from "../lib/types";

const loadDeliveries = () => get<{ deliveries: Delivery[] }>("/v1/webhooks/deliveries?limit=200").then((r) => r.deliveries);

/** What GitHub sent and what the controller decided, newest first. */
export function WebhooksPage() {
  const { data, error } = useResource(loadDeliveries, []);
  return (
    <Page title="Webhook deliveries">
      <Failure error={error} />
      {!data ? (
        error ? null : <Loading what="deliveries" />
      ) : data.length === 0 ? (
        <Empty>No delivery yet. Point a GitHub webhook at /v1/webhooks/github (see the README).</Empty>
      ) : (
        <GridTable>
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">Event</th>
              <th scope="col">Repository</th>
              <th scope="col">Ref</th>
              <th scope="col">Outcome</th>
              <th scope="col">Reason</th>
              <th scope="col">Deployment</th>
            </tr>
          </thead>
          <tbody>
            {data.map((d) => (
              <tr key={d.deliveryId}>
                <td>
                  <Time iso={d.receivedAt} />
                </td>
                <td>{d.event}</td>
                <td class="mono">{d.repo ?? "—"}</td>
                <td class="mono">
                  {d.ref ?? "—"}
                  {d.sha ? <span class="dim"> {d.sha.slice(0, 7)}</span> : null}
                </td>
                <td>
                  <Badge status={d.outcome} />
                </td>
                <td>{d.reason}</td>
                <td>
                  {d.deploymentId ? (
                    <a href={`/deployments/${d.deploymentId}`} class="mono">
                      {d.deploymentId.slice(-8)}
                    </a>
                  ) : (
                    <span class="dim">—</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </GridTable>
      )}
    </Page>
  );
}
