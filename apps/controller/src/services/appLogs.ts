import { EventEmitter } from "node:events";
import { type AppLogEntry, type AppLogLine, type AppLogSilentHost, normaliseTs, SINCE_FORMS, sinceMs } from "@deploybot/protocol";
import { and, asc, desc, eq, gt, gte, inArray, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { agents, appLogs } from "../db/schema";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { IngestRedaction } from "./redaction";

type AgentIdentity = { id: string; hostname: string };
export type StoredLine = AppLogLine & { app: string };

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
  const at = sinceMs(since, now);
  if (at === null) throw new ApiError(400, "invalid_query", `since must look like ${SINCE_FORMS}, not '${since.slice(0, 40)}'`);
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
    // every shipped batch runs these: prepared once where the engine allows (db/reusable.ts)
    const { db } = deps;
    const p = sql.placeholder;
    this.statements = {
      offset: reusable(db, () => db.select({ offset: agents.appLogOffset }).from(agents).where(eq(agents.id, p("id"))).prepare()),
      setOffset: reusable(db, () =>
        db
          .update(agents)
          .set({ appLogOffset: sql`${p("offset")}` })
          .where(eq(agents.id, p("id")))
          .prepare(),
      ),
      insert: reusable(db, () =>
        db
          .insert(appLogs)
          .values({ host: p("host"), app: p("app"), container: p("container"), ts: p("ts"), stream: p("stream"), line: p("line") })
          .returning({ id: appLogs.id })
          .prepare(),
      ),
    };
  }

  /** Appends a batch sent at `offset`; returns the agent's new offset. */
  async append(agent: AgentIdentity, offset: number, entries: readonly AppLogEntry[]): Promise<number> {
    const stored: StoredLine[] = [];
    const next = await this.deps.db.write(async () => {
      const [row] = await this.statements.offset().execute({ id: agent.id });
      const current = row?.offset ?? 0;
      if (offset > current) throw new ApiError(409, "offset_mismatch", `expected lines from offset ${current}`, { offset: current });
      // a retry of a batch whose answer was lost: its first lines are stored already
      const fresh = entries.slice(current - offset);
      const insert = this.statements.insert();
      for (const e of fresh) {
        const ts = normaliseTs(e.ts);
        const line = this.redaction ? (await this.redaction.forApp(e.app)).redact(e.line) : e.line;
        const [{ id }] = (await insert.execute({ host: agent.hostname, app: e.app, container: e.container, ts, stream: e.stream, line })) as [{ id: number }];
        stored.push({ id, host: agent.hostname, app: e.app, container: e.container, ts, stream: e.stream, line });
      }
      const after = Math.max(current, offset + entries.length);
      await this.statements.setOffset().execute({ offset: after, id: agent.id });
      return after;
    });
    if (stored.length > 0) {
      await this.trim(agent.hostname, stored);
      this.emitter.emit("stored", stored);
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
      const here = and(eq(appLogs.app, app), eq(appLogs.host, host));
      const oldestKept = this.deps.db.select({ id: appLogs.id }).from(appLogs).where(here).orderBy(desc(appLogs.id)).limit(1).offset(keep - 1);
      await this.deps.db.delete(appLogs).where(and(here, sql`${appLogs.id} < (${oldestKept})`));
    }
  }

  /** Whether any line of `app` from `host` is stored (a host the app ran on before apps.yaml moved it). */
  async hasLines(app: string, host: string): Promise<boolean> {
    const rows = await this.deps.db
      .select({ id: appLogs.id })
      .from(appLogs)
      .where(and(eq(appLogs.app, app), eq(appLogs.host, host)))
      .limit(1);
    return rows.length > 0;
  }

  /**
   * Which of `hosts` run an agent that does not ship the containers' output, each with a message
   * naming the host and what to do. Agents since 0.2.3 report `appLogs: false` when shipping is
   * turned off. Older ones report nothing of it; shipping came in the same day's agent (0.1.0
   * throughout) as the `volumes` capability, about 3 h before it, so an agent reporting volumes
   * ships, and so does one whose offset moved (it has sent lines). An agent of those 3 h that has
   * not sent a line yet is named too: it is also too old for volumes.
   */
  async silentHosts(app: string, hosts: readonly string[]): Promise<AppLogSilentHost[]> {
    if (hosts.length === 0) return [];
    const rows = await this.deps.db
      .select({ host: agents.hostname, version: agents.version, capabilities: agents.capabilities, offset: agents.appLogOffset, revoked: agents.revoked })
      .from(agents)
      .where(inArray(agents.hostname, [...hosts]));
    const why = (a: (typeof rows)[number]): string | null => {
      if (a.revoked) return null;
      if (a.capabilities?.appLogs === false) {
        return `the agent on host ${a.host} has app-log shipping turned off (DEPLOYBOT_SHIP_APP_LOGS=false): the output of ${app} there never reaches the controller; set it to true and restart that agent`;
      }
      if (a.capabilities?.volumes === true || a.offset > 0) return null;
      return `host ${a.host} runs agent ${a.version}, which predates app-log shipping: the output of ${app} there never reaches the controller; upgrade the agent on ${a.host}`;
    };
    return rows
      .sort((a, b) => a.host.localeCompare(b.host))
      .flatMap((a) => {
        const message = why(a);
        return message ? [{ host: a.host, agentVersion: a.version, message }] : [];
      });
  }

  /** Stored lines of an app, oldest first: after an id, since a time; the last `tail`, else the first `limit`. */
  async read(app: string, q: AppLogQuery, limit = 10_000): Promise<AppLogLine[]> {
    const where = [
      eq(appLogs.app, app),
      q.host ? eq(appLogs.host, q.host) : undefined,
      q.after !== undefined ? gt(appLogs.id, q.after) : undefined,
      q.since ? gte(appLogs.ts, parseSince(q.since, this.deps.clock())) : undefined,
    ];
    // the last `tail` lines, or (resuming, paging) the first `limit` after the cursor
    const newest = q.tail !== undefined;
    const rows: AppLogLine[] = await this.deps.db
      .select({ id: appLogs.id, host: appLogs.host, container: appLogs.container, ts: appLogs.ts, stream: appLogs.stream, line: appLogs.line })
      .from(appLogs)
      .where(and(...where))
      .orderBy(newest ? desc(appLogs.id) : asc(appLogs.id))
      .limit(Math.min(q.tail ?? limit, limit));
    return newest ? rows.reverse() : rows;
  }

  /** Batches this process stored, for the relay that tells the other controllers (PgAppLogRelay). */
  onStored(listener: (lines: StoredLine[]) => void): () => void {
    this.emitter.on("stored", listener);
    return () => this.emitter.off("stored", listener);
  }

  /** A batch another controller stored: to this process's live readers, as if stored here. */
  relayed(lines: StoredLine[]): void {
    if (lines.length > 0) this.emitter.emit("lines", lines);
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
