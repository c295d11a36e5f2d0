import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { PgSql } from "../db/pg";
import type { AppLogService, StoredLine } from "./appLogs";

/** The channel on which controllers tell each other of stored container output. */
export const APP_LOGS_CHANNEL = "deploybot_app_logs";
/** PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more; larger batches send their id range. */
const MAX_PAYLOAD_BYTES = 7_900;

type Notice = { from: string; lines?: StoredLine[]; host?: string; first?: number; last?: number };

/**
 * Live app logs (`GET /v1/apps/{name}/logs?follow=1`) across controllers: an agent ships its
 * containers' output to one controller, a reader may follow on another. A controller announces
 * each batch it stored with NOTIFY after the commit (the lines when they fit, else the host and id
 * range, read back from app_logs: one agent ships one host's lines, one batch after the other, so
 * that host's lines in the range are the batch) and every other controller hands it to its
 * readers. A missed notice costs the reader those lines until it reconnects with Last-Event-ID.
 */
export class PgAppLogRelay {
  private readonly self = randomUUID();
  private stopLocal: (() => void) | undefined;
  private subscription: { unlisten(): Promise<void> } | undefined;

  constructor(
    private readonly sql: PgSql,
    private readonly appLogs: Pick<AppLogService, "onStored" | "relayed">,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<void> {
    this.stopLocal = this.appLogs.onStored((lines) => void this.announce(lines));
    this.subscription = await this.sql.listen(APP_LOGS_CHANNEL, (payload) => void this.receive(payload));
  }

  async stop(): Promise<void> {
    this.stopLocal?.();
    await this.subscription?.unlisten().catch(() => {});
  }

  private async announce(lines: StoredLine[]): Promise<void> {
    let payload = JSON.stringify({ from: this.self, lines } satisfies Notice);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      payload = JSON.stringify({ from: this.self, host: lines[0]!.host, first: lines[0]!.id, last: lines[lines.length - 1]!.id } satisfies Notice);
    }
    try {
      await this.sql`SELECT pg_notify(${APP_LOGS_CHANNEL}, ${payload})`;
    } catch (err) {
      this.logger?.warn({ err }, "announcing app log lines to the other controllers failed");
    }
  }

  private async receive(payload: string): Promise<void> {
    try {
      const notice = JSON.parse(payload) as Notice;
      if (notice.from === this.self) return;
      const lines =
        notice.lines ??
        (await this.sql<StoredLine[]>`
          SELECT id, host, app, container, ts, stream, line FROM app_logs
          WHERE host = ${notice.host ?? ""} AND id BETWEEN ${notice.first ?? 0} AND ${notice.last ?? -1} ORDER BY id`);
      this.appLogs.relayed([...lines]);
    } catch (err) {
      this.logger?.warn({ err }, "relaying app log lines from another controller failed");
    }
  }
}
