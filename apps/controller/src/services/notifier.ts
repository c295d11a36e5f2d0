/**
 * Wakes long-polling heartbeats. In-process only: one controller owns the queue (the HA path
 * would use PostgreSQL LISTEN/NOTIFY instead, see ARCHITECTURE.md "Scale path").
 */
interface Waiter {
  agentId: string;
  hostname: string;
  labels: readonly string[];
  wake: () => void;
}

export class Notifier {
  private readonly waiters = new Set<Waiter>();

  /** Resolves when woken, on timeout, or on abort; the caller then looks at the queue again. */
  wait(who: Omit<Waiter, "wake">, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const waiter: Waiter = { ...who, wake: () => done() };
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.waiters.delete(waiter);
        resolve();
      };
      signal?.addEventListener("abort", done, { once: true });
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

  /** Something changed for one agent (a cancel request). */
  agentChanged(agentId: string): void {
    for (const w of this.waiters) if (w.agentId === agentId) w.wake();
  }

  get waiting(): number {
    return this.waiters.size;
  }
}
