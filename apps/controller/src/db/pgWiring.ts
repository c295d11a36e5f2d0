import type { Logger } from "pino";
import type { AppLogService } from "../services/appLogs";
import type { JobEvents } from "../services/events";
import { PgAppLogRelay } from "../services/pgAppLogRelay";
import type { OutboxEvent } from "../services/outbox";
import { type Leadership, PgLeader, PgLogRelay, PgOutboxFollower, PgOutboxListener } from "../services/pgCluster";
import { connectPg, type PgSql } from "./pg";

/** In the controller: `signal: (e) => services.drainer.applySignals(e)` (a drainer made with `signals: "follower"`), `appended: () => deps.outbox.appended()`, `events: deps.events`. */
export interface PgClusterHooks {
  /** every committed outbox row, from every controller: run the drainer's signal consequences for it */
  signal: (event: OutboxEvent) => void;
  /** another controller appended (or one may have been missed): readers following the outbox look again */
  appended: () => void;
  /** the process's log-line signals, relayed to and from the other controllers */
  events: JobEvents;
  /** the process's stored container output, relayed to and from the other controllers' followers */
  appLogs?: Pick<AppLogService, "onStored" | "relayed">;
}

export interface PgCluster {
  /** the leadership of one singleton (an advisory lock key from LOCKS) */
  leadership(key: number, name: string): Leadership;
  stop(): Promise<void>;
}

/**
 * What one controller on PostgreSQL runs besides its pool so that several controllers act as one:
 * a connection holding the singleton locks (src/singletons.ts elects with them), a LISTEN for
 * outbox appends that wakes its long-polls, SSE streams and event readers (PgOutboxFollower), and
 * the log relays for live job and app log streams (PgLogRelay, PgAppLogRelay). Three connections
 * in all plus the relays' LISTEN, besides the pool's.
 */
export async function startPgCluster(url: string, pool: PgSql, hooks: PgClusterHooks, logger: Logger, name = "deploybot-controller"): Promise<PgCluster> {
  const locks = connectPg(url, { max: 1, name: `${name} (singletons)` });
  const listener = new PgOutboxListener(url);
  await listener.start();
  const stopAppended = listener.onAppend(() => hooks.appended());
  const follower = new PgOutboxFollower(pool, listener, hooks.signal, logger);
  await follower.start();
  const relay = new PgLogRelay(pool, hooks.events, logger);
  await relay.start();
  const appLogRelay = hooks.appLogs ? new PgAppLogRelay(pool, hooks.appLogs, logger) : undefined;
  await appLogRelay?.start();
  const leaders: PgLeader[] = [];
  return {
    leadership(key, singleton) {
      const leader = new PgLeader(locks, key, singleton, logger);
      leaders.push(leader);
      return leader;
    },
    async stop() {
      await Promise.all(leaders.map((l) => l.release()));
      follower.stop();
      stopAppended();
      await relay.stop();
      await appLogRelay?.stop();
      await listener.stop();
      await locks.end({ timeout: 5 });
    },
  };
}
