import { useState } from "preact/hooks";
import { type ApiFailure, api } from "../lib/api";
import type { App, Job } from "../lib/types";
import { Failure, JobLink } from "./ui";

type Operation = "stop" | "start" | "restart" | "scale";

/** Stop, start, restart and scale an app on all its hosts: one job per host, shown as they are queued. */
export function AppOperations({ app, onDone }: { app: App; onDone: () => void }) {
  const [replicas, setReplicas] = useState(String(app.status?.find((s) => s.desired)?.desired?.replicas ?? 1));
  const [busy, setBusy] = useState<Operation | null>(null);
  const [queued, setQueued] = useState<{ op: Operation; jobs: Job[] } | null>(null);
  const [error, setError] = useState<ApiFailure | undefined>();

  const run = async (op: Operation) => {
    setBusy(op);
    setError(undefined);
    try {
      const body = op === "scale" ? { replicas: Number(replicas) } : {};
      const { jobs } = await api<{ jobs: Job[] }>("POST", `/v1/apps/${encodeURIComponent(app.name)}/${op}`, body);
      setQueued({ op, jobs });
      onDone();
    } catch (err) {
      setError(err as ApiFailure);
    } finally {
      setBusy(null);
    }
  };

  return (
    <div class="ops">
      <button type="button" class="secondary" disabled={busy !== null} onClick={() => run("stop")}>
        Stop
      </button>
      <button type="button" class="secondary" disabled={busy !== null} onClick={() => run("start")}>
        Start
      </button>
      <button type="button" class="secondary" disabled={busy !== null} onClick={() => run("restart")}>
        Restart
      </button>
      <label for="ops-replicas">Replicas</label>
      <input id="ops-replicas" type="number" min={1} max={100} value={replicas} class="narrow" onInput={(e) => setReplicas((e.target as HTMLInputElement).value)} />
      <button type="button" class="secondary" disabled={busy !== null || !(Number(replicas) >= 1)} onClick={() => run("scale")}>
        Scale
      </button>
      {queued ? (
        <p class="small" role="status">
          {queued.op} queued on {queued.jobs.length} {queued.jobs.length === 1 ? "host" : "hosts"}:{" "}
          {queued.jobs.map((j) => (
            <span key={j.id}>
              <JobLink id={j.id} />{" "}
            </span>
          ))}
        </p>
      ) : null}
      <Failure error={error} />
    </div>
  );
}
