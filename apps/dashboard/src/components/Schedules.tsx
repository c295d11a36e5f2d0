import type { Run, Schedule } from "@deploybot/protocol";
import { useState } from "preact/hooks";
import { type ApiFailure, api, authHeaders, get } from "../lib/api";
import { useResource } from "../lib/live";
import { useCan } from "../lib/session";
import { Badge, Empty, Failure, GridTable, JobLink, Time } from "./ui";

const seconds = (ms: number | null) => (ms === null ? "—" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

/** A result file is behind the token, so a plain link cannot fetch it: fetch, then hand the browser a blob. */
async function downloadResult(run: Run) {
  const res = await fetch(`/v1/runs/${encodeURIComponent(run.id)}/result`, { headers: authHeaders() });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = run.resultFile?.path.split("/").pop() || "result";
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function RunsTable({ runs }: { runs: Run[] }) {
  if (runs.length === 0) return <Empty>No run yet.</Empty>;
  return (
    <GridTable>
      <thead>
        <tr>
          <th scope="col">Run</th>
          <th scope="col">Status</th>
          <th scope="col">Exit code</th>
          <th scope="col">Took</th>
          <th scope="col">Result</th>
          <th scope="col">Job</th>
          <th scope="col">Started</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id}>
            <th scope="row">
              {r.schedule ?? "one-off"} <span class="dim small">{r.trigger}</span>
            </th>
            <td>
              <Badge status={r.status} />
              {r.reason || r.error ? <div class="small err-text">{(r.error ?? r.reason ?? "").slice(0, 200)}</div> : null}
            </td>
            <td class="mono">{r.exitCode ?? "—"}</td>
            <td>{seconds(r.durationMs)}</td>
            <td>
              {r.resultFile ? (
                <button type="button" class="link" onClick={() => void downloadResult(r).catch(() => undefined)}>
                  {r.resultFile.path.split("/").pop()} ({r.resultFile.stored} B{r.resultFile.truncated ? ", cut" : ""})
                </button>
              ) : (
                <span class="dim">—</span>
              )}
            </td>
            <td>
              <JobLink id={r.jobId} />
            </td>
            <td>
              <Time iso={r.startedAt ?? r.createdAt} />
            </td>
          </tr>
        ))}
      </tbody>
    </GridTable>
  );
}

/** An app's schedules (from apps.yaml) with their next and last runs; run now, pause, resume. */
export function SchedulesSection({ app }: { app: string }) {
  const mayDeploy = useCan("deploy", app);
  const enc = encodeURIComponent(app);
  const schedules = useResource(() => get<{ schedules: Schedule[] }>(`/v1/schedules?app=${enc}`).then((r) => r.schedules), [app]);
  const runs = useResource(() => get<{ runs: Run[] }>(`/v1/runs?app=${enc}&limit=10`).then((r) => r.runs), [app]);
  const [failure, setFailure] = useState<ApiFailure | undefined>();

  const act = async (s: Schedule, action: "trigger" | "pause" | "resume") => {
    setFailure(undefined);
    try {
      await api("POST", `/v1/schedules/${enc}/${encodeURIComponent(s.name)}/${action}`);
      schedules.reload();
      runs.reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };

  // A controller without schedules answers 404 for the whole route: say so once.
  if (schedules.error?.status === 404 && schedules.error.code === "not_found") return <p class="dim">This controller has no schedules.</p>;
  return (
    <>
      <Failure error={schedules.error ?? failure} />
      {!schedules.data ? null : schedules.data.length === 0 ? (
        <Empty>
          No schedules for this app (add them under <code>schedules:</code> in apps.yaml).
        </Empty>
      ) : (
        <GridTable>
          <thead>
            <tr>
              <th scope="col">Schedule</th>
              <th scope="col">When</th>
              <th scope="col">Command</th>
              <th scope="col">Next</th>
              <th scope="col">Last run</th>
              {mayDeploy ? <th scope="col">Action</th> : null}
            </tr>
          </thead>
          <tbody>
            {schedules.data.map((s) => (
              <tr key={s.name} data-testid={`schedule-${s.name}`}>
                <th scope="row">
                  {s.name} {s.paused ? <Badge status="paused" /> : null}
                </th>
                <td class="mono small">
                  {s.cron} <span class="dim">{s.timezone}</span>
                </td>
                <td class="mono small">{s.command.join(" ")}</td>
                <td>{s.paused ? <span class="dim">paused</span> : <Time iso={s.nextRuns[0]} />}</td>
                <td>{s.lastRun ? <Badge status={s.lastRun.status} /> : <span class="dim">never</span>}</td>
                {mayDeploy ? (
                  <td>
                    <button type="button" class="secondary" onClick={() => act(s, "trigger")}>
                      Run {s.name} now
                    </button>{" "}
                    <button type="button" class="link" onClick={() => act(s, s.paused ? "resume" : "pause")}>
                      {s.paused ? `Resume ${s.name}` : `Pause ${s.name}`}
                    </button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </GridTable>
      )}
      <h3>Recent runs</h3>
      <Failure error={runs.error?.status === 404 ? undefined : runs.error} />
      {runs.data ? <RunsTable runs={runs.data} /> : null}
    </>
  );
}
