import type { Logger } from "pino";
import type { Config } from "../config";
import type { Db } from "../db/client";
import type { AppsConfig } from "./appsConfig";
import type { JobEvents } from "./events";
import type { Notifier } from "./notifier";
import type { Outbox } from "./outbox";

/** What every service is built from; tests pass their own clock and in-memory db. */
export interface Deps {
  db: Db;
  config: Config;
  clock: () => number;
  logger: Logger;
  notifier: Notifier;
  events: JobEvents;
  /** append an event in the transaction of the change it records */
  outbox: Outbox;
  apps: () => AppsConfig;
}

export const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());
