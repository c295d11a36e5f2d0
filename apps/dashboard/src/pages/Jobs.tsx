import type { JobStatus } from "@deploybot/protocol";
import { useState } from "preact/hooks";
import { Badge, Empty, Failure, GridTable, Loading, Page, Time } from "../components/ui";
import { get, qs } from "../lib/api";
import { useResource } from "../lib/live";
import { navigate, useLocation } from "../lib/router";
import type { Job } from "../lib/types";

// Types only from the protocol package: its runtime (zod schemas) would add ~60 KB to the page.
// A Record over JobStatus makes tsc fail when a status is added there and not here.
const statusNames: Record<JobStatus, string> = {
  pending: "pending",
  assigned: "assigned",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  cancelled: "cancelled",
  lost: "lost",
  timed_out: "timed out",
};

const targetText = (j: Job) => ("host" in j.target ? j.target.host : `labels ${j.target.labels.join(", ")}`);

/** Jobs newest first, filtered by status, host and app on the server; the filters live in the URL. */
export function JobsPage() {
  const { query } = useLocation();
  const filters = { status: query.get("status") ?? "", host: query.get("host") ?? "", app: query.get("app") ?? "" };
  const cursor = query.get("cursor") ?? "";
  const [form, setForm] = useState(filters);
  const { data, error } = useResource(() => get<{ jobs: Job[]; nextCursor: string | null }>(`/v1/jobs${qs({ ...filters, cursor, limit: 50 })}`), [filters.status, filters.host, filters.app, cursor]);

  const apply = (e: Event) => {
    e.preventDefault();
    navigate(`/jobs${qs(form)}`);
  };

  return (
    <Page title="Jobs">
      <form class="filters" onSubmit={apply} aria-label="Filter jobs">
        <label for="f-status">Status</label>
        <select id="f-status" value={form.status} onChange={(e) => setForm({ ...form, status: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option>
          {Object.entries(statusNames).map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
        <label for="f-host">Host</label>
        <input id="f-host" value={form.host} onInput={(e) => setForm({ ...form, host: (e.target as HTMLInputElement).value })} />
        <label for="f-app">App</label>
        <input id="f-app" value={form.app} onInput={(e) => setForm({ ...form, app: (e.target as HTMLInputElement).value })} />
        <button type="submit" class="secondary">
          Apply
        </button>
      </form>
      <Failure error={error} />
      {!data ? (
        error ? null : <Loading what="jobs" />
      ) : data.jobs.length === 0 ? (
        <Empty>No job matches.</Empty>
      ) : (
        <>
          <GridTable>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Kind</th>
                <th scope="col">App</th>
                <th scope="col">Target</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
                <th scope="col">Log lines</th>
              </tr>
            </thead>
            <tbody>
              {data.jobs.map((j) => (
                <tr key={j.id}>
                  <td>
                    <a href={`/jobs/${j.id}`} class="mono">
                      {j.id.slice(-8)}
                    </a>
                  </td>
                  <td>{j.kind}</td>
                  <td>
                    <a href={`/apps/${encodeURIComponent(j.app)}`}>{j.app}</a>
                  </td>
                  <td>{targetText(j)}</td>
                  <td>
                    <Badge status={j.status} />
                    {j.error ? <div class="small err-text">{j.error.slice(0, 160)}</div> : null}
                  </td>
                  <td>
                    <Time iso={j.createdAt} />
                  </td>
                  <td>{j.logLines}</td>
                </tr>
              ))}
            </tbody>
          </GridTable>
          <p class="pager">
            {cursor ? <a href={`/jobs${qs(filters)}`}>Newest</a> : null} {data.nextCursor ? <a href={`/jobs${qs({ ...filters, cursor: data.nextCursor })}`}>Older jobs</a> : null}
          </p>
        </>
      )}
    </Page>
  );
}
