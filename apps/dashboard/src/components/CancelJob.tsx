import { useState } from "preact/hooks";
import { type ApiFailure, api } from "../lib/api";
import { useCan } from "../lib/session";
import { Failure } from "./ui";

/** the job statuses that may still change (a cancel can reach them) */
export const ACTIVE = ["pending", "assigned", "running"];

/** Cancel for a job that has not ended, shown only to tokens that may deploy. */
export function CancelJob({ jobId, app, status, onDone }: { jobId: string; app: string; status: string; onDone: () => void }) {
  const mayDeploy = useCan("deploy", app);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiFailure | undefined>();
  if (!mayDeploy || !ACTIVE.includes(status)) return null;
  const cancel = async () => {
    setBusy(true);
    try {
      await api("POST", `/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
      onDone();
    } catch (err) {
      setError(err as ApiFailure);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="actions-row">
      <button type="button" class="secondary" disabled={busy} onClick={cancel}>
        {busy ? "Cancelling…" : "Cancel job"}
      </button>
      <Failure error={error} />
    </div>
  );
}
