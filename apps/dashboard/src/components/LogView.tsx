import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { openStream, type StreamState } from "../lib/sse";

interface Line {
  /** job logs number their lines `seq`, app logs `id` */
  seq?: number;
  id?: number;
  stream: string;
  line: string;
  /** app logs: which host and container said it */
  host?: string;
}

/**
 * A host of the app whose agent sends none of the containers' output (too old to ship it, or
 * shipping turned off): the `notice` events an app's log stream starts with (controllers since
 * app-log notices; an older one sends none, and the view shows none).
 */
interface SilentHost {
  host: string;
  /** names the host, says why and what to do (the same words `deploybot logs APP` prints) */
  message: string;
}

function silentHost(data: string): SilentHost | null {
  try {
    const v = JSON.parse(data) as Partial<SilentHost> | null;
    return typeof v?.host === "string" && typeof v.message === "string" ? { host: v.host, message: v.message } : null;
  } catch {
    return null;
  }
}

/** The controller's message with the host's name in bold where it says "host NAME", for a reader scanning several. */
function withHostInBold({ host, message }: SilentHost) {
  const at = message.indexOf(`host ${host}`);
  if (at < 0) return message;
  const start = at + "host ".length;
  return (
    <>
      {message.slice(0, start)}
      <b>{host}</b>
      {message.slice(start + host.length)}
    </>
  );
}

// The controller caps a job's log (10 MiB by default); the page keeps the newest lines only.
const MAX_LINES = 5000;

const stateText: Record<StreamState, string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  ended: "complete",
  failed: "unavailable",
};

/** One job's log from `GET /v1/logs/stream?job=`: the history, then live lines until the stream's `end`. */
export function JobLog({ jobId, label, onEnd }: { jobId: string; label: string; onEnd?: (status: string) => void }) {
  return <LogView path={`/v1/logs/stream?job=${encodeURIComponent(jobId)}`} id={jobId} label={label} onEnd={onEnd} />;
}

/**
 * A log over SSE (`log` events, then `end` for a job). Follows the bottom unless the reader
 * scrolled up; reconnects by itself and resumes after the last line it has (Last-Event-ID).
 */
export function LogView({ path, id, label, onEnd, showHost }: { path: string; id: string; label: string; onEnd?: (status: string) => void; showHost?: boolean }) {
  const [lines, setLines] = useState<Line[]>([]);
  const [state, setState] = useState<StreamState>("connecting");
  const [detail, setDetail] = useState<string | undefined>();
  const [silent, setSilent] = useState<SilentHost[]>([]);
  const box = useRef<HTMLPreElement>(null);
  const follow = useRef(true);
  const endRef = useRef(onEnd);
  endRef.current = onEnd;

  useEffect(() => {
    setLines([]);
    setSilent([]);
    let batch: Line[] = [];
    let frame = 0;
    // many lines arrive in one chunk: render once per animation frame, not once per line
    const flush = () => {
      frame = 0;
      const add = batch;
      batch = [];
      setLines((old) => {
        const next = old.concat(add);
        return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
      });
    };
    const close = openStream(
      path,
      {
        onEvent: (event, data) => {
          if (event === "log") {
            batch.push(JSON.parse(data) as Line);
            frame ||= requestAnimationFrame(flush);
          } else if (event === "notice") {
            // a stream resumed before its first line says it again: one entry per host
            const said = silentHost(data);
            if (said) setSilent((old) => [...old.filter((s) => s.host !== said.host), said].sort((a, b) => a.host.localeCompare(b.host)));
          } else if (event === "end") endRef.current?.((JSON.parse(data) as { status: string }).status);
        },
        onState: (s, d) => {
          setState(s);
          setDetail(d);
        },
      },
      { endEvents: ["end"] },
    );
    return () => {
      close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [path]);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  const onScroll = () => {
    const el = box.current;
    if (el) follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  };

  return (
    <div class="logview">
      <div class="log-state">
        <span class={`dot ${state}`} aria-hidden="true" />
        <span data-testid={`log-state-${id}`}>
          Log {stateText[state]}
          {detail ? `: ${detail}` : ""}
        </span>
        <span class="dim">{` · ${lines.length} ${lines.length === 1 ? "line" : "lines"}`}</span>
      </div>
      <div role="status" data-testid={`log-notices-${id}`}>
        {silent.length > 0 ? (
          <div class="log-notices">
            <h3>Hosts that send no output</h3>
            <ul>
              {silent.map((s) => (
                <li key={s.host}>{withHostInBold(s)}</li>
              ))}
            </ul>
          </div>
        ) : null}
      </div>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard */}
      <pre class="log" ref={box} onScroll={onScroll} tabIndex={0} role="log" aria-label={label} data-testid={`log-${id}`}>
        {lines.map((l) => (
          <div key={l.seq ?? l.id} class={l.stream === "stderr" ? "err" : l.stream === "system" ? "sys" : undefined}>
            {showHost && l.host ? <span class="sys">{l.host} </span> : null}
            {l.line}
          </div>
        ))}
      </pre>
    </div>
  );
}
