import type { RunSpec } from "@deploybot/protocol";

/** Like Kubernetes' CrashLoopBackOff: 10 s, doubling, at most 5 min; forgotten after 10 min up. */
export const RESTART_BACKOFF = { baseMs: 10_000, capMs: 300_000, resetAfterMs: 600_000 } as const;

/** Wait before the restart that follows the `failures`-th consecutive exit (1, 2, ...). */
export function restartDelayMs(failures: number, backoff: { baseMs: number; capMs: number } = RESTART_BACKOFF): number {
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.max(0, failures - 1));
}

/**
 * Docker's restart policy steps aside (containers run with `no`); `run.restart` now says which
 * exits reconcile restarts: `no` none, `on-failure` a non-zero exit, `always` and
 * `unless-stopped` every exit. Stopping an app for good is `deploybot stop`, not `docker stop`.
 */
export function restartsAfter(policy: RunSpec["restart"] | undefined, exitCode: number): boolean {
  if (policy === "no") return false;
  if (policy === "on-failure") return exitCode !== 0;
  return true;
}

/** Why a container stopped, in words: the exit code, a kill, the OOM killer, the engine's error. */
export function exitReason(state: { ExitCode: number; OOMKilled?: boolean; Error?: string }): string {
  if (state.OOMKilled) return `killed by the OOM killer (exit code ${state.ExitCode}; raise run.memory?)`;
  if (state.Error) return `exited with code ${state.ExitCode}: ${state.Error}`;
  if (state.ExitCode === 137) return "killed (exit code 137, SIGKILL)";
  if (state.ExitCode === 143) return "terminated (exit code 143, SIGTERM)";
  return `exited with code ${state.ExitCode}`;
}
