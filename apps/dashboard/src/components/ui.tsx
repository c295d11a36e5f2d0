import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { ApiFailure } from "../lib/api";

const tone: Record<string, string> = {
  succeeded: "ok",
  success: "ok",
  running: "ok",
  online: "ok",
  deployed: "ok",
  idle: "ok",
  pong: "ok",
  ready: "ok",
  healthy: "ok",
  down: "bad",
  drain: "busy",
  failed: "bad",
  lost: "bad",
  timed_out: "bad",
  offline: "bad",
  expired: "bad",
  "renewal due": "busy",
  rejected: "bad",
  pending: "busy",
  assigned: "busy",
  building: "busy",
  deploying: "busy",
  busy: "busy",
  draining: "busy",
};

/** A status word with a colour; the word itself carries the meaning (never colour alone). */
export function Badge({ status }: { status: string }) {
  return <span class={`badge ${tone[status] ?? "muted"}`}>{status.replace(/_/g, " ")}</span>;
}

function span(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86_400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** "12 s ago", or "in 5 min" for a time still ahead (a schedule's next run). */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (Math.abs(s) < 5) return "just now";
  return s > 0 ? `${span(s)} ago` : `in ${span(-s)}`;
}

// A relative time is worked out when it is drawn, and pages redraw on events and every 30 s:
// a deploy's "Started just now" stayed so for up to 30 s. One timer redraws every <Time> on the
// page every 5 s (one render pass: the updates are batched).
const TICK_MS = 5000;
const tickers = new Set<() => void>();
let tickTimer: ReturnType<typeof setInterval> | null = null;

function useTick(): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const tick = () => setTick((n) => n + 1);
    tickers.add(tick);
    tickTimer ??= setInterval(() => {
      for (const t of tickers) t();
    }, TICK_MS);
    return () => {
      tickers.delete(tick);
      if (tickers.size === 0 && tickTimer) {
        clearInterval(tickTimer);
        tickTimer = null;
      }
    };
  }, []);
}

export function Time({ iso }: { iso: string | null | undefined }) {
  useTick();
  return iso ? <time datetime={iso} title={new Date(iso).toLocaleString()}>{ago(iso)}</time> : <span class="dim">—</span>;
}

/**
 * A data table. On a narrow screen it scrolls sideways in a box of its own, not the whole page;
 * while it does, the box takes keyboard focus, so the arrow keys scroll it as well (a table
 * without links or buttons had no other way in).
 */
export function GridTable({ children }: { children: ComponentChildren }) {
  const box = useRef<HTMLDivElement>(null);
  const [scrolls, setScrolls] = useState(false);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const measure = () => setScrolls(el.scrollWidth > el.clientWidth);
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    // rows arriving widen the table, not the box
    if (el.firstElementChild) observer.observe(el.firstElementChild);
    return () => observer.disconnect();
  }, []);
  return (
    <div class="scroll-x" ref={box} tabIndex={scrolls ? 0 : undefined}>
      <table class="grid">{children}</table>
    </div>
  );
}

export function Page({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · deploybot`;
  }, [title]);
  return (
    <>
      <div class="page-head">
        <h1>{title}</h1>
        {actions ? <div class="actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}

export function Failure({ error }: { error: ApiFailure | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message}
      {error.code && error.code !== "error" ? <span class="dim"> ({error.code})</span> : null}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="dim" aria-busy="true">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** A release named by its full commit sha reads better by its first 12 characters, as git shows it. */
export const version = (v: string | null | undefined) => (v ? (/^[0-9a-f]{40}$/.test(v) ? v.slice(0, 12) : v) : "—");

/** `registry:5000/team/web@sha256:abcdef…` -> `web@sha256:abcdef123456`: the full name is in the title. */
export const shortImage = (image: string) => (image.split("/").pop() ?? image).replace(/@sha256:([0-9a-f]{12})[0-9a-f]+$/, "@sha256:$1");

/** What a deployment put out: its ref (and commit), else its commit, else its image. */
export function DeployedWhat({ d }: { d: { ref: string | null; sha: string | null; image: string | null } }) {
  if (d.ref) return <span class="mono">{d.ref}{d.sha ? <span class="dim"> {d.sha.slice(0, 7)}</span> : null}</span>;
  if (d.sha) return <span class="mono">{d.sha.slice(0, 12)}</span>;
  if (d.image) return <span class="mono" title={d.image}>{shortImage(d.image)}</span>;
  return <span class="dim">—</span>;
}

export const short = (id: string | null | undefined, n = 8) => (id ? (id.length > n + 4 ? `${id.slice(0, n)}…` : id) : "—");

/** A job's id as a link; deployments and jobs are ULIDs, so the tail is what tells them apart. */
export function JobLink({ id }: { id: string | null }) {
  if (!id) return <span class="dim">—</span>;
  return (
    <a href={`/jobs/${id}`} class="mono">
      {id.slice(-8)}
    </a>
  );
}
