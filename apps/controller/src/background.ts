import type { Logger } from "pino";
import type { Config } from "./config";
import { LOCKS } from "./db/pg";
import { startPeriodicBackups } from "./services/backups";
import type { Services } from "./services";
import type { SingletonWork } from "./singletons";

/** A singleton and the advisory lock that elects its controller on PostgreSQL. */
export type LockedWork = SingletonWork & { lock: number };

/**
 * The controller's work that must run in one process at a time: with several controllers on
 * PostgreSQL, each item runs where its lock is held (src/singletons.ts), on SQLite in the one
 * controller. Everything here reads its state from the database when it starts, so a controller
 * taking over continues where the dead one stopped.
 */
export function backgroundWork(services: Services, config: Config, logger: Logger): LockedWork[] {
  let backups: { stop(): Promise<void> } | undefined;
  const work: LockedWork[] = [
    {
      name: "drainer",
      lock: LOCKS.drainer,
      // consequences left unapplied by the previous holder first, then the outbox as it grows
      gain: () => services.drainer.start(),
      lose: () => services.drainer.stop(),
    },
    {
      name: "notifications",
      lock: LOCKS.notifications,
      // deliveries made before a crash, a restart or a handover are sent from here on
      gain: () => services.notifications.start(),
      lose: () => services.notifications.stop(),
    },
    {
      name: "reaper",
      lock: LOCKS.reaper,
      gain: async () => {
        // agents could not renew while no reaper ran (a restart of the only controller): one grace period
        const rearmed = await services.leases.rearmLeases();
        if (rearmed > 0) logger.info({ jobs: rearmed }, "re-armed leases");
      },
      tick: async () => {
        // this controller's buffered heartbeats first, so none of its agents looks silent (the
        // others write theirs every second)
        await services.agents.flushLiveness();
        await services.agents.markOffline();
        await services.leases.sweep();
      },
    },
    {
      name: "scheduler",
      lock: LOCKS.scheduler,
      tick: () => services.scheduler.tick(),
      // Schedules are decided just after each second boundary, so a seconds-level cron runs within
      // tens of milliseconds of its tick (a plain 1 s interval would drift up to a second late).
      nextPassIn: () => 1000 - (Date.now() % 1000) + 20,
    },
    {
      name: "housekeeping",
      lock: LOCKS.housekeeping,
      tick: () => services.housekeeping(),
      tickEveryMs: 60_000,
    },
  ];
  const periodic = config.backups;
  if (periodic && !config.databaseUrl) {
    // copies of the SQLite file; a PostgreSQL database is backed up with its own tools (pg_dump)
    work.push({
      name: "backups",
      lock: LOCKS.housekeeping,
      gain: () => {
        backups = startPeriodicBackups(services.backups, periodic, logger);
      },
      lose: () => backups?.stop(),
    });
  }
  return work;
}
