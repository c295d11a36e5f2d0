import { EventEmitter } from "node:events";
import { type AppLogEntry, type AppLogLine, normaliseTs } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { IngestRedaction } from "./redaction";

type AgentIdentity = { id: string; hostname: string };
type StoredLine = AppLogLine & { app: string };

export interface AppLogQuery {
  host?: string;
  /** "10m", "2h", "45s", "1d" or an ISO time */
  since?: string;
  tail?: number;
  after?: number;
}

/** Trimming costs one indexed DELETE; run it once per this many lines per app and host. */
const TRIM_EVERY = 500;


export function parseSince(since: string, now: number): string {
  const rel = /^(\d{1,7})(s|m|h|d)$/.exec(since);
  if (rel) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"];
    return normaliseTs(new Date(now - Number(rel[1]) * unit).toISOString());
  }
  const at = Date.parse(since);
  if (Number.isNaN(at)) throw new ApiError(400, "invalid_query", `since must look like 10m, 2h, 1d or an ISO time, not '${since.slice(0, 40)}'`);
  return normaliseTs(new Date(at).toISOString());
}

/**
 * Containers' own output, shipped continuously by agents at an offset (like job logs: a retry
 * of a batch stores nothing twice, a gap is refused with the controller's offset), kept to
 * `DEPLOYBOT_APP_LOG_LINES` lines per app and host, and fanned out to live readers.
 */
export class AppLogService {
  private readonly emitter = new EventEmitter();
  private readonly sinceTrim = new Map<string, number>();
  private readonly statements;

  constructor(
    private readonly deps: Deps,
    /** lines are redacted again on ingest with the app's secrets, as job logs are */
    private readonly redaction?: IngestRedaction,
  ) {
    this.emitter.setMaxListeners(0);
    const db = deps.db.$client;
    this.statements = {
      offset: db.prepare<[string], { app_log_offset: number }>("SELECT app_log_offset FROM agents WHERE id = ?"),
      setOffset: db.prepare("UPDATE agents SET app_log_offset = ? WHERE id = ?"),
      insert: db.prepare("INSERT INTO app_logs (host, app, container, ts, stream, line) VALUES (?, ?, ?, ?, ?, ?)"),
      trim: db.prepare(
        "DELETE FROM app_logs WHERE app = ? AND host = ? AND id < (SELECT id FROM app_logs WHERE app = ? AND host = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
      ),
    };
  }

  /** Appends a batch sent at `offset`; returns the agent's new offset. */
  async append(agent: AgentIdentity, offset: number, entries: readonly AppLogEntry[]): Promise<number> {
    const { offset: offsetOf, setOffset, insert } = this.statements;
    const stored: StoredLine[] = [];
    const next = await this.deps.db.write(async () => {
      const current = offsetOf.get(agent.id)?.app_log_offset ?? 0;
      if (offset > current) throw new ApiError(409, "offset_mismatch", `expected lines from offset ${current}`, { offset: current });
      // a retry of a batch whose answer was lost: its first lines are stored already
      const fresh = entries.slice(current - offset);
      for (const e of fresh) {
        const ts = normaliseTs(e.ts);
        const line = this.redaction ? (await this.redaction.forApp(e.app)).redact(e.line) : e.line;
        const { lastInsertRowid } = insert.run(agent.hostname, e.app, e.container, ts, e.stream, line);
        stored.push({ id: Number(lastInsertRowid), host: agent.hostname, app: e.app, container: e.container, ts, stream: e.stream, line });
      }
      const after = Math.max(current, offset + entries.length);
      setOffset.run(after, agent.id);
      return after;
    });
    if (stored.length > 0) {
      await this.trim(agent.hostname, stored);
      this.emitter.emit("lines", stored);
    }
    return next;
  }

  private async trim(host: string, lines: StoredLine[]) {
    const keep = this.deps.config.appLogLines;
    const counts = new Map<string, number>();
    for (const l of lines) counts.set(l.app, (counts.get(l.app) ?? 0) + 1);
    for (const [app, n] of counts) {
      const key = `${app}\u0000${host}`;
      const total = (this.sinceTrim.get(key) ?? TRIM_EVERY) + n;
      if (total < TRIM_EVERY) {
        this.sinceTrim.set(key, total);
        continue;
      }
      this.sinceTrim.set(key, 0);
      this.statements.trim.run(app, host, app, host, keep - 1);
    }
  }

  /** Stored lines of an app, oldest first: after an id, since a time; the last `tail`, else the first `limit`. */
  async read(app: string, q: AppLogQuery, limit = 10_000): Promise<AppLogLine[]> {
    const where = ["app = ?"];
    const args: (string | number)[] = [app];
    if (q.host) {
      where.push("host = ?");
      args.push(q.host);
    }
    if (q.after !== undefined) {
      where.push("id > ?");
      args.push(q.after);
    }
    if (q.since) {
      where.push("ts >= ?");
      args.push(parseSince(q.since, this.deps.clock()));
    }
    // the last `tail` lines, or (resuming, paging) the first `limit` after the cursor
    const newest = q.tail !== undefined;
    const rows = this.deps.db.$client
      .prepare<(string | number)[], AppLogLine>(
        `SELECT id, host, container, ts, stream, line FROM app_logs WHERE ${where.join(" AND ")} ORDER BY id ${newest ? "DESC" : "ASC"} LIMIT ?`,
      )
      .all(...args, Math.min(q.tail ?? limit, limit));
    return newest ? rows.reverse() : rows;
  }

  /** Calls `listener` with every stored batch of `app` (and `host`) from now on. */
  subscribe(app: string, host: string | undefined, listener: (lines: AppLogLine[]) => void): () => void {
    const onLines = (lines: StoredLine[]) => {
      const mine = lines.filter((l) => l.app === app && (!host || l.host === host)).map(({ app: _app, ...l }) => l);
      if (mine.length > 0) listener(mine);
    };
    this.emitter.on("lines", onLines);
    return () => this.emitter.off("lines", onLines);
  }
}
