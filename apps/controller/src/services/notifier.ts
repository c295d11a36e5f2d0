import type { JobChangedEvent } from "@deploybot/protocol";

/**
 * Wakes long-polling heartbeats of this process. With several controllers on PostgreSQL each
 * one hears every controller's job changes through LISTEN/NOTIFY (pgCluster.ts) and calls
 * `jobChanged` for them, as the drainer does here for this process's own.
 */
interface Waiter {
  agentId: string;
  hostname: string;
  labels: readonly string[];
  wake: () => void;
}

export class Notifier {
  private readonly waiters = new Set<Waiter>();

  /** Resolves when woken (true), on timeout or on abort (false); the caller then looks at the queue again. */
  wait(who: Omit<Waiter, "wake">, ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const waiter: Waiter = { ...who, wake: () => done(true) };
      const timer = setTimeout(() => done(false), ms);
      const aborted = () => done(false);
      const done = (woken: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        this.waiters.delete(waiter);
        resolve(woken);
      };
      signal?.addEventListener("abort", aborted, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** A job was queued for a host or for every agent carrying all of `labels`. */
  jobQueued(target: { host?: string | null; labels?: readonly string[] | null }): void {
    for (const w of this.waiters) {
      const matches = target.host
        ? w.hostname === target.host
        : (target.labels ?? []).every((l) => w.labels.includes(l));
      if (matches) w.wake();
    }
  }

  /**
   * What a job change means for waiting agents: a queued (or handed back) job wakes the
   * long-polls that may take it; a cancel request or a timeout wakes the agent holding the job.
   */
  jobChanged(job: Pick<JobChangedEvent, "status" | "transition" | "host" | "labels" | "agentId">): void {
    if (job.status === "pending") this.jobQueued({ host: job.host, labels: job.labels });
    else if (job.agentId && (job.transition === "cancel_requested" || job.transition === "timed_out")) this.agentChanged(job.agentId);
  }

  /** Something changed for one agent (a cancel request). */
  agentChanged(agentId: string): void {
    for (const w of this.waiters) if (w.agentId === agentId) w.wake();
  }

  get waiting(): number {
    return this.waiters.size;
  }
}
