import { CronExpressionParser } from "cron-parser";

/**
 * Cron ticks in a schedule's time zone, by cron-parser. Chosen over croner after running both
 * over the 2026 DST changes in Europe/London and America/New_York (croner 11.0.1, cron-parser
 * 5.10.6): croner lost both ticks of `15,45 1 * * *` on the spring day and ran `15,45 1`,
 * `*\/15 1` and `0 1-3` twice on the autumn day; cron-parser kept exactly one tick per wall-clock
 * time in every case. The rule it implements, and we document:
 *  - a fixed time in the skipped hour (spring) runs once, moved forward by the gap:
 *    01:30 in London runs at 02:30 BST, 02:30 in New York at 03:30 EDT;
 *  - a fixed time in the repeated hour (autumn) runs once, at its first occurrence (summer time);
 *  - a wildcard hour (`0 * * * *`, `*\/30 * * * *`) follows elapsed time: both 01:00s in autumn,
 *    and one hour from 00:00 GMT to 02:00 BST in spring.
 * The rule holds when ticks are taken one after another from the previous tick, which is why the
 * scheduler keeps the newest tick per schedule instead of asking "what is next after now".
 */

/** A reason the expression or zone is refused, or null. 5 fields, or 6 with seconds first. */
export function cronProblem(expr: string, timezone: string): string | null {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return `cron must have 5 fields (minute hour day month weekday) or 6 (seconds first), got ${fields.length}`;
  }
  const zone = timezoneProblem(timezone);
  if (zone) return zone;
  try {
    CronExpressionParser.parse(expr, { tz: timezone, currentDate: new Date(0) }).next();
    return null;
  } catch (err) {
    return `invalid cron '${expr}': ${(err as Error).message}`;
  }
}

export function timezoneProblem(timezone: string): string | null {
  try {
    new Intl.DateTimeFormat("en", { timeZone: timezone });
    return null;
  } catch {
    return `unknown IANA time zone '${timezone}'`;
  }
}

const parse = (expr: string, timezone: string, at: number) => CronExpressionParser.parse(expr, { tz: timezone, currentDate: new Date(at) });

/**
 * cron-parser carries DST state from one tick to the next: an iterator started in the middle of
 * a changing hour can lose the shifted spring tick or repeat an autumn one (measured: started
 * from 02:15 BST on the spring day, `15,45 1 * * *` skipped its shifted 01:45). So when the
 * zone's UTC offset changes within this window of `after`, the iterator starts this much earlier
 * and walks forward, exactly as one long-lived iterator would have. Elsewhere it starts at `after`.
 */
const REPLAY_MS = 3 * 3600_000;

const offsetFormats = new Map<string, Intl.DateTimeFormat>();
function utcOffset(timezone: string, at: number): string {
  let f = offsetFormats.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone: timezone, timeZoneName: "longOffset" });
    offsetFormats.set(timezone, f);
  }
  return f.format(at);
}

/** Ticks strictly after `after`, up to and including `until`, at most `limit` of them, oldest first. */
export function ticksBetween(expr: string, timezone: string, after: number, until: number, limit: number): number[] {
  const replay = utcOffset(timezone, after - REPLAY_MS) !== utcOffset(timezone, after + REPLAY_MS);
  const it = parse(expr, timezone, replay ? after - REPLAY_MS : after);
  const out: number[] = [];
  while (out.length < limit) {
    const t = it.next().getTime();
    if (t <= after) continue;
    if (t > until) break;
    out.push(t);
  }
  return out;
}

/** The next `count` ticks strictly after `after`. */
export function nextTicks(expr: string, timezone: string, after: number, count: number): number[] {
  return ticksBetween(expr, timezone, after, Number.POSITIVE_INFINITY, count);
}

/** The newest tick at or before `at`. */
export function latestTickAtOrBefore(expr: string, timezone: string, at: number): number {
  return parse(expr, timezone, at + 1).prev().getTime();
}
