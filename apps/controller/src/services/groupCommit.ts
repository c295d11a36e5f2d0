import type Database from "better-sqlite3";
import type { Logger } from "pino";

type Member = { fn: () => unknown; resolve: (value: unknown) => void; reject: (err: unknown) => void };

/**
 * Group commit for the agents' hot transitions on SQLite (claim, start, finish): under load,
 * the transitions asked for in one turn of the event loop share one COMMIT.
 *
 * Why: in WAL mode with synchronous=NORMAL a COMMIT is the WAL append (a frame per page the
 * transaction dirtied, plus the locks around it), and it was 42% of an in-process claim+finish
 * cycle (profile of bench/jobs.bench.ts). Transitions of one group mostly dirty the same pages
 * (the jobs leaf, the claim and held indexes, the outbox leaf), so a group writes each once.
 *
 * How, and what it guarantees:
 * - The first transition of a turn runs at once in its own transaction, as before: a lone caller
 *   (one agent, a test) pays nothing and waits for nothing.
 * - So do the next ones of the same caller (an agent's claim, then its finish) while nothing else
 *   waits: one agent's transitions follow each other, so grouping them would only make the second
 *   wait for the check phase. A group forms under real concurrency only: another caller's
 *   transition in a turn already taken. Measured (bench/jobs.bench.ts with BENCH_BASELINE, one
 *   caller doing claim and finish back to back, same run, load 14): before this rule, group
 *   commit on ran at 0.69x the cycles/s of off (0.71x by CPU: every finish waited a turn, and the
 *   drainer then ran once per cycle); with it 1.02x (0.92x by CPU, within the noise). 64 agents
 *   at once still form groups of 63.9 transitions.
 * - Later ones in the same turn wait for the check phase (setImmediate). There the whole group
 *   runs in ONE synchronous block: BEGIN IMMEDIATE, each member in its own savepoint, COMMIT.
 *   No transaction is ever open across a turn, so nothing else in the process — another request's statements, a backup's VACUUM INTO, a PRAGMA — can
 *   join a group: they run before or after it, never inside.
 * - A member that throws is rolled back to its savepoint and only its caller sees the error.
 * - Every promise settles after the COMMIT returned: nothing is acknowledged before it is
 *   committed. If the COMMIT (or the BEGIN) fails, everything is rolled back and every member's
 *   caller gets that error.
 * - A member called while the connection is already in a transaction (a caller's own
 *   transaction) runs at once inside it, as a savepoint: deferring it would leave that
 *   transaction open across a turn.
 */
export class GroupCommit {
  private waiting: Member[] = [];
  private flushScheduled = false;
  /** a transition already ran at once in this turn: the next ones of the turn are grouped */
  private turnTaken = false;
  /** whose transition ran at once in this turn: that caller's next ones run at once too */
  private turnCaller: string | undefined;
  private readonly begin;
  private readonly commit;
  private readonly rollback;
  /** each member in a savepoint of the group's transaction: a throw undoes its writes only */
  private readonly inSavepoint: (fn: () => unknown) => unknown;
  private readonly resetTurn = () => {
    this.turnTaken = false;
    this.turnCaller = undefined;
  };
  private readonly flushNow = () => this.flush();
  /** groups and members committed so far (the bench reports members per group) */
  readonly stats = { groups: 0, members: 0 };

  constructor(
    private readonly client: Database.Database,
    private readonly logger: Logger,
    /** false: every transition commits on its own, at once (DEPLOYBOT_GROUP_COMMIT=0) */
    private readonly enabled = true,
    /** members per COMMIT at most, so one group cannot hold the event loop for long */
    private readonly maxGroup = 256,
  ) {
    this.begin = client.prepare("BEGIN IMMEDIATE");
    this.commit = client.prepare("COMMIT");
    this.rollback = client.prepare("ROLLBACK");
    this.inSavepoint = client.transaction((fn: () => unknown) => fn());
  }

  /**
   * Runs `fn` (a transition: synchronous, its writes in its own nested transaction) and resolves
   * with its result once its writes are committed. `caller`: who asks (the agent); without it
   * every call counts as a caller of its own.
   */
  run<T>(fn: () => T, caller?: string): Promise<T> {
    if (
      !this.enabled ||
      this.client.inTransaction ||
      (this.waiting.length === 0 && (!this.turnTaken || (caller !== undefined && caller === this.turnCaller)))
    ) {
      if (this.enabled && !this.turnTaken) {
        this.turnTaken = true;
        this.turnCaller = caller;
        setImmediate(this.resetTurn);
      }
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushNow);
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.waiting.length === 0) return;
    if (this.client.inTransaction) {
      // Only a transaction that yielded to the event loop is open here (a bug its own guard rolls
      // back); never run members inside someone else's transaction: try again next turn.
      this.flushScheduled = true;
      setImmediate(this.flushNow);
      return;
    }
    const members = this.waiting.length <= this.maxGroup ? this.waiting : this.waiting.slice(0, this.maxGroup);
    this.waiting = members === this.waiting ? [] : this.waiting.slice(this.maxGroup);
    if (this.waiting.length > 0) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
    const outcomes: Array<{ ok: boolean; value: unknown }> = new Array(members.length);
    try {
      this.begin.run();
      for (let i = 0; i < members.length; i++) {
        try {
          outcomes[i] = { ok: true, value: this.inSavepoint(members[i]!.fn) };
        } catch (err) {
          outcomes[i] = { ok: false, value: err };
        }
      }
      this.commit.run();
    } catch (err) {
      if (this.client.inTransaction) this.rollback.run();
      this.logger.error({ err, transitions: members.length }, "a group of job transitions failed to commit; every one of them is refused");
      for (const m of members) m.reject(err);
      return;
    }
    this.stats.groups++;
    this.stats.members += members.length;
    for (let i = 0; i < members.length; i++) {
      const o = outcomes[i]!;
      if (o.ok) members[i]!.resolve(o.value);
      else members[i]!.reject(o.value);
    }
  }
}
