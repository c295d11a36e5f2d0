import { type ErrorBody, FAILOVER_STATUSES, parseControllerUrls } from "@deploybot/protocol";

export class ControllerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/**
 * A network failure or 5xx: worth retrying. A 4xx is an answer, except "the first request with
 * this Idempotency-Key is still being answered" (a retry that overtook it): its answer comes later.
 */
export const isRetryable = (err: unknown) =>
  !(err instanceof ControllerError) || err.status >= 500 || err.status === 429 || (err.status === 409 && err.code === "idempotency_key_in_use");

export interface ControllerSwitch {
  from: string;
  to: string;
  reason: string;
}

/**
 * The agent's only way out: JSON over HTTP to the controller, bearer token, bounded time.
 * With several controller URLs (several controllers on one PostgreSQL database, or a spare
 * address of a load balancer) it sticks to the one that answers; a connection error, a timeout
 * or a 502/503/504 moves the call to the next URL at once, each URL tried at most once per call,
 * and when all fail the caller's own retry loop backs off as with one controller. Every call the
 * agent makes is safe to send twice: registration carries an Idempotency-Key, status reports are
 * fenced by the lease and a repeated final status is 200, log appends are addressed by offset.
 */
export class ControllerClient {
  token: string | undefined;
  readonly urls: string[];
  private current = 0;
  /** the URL whose answer was last logged; a switch is told once, when another one answers */
  private answering: string | undefined;

  constructor(
    urls: string | string[],
    private readonly onSwitch: (change: ControllerSwitch) => void = () => {},
  ) {
    this.urls = typeof urls === "string" ? parseControllerUrls(urls) : urls.map((u) => u.replace(/\/+$/, ""));
    if (this.urls.length === 0) throw new Error("no controller URL");
  }

  /** The controller calls go to now. */
  get baseUrl(): string {
    return this.urls[this.current]!;
  }

  post<T>(
    path: string,
    body: unknown,
    opts: { token?: string; timeoutMs?: number; signal?: AbortSignal; headers?: Record<string, string> } = {},
  ): Promise<T> {
    return this.send<T>("POST", path, { "content-type": "application/json", ...opts.headers }, JSON.stringify(body), opts);
  }

  /** Raw bytes (a run's result file), with headers of the caller's choosing. */
  put<T>(path: string, body: Buffer, headers: Record<string, string>, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.send<T>("PUT", path, { "content-type": "application/octet-stream", ...headers }, body, opts);
  }

  /** A download (the agent bundle of an update): the answer as it came, after failover. */
  async download(path: string, opts: { timeoutMs?: number } = {}): Promise<Response> {
    return this.fetchWithFailover(path, { headers: this.auth() }, opts);
  }

  private auth(token?: string): Record<string, string> {
    return { authorization: `Bearer ${token ?? this.token ?? ""}` };
  }

  /**
   * One call, tried on each URL at most once, starting with the current one. What moves it on:
   * no connection, no answer in time, or a 502/503/504. The caller's own abort never does.
   */
  private async fetchWithFailover(
    path: string,
    init: RequestInit,
    opts: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<Response> {
    let failure: Error | undefined;
    let failed: { url: string; reason: string } | undefined;
    for (let tried = 0; tried < this.urls.length; tried++) {
      const url = this.baseUrl;
      const timeout = AbortSignal.timeout(opts.timeoutMs ?? 15_000);
      let reason: string;
      try {
        const res = await fetch(url + path, { ...init, signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout });
        if (!FAILOVER_STATUSES.has(res.status) || this.urls.length === 1) {
          this.answered(url, failed);
          return res;
        }
        reason = `answered ${res.status}`;
        await res.body?.cancel();
        failure = new ControllerError(res.status, "controller_unavailable", `controller ${url} ${reason}`);
      } catch (err) {
        if (opts.signal?.aborted) throw new Error(`controller call aborted: ${(err as Error).message}`);
        reason = timeout.aborted ? `no answer within ${formatMs(opts.timeoutMs ?? 15_000)}` : networkReason(err);
        failure = new Error(`controller unreachable: ${url}: ${reason}`);
      }
      failed = { url, reason };
      this.current = (this.current + 1) % this.urls.length;
    }
    throw failure!;
  }

  /** Told once per switch: a call failed over and a controller other than the last one answered. */
  private answered(url: string, failed: { url: string; reason: string } | undefined) {
    if (failed && this.answering !== url) this.onSwitch({ from: failed.url, to: url, reason: failed.reason });
    this.answering = url;
  }

  private async send<T>(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | Buffer,
    opts: { token?: string; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T> {
    const res = await this.fetchWithFailover(
      path,
      { method, headers: { ...headers, ...this.auth(opts.token) }, body: typeof body === "string" ? body : new Uint8Array(body) },
      opts,
    );
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ControllerError(res.status, "bad_response", `controller answered ${res.status} with non-JSON`);
    }
    if (!res.ok) {
      const e = (json as Partial<ErrorBody>).error;
      throw new ControllerError(res.status, e?.code ?? "http_error", e?.message ?? `HTTP ${res.status}`, e?.details);
    }
    return json as T;
  }
}

const formatMs = (ms: number) => (ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`);

/** fetch wraps the socket error in `cause`; that is where ECONNREFUSED and friends live. */
function networkReason(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
