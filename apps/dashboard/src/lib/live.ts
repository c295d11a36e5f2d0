import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiFailure } from "./api";
import { openStream, type StreamState } from "./sse";

export type LiveMode = { kind: "events"; state: StreamState } | { kind: "polling"; everySeconds: number } | { kind: "off" };

type Listener = () => void;
const listeners = new Set<Listener>();
const modeListeners = new Set<(m: LiveMode) => void>();
let mode: LiveMode = { kind: "off" };
let stop: (() => void) | null = null;
let pending: ReturnType<typeof setTimeout> | null = null;

const POLL_SECONDS = 5;
// Events come in bursts (a deployment's jobs change together): one refresh per burst, at most
// one a second, so a busy fleet costs an open page one round of reads a second.
const COALESCE_MS = 250;
const MIN_GAP_MS = 1000;
// Container states and heartbeat times change without an event: re-read them now and then.
const BACKGROUND_SECONDS = 30;
let lastRefresh = 0;

function setMode(m: LiveMode) {
  mode = m;
  for (const l of modeListeners) l(m);
}

function notifyAll() {
  if (pending) return;
  const wait = Math.max(COALESCE_MS, lastRefresh + MIN_GAP_MS - Date.now());
  pending = setTimeout(() => {
    pending = null;
    lastRefresh = Date.now();
    for (const l of listeners) l();
  }, wait);
}

function startPolling() {
  const timer = setInterval(notifyAll, POLL_SECONDS * 1000);
  setMode({ kind: "polling", everySeconds: POLL_SECONDS });
  const closeStream = stop;
  stop = () => {
    clearInterval(timer);
    closeStream?.();
  };
}

/**
 * Starts live updates for a signed-in page: `GET /v1/events` when the controller has it, and a
 * refresh every 5 s when it does not (a controller older than the events stream).
 */
export function startLive() {
  stopLive();
  const background = setInterval(notifyAll, BACKGROUND_SECONDS * 1000);
  const close = openStream(
    "/v1/events",
    {
      onEvent: (event) => {
        if (event !== "ping") notifyAll();
      },
      onState: (state) => {
        // after a reconnect the missed events are replayed by id; a refresh covers any gap
        if (state === "live" && mode.kind === "events" && mode.state === "reconnecting") notifyAll();
        // refused (a token scope without events, say): fall back to reading on a timer
        if (state === "failed") startPolling();
        else setMode({ kind: "events", state });
      },
    },
    { onMissing: () => startPolling() },
  );
  stop = () => {
    clearInterval(background);
    close();
  };
}

export function stopLive() {
  stop?.();
  stop = null;
  setMode({ kind: "off" });
}

export function useLiveMode(): LiveMode {
  const [m, set] = useState(mode);
  useEffect(() => {
    modeListeners.add(set);
    return () => void modeListeners.delete(set);
  }, []);
  return m;
}

export interface Resource<T> {
  data: T | undefined;
  error: ApiFailure | undefined;
  reload: () => void;
}

/** Loads `load()` now, again when `deps` change, and on every live update while mounted. */
export function useResource<T>(load: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiFailure | undefined>(undefined);
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    load().then(
      (value) => {
        if (mine !== generation.current) return;
        setData(value);
        setError(undefined);
      },
      (err: unknown) => {
        if (mine !== generation.current) return;
        setError(err instanceof ApiFailure ? err : new ApiFailure(0, "error", String(err)));
      },
    );
  }, deps);
  useEffect(() => {
    setData(undefined);
    reload();
    listeners.add(reload);
    return () => void listeners.delete(reload);
  }, [reload]);
  return { data, error, reload };
}
