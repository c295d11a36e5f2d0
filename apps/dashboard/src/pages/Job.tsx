import { ACTIVE, CancelJob } from "../components/CancelJob";
import { JobLog } from "../components/LogView";
import { Badge, Failure, Loading, Page, Time } from "../components/ui";
import { get } from "../lib/api";
import { useResource } from "../lib/live";
import type { Job } from "../lib/types";

export function JobPage({ id }: { id: string }) {
  const { data: job, error, reload } = useResource(() => get<{ job: Job }>(`/v1/jobs/${encodeURIComponent(id)}`).then((r) => r.job), [id]);
  return (
    <Page title={`Job ${id.slice(-8)}`}>
      <Failure error={error} />
      {!job ? (
        error ? null : <Loading what="the job" />
      ) : (
        <>
          <p class="lead">
            {job.kind} of <a href={`/apps/${encodeURIComponent(job.app)}`}>{job.app}</a> on{" "}
            {"host" in job.target ? job.target.host : `any host labelled ${job.target.labels.join(", ")}`} — <Badge status={job.status} />
          </p>
          <dl class="facts">
            {job.deploymentId ? (
              <>
                <dt>Deployment</dt>
                <dd>
                  <a href={`/deployments/${job.deploymentId}`} class="mono">
                    {job.deploymentId.slice(-8)}
                  </a>
                </dd>
              </>
            ) : null}
            <dt>Attempts</dt>
            <dd>
              {ACTIVE.includes(job.status) ? `${job.attempts} of at most ${job.maxAttempts}` : job.attempts}
            </dd>
            <dt>Created</dt>
            <dd>
              <Time iso={job.createdAt} />
            </dd>
            <dt>Started</dt>
            <dd>
              <Time iso={job.startedAt} />
            </dd>
            <dt>Finished</dt>
            <dd>
              <Time iso={job.finishedAt} />
            </dd>
          </dl>
          {job.error ? (
            <p class="error" role="alert">
              {job.error}
            </p>
          ) : null}
          {job.result ? (
            <details>
              <summary>Result</summary>
              <pre class="log">{JSON.stringify(job.result, null, 2)}</pre>
            </details>
          ) : null}
          <CancelJob jobId={job.id} app={job.app} status={job.status} onDone={reload} />
          <h2>Log</h2>
          <JobLog jobId={job.id} label={`Log of job ${job.id}`} onEnd={reload} />
        </>
      )}
    </Page>
  );
}
