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
  const box = useRef<HTMLPreElement>(null);
  const follow = useRef(true);
  const endRef = useRef(onEnd);
  endRef.current = onEnd;

  useEffect(() => {
    setLines([]);
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
        <span class="dim"> · {lines.length} lines</span>
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
