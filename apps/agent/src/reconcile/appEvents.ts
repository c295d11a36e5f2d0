import { reconcileActions } from "../metrics";
import type { AppEvent } from "@deploybot/protocol";
import type { Logger } from "pino";
import type { AgentState } from "../state";

const FILE = "app-events.json";
/** Unsent events kept while the controller is away; the oldest go first past this (a crash loop for days). */
const KEEP = 1000;
/** Sent per heartbeat; the rest follow in the next ones. */
const BATCH = 100;

/**
 * What reconcile did, numbered and kept on disk until the controller acknowledges it in a
 * heartbeat answer, so an outage or an agent restart loses no event and a resend is a no-op.
 */
export class AppEventQueue {
  private nextSeq: number;
  private pending: AppEvent[];

  constructor(
    private readonly state: AgentState,
    private readonly logger: Logger,
  ) {
    const raw = state.read<{ nextSeq: number; pending: AppEvent[] }>(FILE);
    this.nextSeq = raw?.nextSeq ?? 1;
    this.pending = raw?.pending ?? [];
  }

  push(event: Omit<AppEvent, "seq" | "at">): void {
    const full: AppEvent = { seq: this.nextSeq++, at: new Date().toISOString(), ...event, reason: event.reason.slice(0, 2000) };
    this.pending.push(full);
    if (this.pending.length > KEEP) this.pending.splice(0, this.pending.length - KEEP);
    reconcileActions.inc({ action: full.kind });
    this.logger.info({ app: full.app, event: full.kind, reason: full.reason, container: full.container }, "reconcile");
    this.save();
  }

  unsent(): AppEvent[] {
    return this.pending.slice(0, BATCH);
  }

  ack(seq: number): void {
    const before = this.pending.length;
    this.pending = this.pending.filter((e) => e.seq > seq);
    if (this.pending.length !== before) this.save();
  }

  private save() {
    this.state.write(FILE, { nextSeq: this.nextSeq, pending: this.pending });
  }
}
