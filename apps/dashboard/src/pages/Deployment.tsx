import { CancelJob } from "../components/CancelJob";
import { JobLog } from "../components/LogView";
import { Badge, DeployedWhat, Failure, Loading, Page, Time } from "../components/ui";
import { get } from "../lib/api";
import { useResource } from "../lib/live";
import type { Deployment } from "../lib/types";

/** A deployment and each host's job, with the live log of every job. */
export function DeploymentPage({ id }: { id: string }) {
  const { data: d, error, reload } = useResource(() => get<{ deployment: Deployment }>(`/v1/deployments/${encodeURIComponent(id)}`).then((r) => r.deployment), [id]);
  return (
    <Page title={`Deployment ${id.slice(-8)}`}>
      <Failure error={error} />
      {!d ? (
        error ? null : <Loading what="the deployment" />
      ) : (
        <>
          <p class="lead">
            <a href={`/apps/${encodeURIComponent(d.app)}`}>{d.app}</a> at <DeployedWhat d={d} /> —{" "}
            <span data-testid="deployment-status">
              <Badge status={d.status} />
            </span>
          </p>
          <dl class="facts">
            <dt>Trigger</dt>
            <dd>
              {d.trigger}
              {d.triggeredBy ? <span class="dim"> by {d.triggeredBy}</span> : null}
            </dd>
            {d.image ? (
              <>
                <dt>Image</dt>
                <dd class="mono small">{d.image}</dd>
              </>
            ) : null}
            <dt>Hosts</dt>
            <dd>{d.hosts.join(", ")}</dd>
            <dt>Started</dt>
            <dd>
              <Time iso={d.createdAt} />
            </dd>
            <dt>Finished</dt>
            <dd>
              <Time iso={d.finishedAt} />
            </dd>
            {d.releaseId ? (
              <>
                <dt>Release</dt>
                <dd class="mono">{d.releaseId}</dd>
              </>
            ) : null}
          </dl>
          {d.error ? (
            <p class="error" role="alert">
              {d.error}
            </p>
          ) : null}
          {d.jobs.map((job) => (
            <section key={job.id} class="job" aria-labelledby={`job-${job.id}`}>
              <h2 id={`job-${job.id}`}>
                {job.kind === "build" ? "Build" : `${job.kind} on ${job.host ?? "any host"}`} <Badge status={job.status} />{" "}
                <a href={`/jobs/${job.id}`} class="small mono">
                  job {job.id.slice(-8)}
                </a>
              </h2>
              <CancelJob jobId={job.id} app={d.app} status={job.status} onDone={reload} />
              <JobLog jobId={job.id} label={`Log of the ${job.kind} job on ${job.host ?? "any host"}`} onEnd={reload} />
            </section>
          ))}
        </>
      )}
    </Page>
  );
}
